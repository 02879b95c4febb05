"""Read the reference files (RetailRocket's, or the generator's catalogue) into tidy frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clickrec_platform.reference.items import CATALOGUE_PROPERTIES
from clickrec_platform.settings import Settings
from clickrec_platform.sources.rejects import RejectLedger
from clickrec_platform.sources.retailrocket import (
    CATEGORY_TREE_FILE,
    ITEM_PROPERTIES_FILES,
    read_category_tree,
    read_item_properties,
)


@dataclass(frozen=True)
class ReferenceFrame:
    frame: pd.DataFrame
    files: list[Path]
    rejects: dict[str, dict[str, Any]]  # per file: rows read, accepted, rejected by reason
    rejects_path: Path


def _required(directory: Path, names: tuple[str, ...]) -> list[Path]:
    paths = [directory / name for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Reference files missing: {', '.join(missing)}. Set RETAILROCKET_DIR to the RetailRocket "
            "files, or let `clickrec demo` / `clickrec produce` write the generator's catalogue there.")
    return paths


def read_categories(settings: Settings) -> ReferenceFrame:
    (path,) = _required(settings.catalogue_dir, (CATEGORY_TREE_FILE,))
    rejects_path = settings.state_dir / "rejects" / "category_tree.jsonl"
    with RejectLedger(rejects_path) as ledger:
        tree = read_category_tree(path, ledger)
    return ReferenceFrame(tree, [path], ledger.summary(), rejects_path)


def read_catalogue_log(settings: Settings) -> ReferenceFrame:
    """The item property change log, kept to the properties the catalogue uses."""
    paths = _required(settings.catalogue_dir, ITEM_PROPERTIES_FILES)
    rejects_path = settings.state_dir / "rejects" / "item_properties.jsonl"
    with RejectLedger(rejects_path) as ledger:
        wanted = list(CATALOGUE_PROPERTIES)
        chunks = [chunk[chunk["property"].isin(wanted)] for chunk in read_item_properties(paths, ledger)]
    return ReferenceFrame(pd.concat(chunks, ignore_index=True), paths, ledger.summary(), rejects_path)
