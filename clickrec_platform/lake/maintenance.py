"""Small-file control: each micro-batch writes a few small files, so streaming tables are compacted.

``clickrec optimize`` bin-packs small files (Delta OPTIMIZE) in bronze and silver, and optionally
VACUUMs files no version younger than the retention still uses. It is safe while the stream job
runs: OPTIMIZE commits with ``dataChange=false``, which streaming readers skip.
"""

from __future__ import annotations

from collections.abc import Iterator

from clickrec_platform.lake.tables import BRONZE_CLICKSTREAM, SILVER_EVENTS, SILVER_QUARANTINE, LakeTable
from clickrec_platform.settings import Settings

COMPACTED: tuple[LakeTable, ...] = (BRONZE_CLICKSTREAM, SILVER_EVENTS, SILVER_QUARANTINE)


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
