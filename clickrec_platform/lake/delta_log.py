"""Read a Delta table's version and the partitions its commits touched, straight from ``_delta_log``.

Cheap enough for a sensor or an observation that runs every minute: no Spark, just the commit
files. Local lake roots only (``file:`` paths); on object storage use Spark's ``DeltaTable.history``.
"""

from __future__ import annotations

import json
from pathlib import Path


def _log_dir(table_path: str) -> Path:
    return Path(table_path.removeprefix("file://").removeprefix("file:")) / "_delta_log"


def commit_versions(table_path: str) -> list[int]:
    """The versions whose commit files are still in the log, in order (empty if no table)."""
    log = _log_dir(table_path)
    if not log.is_dir():
        return []
    return sorted(int(path.stem) for path in log.glob("*.json") if path.stem.isdigit())


def latest_version(table_path: str) -> int | None:
    versions = commit_versions(table_path)
    return versions[-1] if versions else None


def partitions_added_since(table_path: str, version: int | None, column: str) -> tuple[set[str], int | None] | None:
    """Values of partition `column` in files added after `version` (all commits when None), and the
    latest version; None when a needed commit file was already cleaned up (the caller must treat
    every partition as changed)."""
    versions = commit_versions(table_path)
    if not versions:
        return set(), None
    wanted = [v for v in versions if version is None or v > version]
    expected_first = 0 if version is None else version + 1
    if wanted and wanted[0] != expected_first:
        return None
    values: set[str] = set()
    for v in wanted:
        with open(_log_dir(table_path) / f"{v:020d}.json") as commit:
            for line in commit:
                action = json.loads(line)
                if "add" in action and column in action["add"].get("partitionValues", {}):
                    values.add(action["add"]["partitionValues"][column])
    return values, versions[-1]
