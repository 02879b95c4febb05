"""Small-file control: each micro-batch writes a few small files, so streaming tables are compacted.

``clickrec optimize`` (and the Dagster job ``optimize_lake``, on a schedule) bin-packs small files (Delta
OPTIMIZE) in the tables the stream job only appends to, and optionally VACUUMs files no version younger
than the retention still uses. It is safe while the stream job runs: OPTIMIZE commits with
``dataChange=false``, which streaming readers skip, and a compaction never conflicts with blind appends.
:func:`small_files` says, from the Delta log alone (delta-rs, no Spark), whether there is anything to
compact, so a schedule can skip the Spark session when there is not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
    LakeTable,
)
from clickrec_platform.settings import Settings

# The append-only tables of the stream job: each micro-batch adds files to them.
COMPACTED: tuple[LakeTable, ...] = (BRONZE_CLICKSTREAM, SILVER_EVENTS, SILVER_QUARANTINE, OPS_STREAM_BATCHES)


def active_files(settings: Settings, table: LakeTable) -> list[tuple[str, ...]] | None:
    """The partition values of each file the table's current version reads (one entry per file), from the
    Delta log through delta-rs; None when there is no table."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from clickrec_platform.lake.storage import delta_rs_location

    location, options = delta_rs_location(table.path(settings), settings)
    try:
        actions = pa.table(DeltaTable(location, storage_options=options).get_add_actions(flatten=True))
    except TableNotFoundError:
        return None
    columns = [actions.column(name).to_pylist() for name in actions.column_names if name.startswith("partition.")]
    return list(zip(*columns, strict=True)) if columns else [()] * actions.num_rows


def small_files(settings: Settings, tables: tuple[LakeTable, ...] = COMPACTED) -> dict[str, int]:
    """Per table: files in partitions that hold more than one, i.e. what a compaction would rewrite."""
    found = {}
    for table in tables:
        files = active_files(settings, table)
        if files:
            found[table.key] = sum(n for n in Counter(files).values() if n > 1)
    return found


def compact(settings: Settings, vacuum_hours: int | None = None, spark=None) -> Iterator[str]:
    from delta.tables import DeltaTable

    from clickrec_platform.lake.spark import spark_session

    spark = spark or spark_session(settings, app_name="clickrec-optimize")
    for table in COMPACTED:
        path = table.path(settings)
        if not DeltaTable.isDeltaTable(spark, path):
            yield f"{table.key}: no table yet"
            continue
        delta = DeltaTable.forPath(spark, path)
        metrics = delta.optimize().executeCompaction().select("metrics.*").first()
        yield (f"{table.key}: {metrics.numFilesRemoved} files compacted into {metrics.numFilesAdded} "
               f"({metrics.filesRemoved.totalSize:,} bytes rewritten)" if metrics and metrics.numFilesRemoved
               else f"{table.key}: nothing to compact")
        if vacuum_hours is not None:
            delta.vacuum(float(vacuum_hours))
            yield f"{table.key}: vacuumed files older than {vacuum_hours}h"
