"""A Delta table's latest version, and the partitions that gained data since a version, through delta-rs.

Cheap enough for a sensor or an observation that runs every minute: no Spark, only the log, on a
local lake or an object store alike (`lake.storage`).
"""

from __future__ import annotations

from clickrec_platform.lake.storage import delta_rs_location
from clickrec_platform.settings import Settings

# Operations that only rearrange data: their add actions carry dataChange=false (OPTIMIZE: compaction
# and Z-order, by `clickrec optimize`, auto-compaction or delta-rs; REORG ... APPLY (PURGE)). delta-rs
# exposes no per-commit add actions, so the commit's operation from history() stands for the flag.
REARRANGING_OPERATIONS = frozenset({"OPTIMIZE", "REORG"})


def latest_version(table_uri: str, settings: Settings) -> int | None:
    """The table's latest version; None when there is no table yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    location, options = delta_rs_location(table_uri, settings)
    try:
        return DeltaTable(location, storage_options=options).version()
    except TableNotFoundError:
        return None


def partitions_added_since(table_uri: str, settings: Settings, version: int | None,
                           column: str) -> tuple[set[str], int | None] | None:
    """Values of partition `column` that commits after `version` added files to (every partition the
    table holds when `version` is None), and the latest version; (set(), None) when there is no table.

    Commits that only rearrange files (compaction) add nothing. None when the log no longer holds the
    commits since `version` (cleaned up, or before its oldest checkpoint): the caller must treat every
    partition as changed.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    location, options = delta_rs_location(table_uri, settings)
    try:
        table = DeltaTable(location, storage_options=options)
    except TableNotFoundError:
        return set(), None
    if version is None:
        return {value for value in _files(table, column).values() if value is not None}, table.version()
    if version >= table.version():
        return set(), table.version()
    operations = _operations_since(table, version)
    latest = table.version()
    if set(operations) != set(range(version + 1, latest + 1)):
        return None
    added: set[str | None] = set()
    try:
        replay = DeltaTable(location, version=version, storage_options=options)
        before = _files(replay, column)
        for commit in range(version + 1, latest + 1):
            replay.load_as_version(commit)
            after = _files(replay, column)
            if operations[commit] not in REARRANGING_OPERATIONS:
                added |= {after[path] for path in after.keys() - before.keys()}
            before = after
    except DeltaError:  # a version before the log's oldest checkpoint can no longer be loaded
        return None
    return {value for value in added if value is not None}, latest


def _operations_since(table, version: int, attempts: int = 5) -> dict[int, str | None]:
    """Commit version → operation of the commits after `version` that the log still holds, up to the
    version `table` is at when this returns.

    delta-rs 1.6's history() lists the log's newest commits but numbers them down from the version the
    table object was loaded at, so a commit landing meanwhile shifts every number: read until the
    table's version is the same before and after.
    """
    for _ in range(attempts):
        latest = table.version()
        commits = table.history(latest - version)
        table.update_incremental()
        if table.version() == latest:
            return {commit["version"]: commit.get("operation") for commit in commits}
    raise RuntimeError(f"{table.table_uri} gained commits during each of {attempts} reads of its history")


def _files(table, column: str) -> dict[str, str | None]:
    """Each data file of this version of the table → its value of partition `column` (None if unpartitioned)."""
    actions = table.get_add_actions(flatten=True)
    paths = actions.column("path").to_pylist()
    if f"partition.{column}" not in actions.schema.names:
        return dict.fromkeys(paths)
    values = actions.column(f"partition.{column}").to_pylist()
    return {path: None if value is None else str(value) for path, value in zip(paths, values, strict=True)}
