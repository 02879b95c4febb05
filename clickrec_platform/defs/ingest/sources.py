"""Upstream lineage the streaming job owns: the Kafka topic and the bronze table it writes.

These are declared, not computed, by Dagster: the Spark Structured Streaming job in ``spark_jobs/``
writes them continuously, outside the Dagster process.
"""

from datetime import UTC, datetime

import dagster as dg

from clickrec_platform.defs import checks
from clickrec_platform.defs.resources import LakeResource
from clickrec_platform.lake.silver import silver_overview
from clickrec_platform.lake.table_versions import latest_version
from clickrec_platform.lake.tables import SILVER_EVENTS

kafka_clickstream = dg.AssetSpec(
    key=["kafka", "clickstream"],
    description="Kafka topic of click events (`clickstream` unless CLICKREC_KAFKA_TOPIC says otherwise): "
                "one JSON event per record, keyed by visitor id (contract: "
                "clickrec_platform.events.contract, schema_version 1).",
    group_name="ingest",
    kinds={"kafka"},
)

bronze_clickstream_raw = dg.AssetSpec(
    key=["delta", "bronze", "clickstream_raw"],
    deps=[kafka_clickstream],
    description="Every Kafka record as received, with its Kafka coordinates (written by the stream job).",
    group_name="ingest",
    kinds={"delta", "spark"},
)

SILVER_EVENTS_KEY = ["delta", "silver", "events"]
FRESHNESS = "fresh"


@dg.multi_observable_source_asset(
    specs=[dg.AssetSpec(
        key=SILVER_EVENTS_KEY, deps=[bronze_clickstream_raw], group_name="ingest", kinds={"delta", "spark"},
        description="Valid, deduplicated events (event contract v1), partitioned by event date; written by "
                    "the stream job. Observed: each new Delta version is a new data version.")],
    check_specs=[checks.spec(SILVER_EVENTS_KEY, FRESHNESS,
                             "New events arrived within CLICKREC_SILVER_FRESHNESS_HOURS (a warning).")],
)
def silver_events(lake: LakeResource):
    settings = lake.settings()
    path = SILVER_EVENTS.path(settings)
    version = latest_version(path, settings)
    if version is None:
        yield dg.ObserveResult(asset_key=SILVER_EVENTS_KEY, metadata={"path": path, "exists": False})
        yield checks.result(FRESHNESS, False, warn_only=True, reason="silver.events does not exist yet")
        return
    silver = silver_overview(settings)
    yield dg.ObserveResult(
        asset_key=SILVER_EVENTS_KEY, data_version=dg.DataVersion(str(version)),
        metadata={"delta_version": version, "row_count": dg.MetadataValue.int(silver.rows), "path": path,
                  "first_event_date": str(silver.first_event_date), "last_event_date": str(silver.last_event_date),
                  "last_ingested_at": str(silver.last_ingested_at)})
    age_hours = None if silver.last_ingested_at is None else (
        datetime.now(UTC) - silver.last_ingested_at).total_seconds() / 3600
    yield checks.result(FRESHNESS, age_hours is not None and age_hours <= settings.silver_freshness_hours,
                        warn_only=True, hours_since_last_ingest=age_hours,
                        limit_hours=settings.silver_freshness_hours)
