"""Lake maintenance on a schedule: the compaction `clickrec optimize` does, so that the files the stream job's
micro-batches leave (a few per table every 20 s) stay bounded while live traffic runs.

The schedule looks at the Delta logs first (delta-rs, cheap) and starts a run only when a table has
`CLICKREC_OPTIMIZE_MIN_SMALL_FILES` files to compact; once a day (03:xx UTC) the run also VACUUMs files that
no version of the last `CLICKREC_OPTIMIZE_VACUUM_HOURS` uses. Compaction commits carry `dataChange=false`:
the stream job's readers and the silver sensor skip them, and they never conflict with its appends.
"""

import dagster as dg

from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.lake.maintenance import COMPACTED, compact, small_files

VACUUM_HOUR_UTC = 3


class OptimizeConfig(dg.Config):
    vacuum_hours: int | None = None  # also VACUUM files older than this that no current version uses


@dg.op(description="Delta OPTIMIZE (bin-packing) of the stream job's append-only tables "
                   + ", ".join(t.key for t in COMPACTED) + "; VACUUM when configured.")
def compact_lake(context: dg.OpExecutionContext, config: OptimizeConfig, spark: SparkResource) -> dg.Output[dict]:
    settings = spark.lake.settings()
    before = small_files(settings)
    lines = list(compact(settings, vacuum_hours=config.vacuum_hours, spark=spark.get_session()))
    for line in lines:
        context.log.info(line)
    after = small_files(settings)
    return dg.Output({"before": before, "after": after}, metadata={
        "lake": settings.lake_uri, "small_files_before": dg.MetadataValue.json(before),
        "small_files_after": dg.MetadataValue.json(after), "vacuum_hours": config.vacuum_hours or 0,
        "report": dg.MetadataValue.md("\n".join(f"- {line}" for line in lines))})


@dg.job(description="Compact the small files streaming leaves in bronze, silver, quarantine and "
                    "ops.stream_batches (what `clickrec optimize` does).")
def optimize_lake():
    compact_lake()


@dg.schedule(job=optimize_lake, cron_schedule="7,37 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every 30 minutes: compact the stream job's tables when the Delta logs show small files "
                         "to compact; at 03:xx UTC also VACUUM.")
def optimize_lake_every_30_minutes(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    settings = lake.settings()
    found = small_files(settings)
    due = {table: n for table, n in found.items() if n >= settings.optimize_min_small_files}
    vacuum = context.scheduled_execution_time is not None and \
        context.scheduled_execution_time.hour == VACUUM_HOUR_UTC and context.scheduled_execution_time.minute < 30
    if not due and not vacuum:
        return dg.SkipReason(f"nothing to compact: small files {found or 'none (no tables yet)'}, fewer than "
                             f"{settings.optimize_min_small_files} in each")
    hours = settings.optimize_vacuum_hours if vacuum else None
    return dg.RunRequest(run_config=dg.RunConfig(ops={"compact_lake": OptimizeConfig(vacuum_hours=hours)}),
                         tags={"clickrec/small_files": ", ".join(f"{t}={n}" for t, n in found.items())})


@dg.definitions
def maintenance() -> dg.Definitions:
    return dg.Definitions(jobs=[optimize_lake], schedules=[optimize_lake_every_30_minutes])
