"""The training graph: the job over every domain downstream of silver (reference data, features, training,
publishing), and when it runs: daily on a schedule, and whenever silver.events gets new data (the sensor)."""

import dagster as dg

from clickrec_platform.defs.partitions import EVENT_DATES
from clickrec_platform.defs.resources import LakeResource, locked_in_process_executor
from clickrec_platform.lake.table_versions import partitions_added_since
from clickrec_platform.lake.tables import SILVER_EVENTS

# Reference data, features, models and publishing: everything downstream of silver.
TRAINING_GRAPH = dg.AssetSelection.groups("reference", "features", "training", "publish")

# Its runs rewrite the lake's tables and publish to Postgres: one at a time per lake and gold schema,
# whether launched here (UI, schedule, sensor) or run in-process by `clickrec materialize` (run_lock.py).
training_graph_job = dg.define_asset_job(
    "training_graph", selection=TRAINING_GRAPH, partitions_def=EVENT_DATES, executor_def=locked_in_process_executor,
    description="Reference data → features → training sets (→ models → publish), for a range of event dates.")

daily_training_schedule = dg.build_schedule_from_partitioned_job(
    training_graph_job, hour_of_day=2, minute_of_hour=0, default_status=dg.DefaultScheduleStatus.STOPPED,
    name="daily_training_graph")


@dg.sensor(job=training_graph_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Starts the training graph for the event dates that silver.events gained since the last "
                       "run (one run over their range), reading the Delta log.")
def silver_events_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    settings = lake.settings()
    path = SILVER_EVENTS.path(settings)
    seen = int(context.cursor) if context.cursor else None
    added = partitions_added_since(path, settings, seen, "event_date")
    if added is None:  # the log was cleaned up past our cursor: which dates changed is unknown
        return dg.SkipReason("the silver.events log no longer holds the commits since the last run: "
                             "backfill the event dates from the UI or `clickrec materialize`")
    dates, latest = added
    if latest is None:
        return dg.SkipReason(f"silver.events does not exist yet at {path}")
    if not dates:
        context.update_cursor(str(latest))
        return dg.SkipReason(f"no new event dates in silver.events (version {latest})")
    first, last = min(dates), max(dates)
    context.update_cursor(str(latest))
    return dg.RunRequest(
        run_key=f"silver-v{latest}",
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
              "clickrec/silver_version": str(latest)})


@dg.definitions
def automation() -> dg.Definitions:
    return dg.Definitions(jobs=[training_graph_job], schedules=[daily_training_schedule],
                          sensors=[silver_events_sensor])
