"""The columns of a silver event row, shared by the stream job and by direct loads into silver."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clickrec_platform.events.contract import FIELD_NAMES, spark_schema
from clickrec_platform.lake.tables import SILVER_EVENTS
from clickrec_platform.settings import Settings


def silver_rows(events: DataFrame, *, ingest_app: str, ingest_batch: int,
                kafka_partition: Column, kafka_offset: Column) -> DataFrame:
    """Contract fields + event_time, event_date (the partition), Kafka coordinates and lineage."""
    return (events.withColumn("event_time", F.timestamp_millis("ts"))
            .select(*FIELD_NAMES, "event_time", F.to_date("event_time").alias("event_date"),
                    kafka_partition.cast("int").alias("kafka_partition"),
                    kafka_offset.cast("bigint").alias("kafka_offset"),
                    F.lit(ingest_app).alias("ingest_app"),
                    F.lit(ingest_batch).cast("bigint").alias("ingest_batch"),
                    F.current_timestamp().alias("ingested_at")))


@dataclass(frozen=True)
class SilverOverview:
    rows: int
    last_ingested_at: datetime | None  # timezone-aware (UTC)
    first_event_date: date | None
    last_event_date: date | None


def silver_overview(settings: Settings) -> SilverOverview:
    """Rows, last ingest and event-date range of silver.events, read by DuckDB (no Spark)."""
    from clickrec_platform.lake import duck

    with duck.connect(settings) as con:
        overview = con.execute(
            "SELECT count(*), max(ingested_at), min(event_date), max(event_date) "
            f"FROM {duck.scan(SILVER_EVENTS.path(settings))}").fetchone()
    assert overview is not None  # an aggregate without grouping has one row
    rows, ingested, first, last = overview
    if ingested is not None and ingested.tzinfo is None:  # DuckDB gives timestamptz; be sure
        ingested = ingested.replace(tzinfo=UTC)
    return SilverOverview(int(rows), ingested, first, last)


def load_events_into_silver(spark: SparkSession, settings: Settings, frames: Iterable[pd.DataFrame], *,
                            ingest_app: str = "direct-load") -> int:
    """Append contract-shaped frames (valid, unique events) to silver.events without Kafka.

    For tests and benchmarks of what reads silver: the stream job is the platform's way in, with
    validation, quarantine and deduplication. Rows carry no Kafka coordinates; returns rows written.
    """
    path = SILVER_EVENTS.ensure(spark, settings)
    written = 0
    for batch, frame in enumerate(frames):
        events = spark.createDataFrame(frame[list(FIELD_NAMES)], schema=spark_schema())
        rows = silver_rows(events, ingest_app=ingest_app, ingest_batch=batch,
                           kafka_partition=F.lit(None), kafka_offset=F.lit(None))
        rows.write.format("delta").mode("append").save(path)
        written += len(frame)
    return written
