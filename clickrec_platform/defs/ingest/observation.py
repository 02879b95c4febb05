"""Observing silver.events (the stream job's output, the graph's source): its Delta version as the data version,
and its freshness check; on a schedule that is off until switched on."""

import dagster as dg

from clickrec_platform.defs.ingest.sources import SILVER_EVENTS_KEY

observe_silver_job = dg.define_asset_job("observe_silver_events", selection=dg.AssetSelection.assets(SILVER_EVENTS_KEY),
                                         description="Observe silver.events: Delta version, rows, freshness.")
observe_silver_schedule = dg.ScheduleDefinition(job=observe_silver_job, cron_schedule="*/15 * * * *",
                                                default_status=dg.DefaultScheduleStatus.STOPPED,
                                                name="observe_silver_events_every_15_minutes")


@dg.definitions
def observation() -> dg.Definitions:
    return dg.Definitions(jobs=[observe_silver_job], schedules=[observe_silver_schedule])
