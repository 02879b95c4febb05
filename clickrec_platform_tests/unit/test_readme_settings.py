"""Every `CLICKREC_…` variable the README documents is a setting (a claim on paper is a test): full names
anywhere in it, and the configuration table's shorthands (`CLICKREC_POSTGRES_USER` / `_PASSWORD`)."""

from __future__ import annotations

import re

from pydantic import AliasChoices

from clickrec_platform.settings import PROJECT_ROOT, Settings

# Variables of the test harness, not of the platform (read by the tests' fixtures).
HARNESS = {"CLICKREC_TEST_KEEP_STACK"}


def _setting_names() -> set[str]:
    """CLICKREC_<FIELD> of every setting, and the ecosystem's names some also accept (SPARK_MASTER, …)."""
    names = {f"CLICKREC_{name.upper()}" for name in Settings.model_fields}
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names |= {choice for choice in field.validation_alias.choices if isinstance(choice, str)}
    return names


def _readme() -> str:
    return (PROJECT_ROOT / "README.md").read_text()


def test_every_variable_the_readme_names_is_a_setting():
    named = set(re.findall(r"\bCLICKREC_[A-Z0-9_]*[A-Z0-9]\b", _readme()))
    assert len(named) > 50
    assert named - _setting_names() - HARNESS == set()
    harness_code = "".join(p.read_text() for p in (PROJECT_ROOT / "clickrec_platform_tests").glob("*.py"))
    assert all(name in harness_code for name in HARNESS)


def test_every_shorthand_in_the_configuration_table_completes_to_a_setting():
    settings = _setting_names()
    table = _readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for row in table.splitlines():
        cell = row.split("|")[1] if row.startswith("|") else ""
        full = re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)
        assert set(full) <= settings, f"{cell.strip()!r} names a variable that is no setting"
        for suffix in re.findall(r"`(_[A-Z0-9_]+)`", cell):
            # `_SUFFIX` stands for the first full name, or a prefix of it cut at an underscore, followed by it.
            stem = full[0]
            candidates = {stem + suffix} | {stem[:i] + suffix for i, ch in enumerate(stem) if ch == "_"}
            assert candidates & settings, f"{suffix} in {cell.strip()!r} completes to no setting"
            checked += 1
    assert checked > 20
