"""The README's Layout section is a claim about the tree: every package folder is listed, every path it names
exists, and every table the platform builds has the one folder that builds it."""

from __future__ import annotations

import re

from clickrec_platform.lake import tables as lake_tables
from clickrec_platform.serving.gold_tables import PUBLISHED_TABLES
from clickrec_platform.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _first_column(section: str) -> list[str]:
    return [cells[1].strip() for line in section.splitlines()
            if line.startswith("| `") and len(cells := line.split("|")) > 2]


def test_every_package_folder_has_its_row_and_every_row_exists():
    layout = _section("Layout")
    rows = {cell.strip("`") for cell in _first_column(layout.split("### ")[0])}
    packages = {f"{path.parent.relative_to(PROJECT_ROOT)}/" for path in PROJECT_ROOT.glob("clickrec_platform/**/__init__.py")
                if "__pycache__" not in path.parts}
    # A folder is covered by its own row, or named (`name/`) in its parent's row.
    named = set(re.findall(r"`([\w/]+/)`", layout.split("### ")[0]))
    uncovered = {package for package in packages if package not in rows
                 and not any(package.endswith(f"/{name}") for name in named)}
    assert not uncovered, f"package folders missing from the README's Layout: {sorted(uncovered)}"
    missing = {row for row in rows if not (PROJECT_ROOT / row).exists()}
    assert not missing, f"the Layout names paths that do not exist: {sorted(missing)}"


def test_every_file_the_layout_names_exists_in_its_folder():
    layout = _section("Layout")
    for line in layout.splitlines():
        if not line.startswith("| `") or line.count("|") < 3:
            continue
        folder = line.split("|")[1].strip().strip("`")
        if not folder.endswith("/"):
            continue
        for name in re.findall(r"`([\w]+\.(?:py|ipynb|yml|yaml))`", line.split("|", 2)[2]):
            found = list((PROJECT_ROOT / folder).rglob(name))
            assert found, f"{name} is named in the Layout row of {folder} but is not under it"


def test_every_table_names_the_folder_that_builds_it():
    builders = _section("Layout").split("### Which folder builds each table")[1]
    lake = [table.key for table in vars(lake_tables).values() if isinstance(table, lake_tables.LakeTable)]
    published = [f"gold.{spec.name}" for spec in PUBLISHED_TABLES]
    rows = [line for line in builders.splitlines() if line.startswith("| ")]
    for key in lake:
        assert [row for row in rows if row.startswith("| lake") and f"`{key}`" in row], f"lake {key}"
    for key in published:
        assert [row for row in rows if row.startswith("| Postgres `") and f"`{key}`" in row], f"Postgres {key}"
    for row in rows[2:]:
        folder = re.findall(r"\| `([\w/]+/)`", row)
        assert folder and (PROJECT_ROOT / folder[0]).is_dir(), row
