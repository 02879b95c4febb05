"""One micro-batch of Kafka records → silver, quarantine and bronze.

The ingest query reads each Kafka record once per micro-batch and writes, in this order:
1. ``silver.events``: the valid events no earlier batch wrote, one row per ``event_id``;
2. ``silver.quarantine``: every record that is not a valid event, as received, with the reason;
3. ``bronze.clickstream_raw``: every record as received, with its Kafka coordinates;
4. ``ops.stream_batches``: the batch's reconciliation, bronze = silver + quarantined + duplicates.

The Postgres live tables are not on this path: the live query (``spark_jobs/live.py``) keeps them
current within seconds in continuous mode, the gold query in catch-up.

Exactly once, end to end. Spark replays a batch whose commit it did not record, with the same id
and the same Kafka offsets, so every write is keyed on that id:
- Delta appends carry ``txnAppId``/``txnVersion`` = (app id, batch id): a replayed append is skipped;
- the rows new to silver are those whose ``event_id`` no earlier batch wrote, which is the same on
  a replay whether or not this batch's own append had landed (silver rows carry the app id and
  batch id that wrote them);
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickrec_platform.events.contract import FIELD_NAMES
from clickrec_platform.events.spark_parse import REASON, parse_events
from clickrec_platform.lake.silver import silver_rows
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
)
from clickrec_platform.settings import Settings
from spark_jobs.batch import HeldRows, StageTimer, append_once, in_pool

log = logging.getLogger("clickrec.stream")

# Earlier silver ids up to this many are broadcast to the anti-join; more are shuffled.
BROADCAST_EARLIER_IDS = 500_000
# Valid rows up to this many are deduplicated and written by one task (a continuous mode's batch).
SMALL_BATCH = 50_000


def bronze_columns(kafka_records: DataFrame) -> DataFrame:
    """The Kafka source's rows as bronze keeps them (the query selects these before each batch)."""
    return kafka_records.select(
        "key", "value", "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"), F.col("timestampType").alias("kafka_timestamp_type"),
        F.current_timestamp().alias("ingested_at"), F.current_date().alias("ingest_date"))


@dataclass(frozen=True)
class BatchSummary:
    """One pass over the parsed batch: row counts, and the dates and event-time range of the valid rows."""

    records: int
    valid: int
    quarantined: int
    reasons: dict[str, int]
    event_dates: list
    min_ts: int | None
    max_ts: int | None

    @classmethod
    def of(cls, parsed: DataFrame) -> BatchSummary:
        valid = F.col(REASON).isNull()
        rows = (parsed.groupBy(F.col(REASON).alias("reason"),
                               F.when(valid, F.to_date(F.timestamp_millis("ts"))).alias("day"))
                .agg(F.count("*").alias("n"), F.min("ts").alias("lo"), F.max("ts").alias("hi")).collect())
        ok = [r for r in rows if r.reason is None]
        reasons: dict[str, int] = {}
        for r in rows:
            if r.reason is not None:
                reasons[r.reason] = reasons.get(r.reason, 0) + r.n
        return cls(
            records=sum(r.n for r in rows), valid=sum(r.n for r in ok), quarantined=sum(reasons.values()),
            reasons=reasons, event_dates=sorted({r.day for r in ok}),
            min_ts=min((r.lo for r in ok), default=None), max_ts=max((r.hi for r in ok), default=None))


class IngestBatch:
    """The ``foreachBatch`` function of the ingest query (a callable, so it carries its settings)."""

    def __init__(self, settings: Settings, on_batch=None):
        self.settings = settings
        self.app_id = settings.stream_app_id
        self.silver_path = SILVER_EVENTS.path(settings)
        self.on_batch = on_batch  # called with (batch id, BatchSummary, silver rows, seconds)

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        started, timer = time.perf_counter(), StageTimer()
        spark = records.sparkSession
        in_pool(spark, "ingest")
        with HeldRows() as held:
            # Kafka is read once: the records are held for bronze, which is written after silver.
            with timer.stage("read"):
                records = held.hold(records)
            with timer.stage("parse"):
                parsed = parse_events(records.withColumn("value_text", F.col("value").cast("string")),
                                      "value_text")
                # Kept: the contract fields, and the raw record only where it is quarantined.
                parsed = held.hold(parsed.select(
                    *FIELD_NAMES, REASON, "partition", "offset", "topic", "kafka_timestamp",
                    F.when(F.col(REASON).isNotNull(), F.col("key").cast("string")).alias("raw_key"),
                    F.when(F.col(REASON).isNotNull(), F.col("value_text")).alias("raw_value"),
                ))
                summary = BatchSummary.of(parsed)
            silver_count = 0
            if summary.valid:
                with timer.stage("silver"):
                    new_events = held.hold(self._new_events(spark, parsed, batch_id, summary))
                    append_once(new_events, self.silver_path, f"{self.app_id}-silver", batch_id)
                    silver_count = new_events.count()
            if summary.quarantined:  # an empty append would still cost a Delta commit
                with timer.stage("quarantine"):
                    append_once(self._quarantined(parsed, batch_id), SILVER_QUARANTINE.path(self.settings),
                                f"{self.app_id}-quarantine", batch_id)
            with timer.stage("bronze"):
                append_once(records, BRONZE_CLICKSTREAM.path(self.settings), f"{self.app_id}-bronze", batch_id)

        duplicates = summary.records - silver_count - summary.quarantined
        seconds = time.perf_counter() - started
        ops_row = spark.createDataFrame(
            [(batch_id, summary.records, silver_count, summary.quarantined, duplicates, time.time() - seconds,
              seconds)],
            "batch_id bigint, bronze_rows bigint, silver_rows bigint, quarantined_rows bigint, "
            "duplicate_rows bigint, started_at double, seconds double",
        ).withColumn("started_at", F.col("started_at").cast("timestamp"))
        append_once(ops_row, OPS_STREAM_BATCHES.path(self.settings), f"{self.app_id}-ops", batch_id)
        log.info("ingest batch %d: bronze %d = silver %d + quarantined %d + duplicates %d (%.1fs: %s)", batch_id,
                 summary.records, silver_count, summary.quarantined, duplicates, seconds, timer.summary())
        if self.on_batch:
            self.on_batch(batch_id, summary, silver_count, seconds)

    def _quarantined(self, parsed: DataFrame, batch_id: int) -> DataFrame:
        return parsed.where(F.col(REASON).isNotNull()).select(
            "raw_key", "raw_value", "topic", F.col("partition").alias("kafka_partition"),
            F.col("offset").alias("kafka_offset"), "kafka_timestamp", F.col(REASON).alias("reason"),
            F.lit(batch_id).cast("bigint").alias("ingest_batch"), F.current_timestamp().alias("ingested_at"))

    def _new_events(self, spark: SparkSession, parsed: DataFrame, batch_id: int, summary: BatchSummary) -> DataFrame:
        """Valid events whose id no earlier batch wrote, one row per id.

        Copies of an event share every contract field (the id hashes them), so which copy's Kafka
        coordinates are kept does not matter, and earlier copies can only sit in silver rows with
        the same event time: the lookup reads just those dates and that event-time range.
        """
        valid = silver_rows(parsed.where(F.col(REASON).isNull()), ingest_app=self.app_id, ingest_batch=batch_id,
                            kafka_partition=F.col("partition"), kafka_offset=F.col("offset"))
        if summary.valid <= SMALL_BATCH:
            # One file per date for a small batch: fewer files for the gold query to read back.
            unique = valid.dropDuplicates(["event_id"]).coalesce(1)
        else:
            # Most ids occur once. Hashing them finds the few that may not, so only those rows go
            # through an exact dropDuplicates, and the rest need no shuffle of whole rows.
            hashed = valid.withColumn("_h", F.xxhash64("event_id"))
            repeated = [r._h for r in hashed.groupBy("_h").count().where(F.col("count") > 1).select("_h").collect()]
            unique = hashed
            if repeated:
                hashes = F.broadcast(spark.createDataFrame([(h,) for h in repeated], "_h bigint"))
                unique = (hashed.join(hashes, "_h", "left_anti")
                          .unionByName(hashed.join(hashes, "_h", "left_semi").dropDuplicates(["event_id"])))
            unique = unique.drop("_h")
        # Across batches: earlier = any batch of another app id (an older checkpoint), or an
        # earlier one of this.
        this_or_later = (F.col("ingest_app") == self.app_id) & (F.col("ingest_batch") >= batch_id)
        earlier = (spark.read.format("delta").load(self.silver_path)
                   .where(F.col("event_date").isin(summary.event_dates)
                          & F.col("ts").between(summary.min_ts, summary.max_ts) & ~this_or_later)
                   .select("event_id"))
        earlier_count = earlier.count()
        if earlier_count == 0:
            return unique
        if earlier_count <= BROADCAST_EARLIER_IDS:
            earlier = F.broadcast(earlier)
        return unique.join(earlier, "event_id", "left_anti")
