"""The Delta tables of the lake: where each lives (``<lake>/<layer>/<name>``), its schema, its partitions.

Written by the stream job (bronze, silver, streaming gold, ops) and read by Dagster assets, DuckDB
and Spark alike, so the definitions live here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickrec_platform.events.contract import FIELDS
from clickrec_platform.settings import Settings

_CONTRACT_COLUMNS = ", ".join(f"{spec.name} {spec.spark_type_name}" for spec in FIELDS)


def table_path(settings: Settings, layer: str, name: str) -> str:
    return f"{settings.lake_uri.rstrip('/')}/{layer}/{name}"


@dataclass(frozen=True)
class LakeTable:
    layer: str
    name: str
    schema: str  # Spark DDL column list ("" when the writer's DataFrame defines it)
    partition_by: tuple[str, ...] = ()
    description: str = ""
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.name}"

    def path(self, settings: Settings) -> str:
        return table_path(settings, self.layer, self.name)

    def ensure(self, spark, settings: Settings) -> str:
        """Create the table if it does not exist yet (idempotent); return its path."""
        if not self.schema:
            raise ValueError(f"{self.key} takes its schema from the DataFrame written to it")
        from delta.tables import DeltaTable

        builder = (DeltaTable.createIfNotExists(spark).location(self.path(settings))
                   .addColumns(spark.createDataFrame([], self.schema).schema).comment(self.description))
        if self.partition_by:
            builder = builder.partitionedBy(*self.partition_by)
        for key, value in self.properties:
            builder = builder.property(key, value)
        builder.execute()
        return self.path(settings)


BRONZE_CLICKSTREAM = LakeTable(
    "bronze", "clickstream_raw",
    "key binary, value binary, topic string, partition int, offset bigint, kafka_timestamp timestamp, "
    "kafka_timestamp_type int, ingested_at timestamp, ingest_date date",
    partition_by=("ingest_date",),
    description="Every Kafka record as received, with its Kafka coordinates.",
    # File statistics on the raw key and value bytes would cost writes and skip nothing.
    properties=(("delta.dataSkippingStatsColumns", "topic,partition,offset,kafka_timestamp,ingested_at"),),
)
SILVER_EVENTS = LakeTable(
    "silver", "events",
    f"{_CONTRACT_COLUMNS}, event_time timestamp, event_date date, kafka_partition int, "
    "kafka_offset bigint, ingest_app string, ingest_batch bigint, ingested_at timestamp",
    partition_by=("event_date",),
    description="Valid events (event contract v1), deduplicated by event_id.",
    # Statistics where readers filter (event time, ids, lineage); none on free text or the id hash.
    properties=(("delta.dataSkippingStatsColumns",
                 "ts,visitor_id,item_id,event,event_time,kafka_partition,kafka_offset,ingest_app,ingest_batch,"
                 "ingested_at"),),
)
SILVER_QUARANTINE = LakeTable(
    "silver", "quarantine",
    "raw_key binary, raw_value binary, raw_text string, topic string, kafka_partition int, kafka_offset bigint, "
    "kafka_timestamp timestamp, reason string, ingest_batch bigint, ingested_at timestamp",
    description="Records that are not valid events: key and value as the bytes received, the value as text "
                "for humans (invalid UTF-8 replaced by U+FFFD), the reason.",
)
GOLD_WINDOWED_STATS = LakeTable(
    "gold", "windowed_stats",
    "window_start timestamp, window_end timestamp, event string, event_count bigint, "
    "unique_users bigint, unique_items bigint, updated_at timestamp",
    description="Per 5-minute event-time window and event type: events, distinct visitors and items.",
)
GOLD_TRENDING_ITEMS = LakeTable(
    "gold", "trending_items",
    "window_start timestamp, window_end timestamp, item_id bigint, score double, event_count bigint, "
    "rank int, updated_at timestamp",
    description="Top items per 10-minute window sliding every 5 minutes, by interaction weight.",
)
GOLD_EVENT_STATISTICS = LakeTable(
    "gold", "event_statistics",
    "event string, event_count bigint, first_event_at timestamp, last_event_at timestamp, updated_at timestamp",
    description="Running totals per event type.",
)
OPS_STREAM_BATCHES = LakeTable(
    "ops", "stream_batches",
    "batch_id bigint, bronze_rows bigint, silver_rows bigint, quarantined_rows bigint, "
    "duplicate_rows bigint, started_at timestamp, seconds double",
    description="What each micro-batch of the refine query did: bronze = silver + quarantined + duplicates.",
)

# Written by Dagster assets; their schema is the one of the DataFrame that the asset writes.
SILVER_CATEGORIES = LakeTable("silver", "categories", "", description="The category tree: root, depth, path.")
SILVER_ITEMS = LakeTable("silver", "items", "",
                         description="Item versions (category, price, availability) with their validity periods.")
GOLD_INTERACTIONS = LakeTable("gold", "interactions", "", partition_by=("event_date",),
                              description="Visitor × item × event date: counts per event type and weight.")
GOLD_USER_FEATURES = LakeTable("gold", "user_features", "", description="One row per visitor.")
GOLD_ITEM_FEATURES = LakeTable("gold", "item_features", "", description="One row per item.")
GOLD_TRAINING_SPLITS = LakeTable("gold", "training_splits", "",
                                 description="Visitor × item × split (chronological train/validation/test).")
GOLD_SESSIONS = LakeTable("gold", "sessions", "",
                          description="Events of the session protocol's train/validation/test sessions.")
GOLD_USER_RECOMMENDATIONS = LakeTable("gold", "user_recommendations", "",
                                      description="The champion's top-N per active visitor, with lineage.")
GOLD_SIMILAR_ITEMS = LakeTable("gold", "similar_items", "", description="Top-N similar items per item.")
GOLD_POPULAR_ITEMS = LakeTable("gold", "popular_items", "",
                               description="Most popular items of the recent window, overall and per category.")

STREAM_TABLES = (BRONZE_CLICKSTREAM, SILVER_EVENTS, SILVER_QUARANTINE, GOLD_WINDOWED_STATS,
                 GOLD_TRENDING_ITEMS, GOLD_EVENT_STATISTICS, OPS_STREAM_BATCHES)
