"""One micro-batch of Kafka records → silver, quarantine and bronze.

The ingest query reads each Kafka record once per micro-batch and writes, in this order:
1. ``silver.events``: the valid events no earlier batch wrote, one row per ``event_id``;
2. ``silver.quarantine``: every record that is not a valid event, its key and value as the bytes received,
   with the reason;
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
from datetime import date, timedelta

import numpy as np
import pyarrow.compute as pc
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clickrec_platform.events.spark_parse import REASON, parse_kafka_values
from clickrec_platform.lake.silver import silver_rows
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
)
from clickrec_platform.settings import Settings
from spark_jobs.batch import HeldRows, StageTimer, append_once, commit_tag, in_pool

log = logging.getLogger("clickrec.stream")

# Earlier silver ids up to this many are broadcast to the anti-join; more are shuffled.
BROADCAST_EARLIER_IDS = 500_000
# A replayed batch finds its silver commit among the table's last commits (ingest is its only writer).
HISTORY_LOOKBACK = 20
_EPOCH = date(1970, 1, 1)
# Valid rows up to this many are deduplicated and written by one task (a continuous mode's batch).
SMALL_BATCH = 50_000


def bronze_columns(kafka_records: DataFrame) -> DataFrame:
    """The Kafka source's columns as bronze keeps them (the query selects these before each batch)."""
    return kafka_records.select(
        "key", "value", "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"), F.col("timestampType").alias("kafka_timestamp_type"))


def raw_text(value: Column) -> Column:
    """A record's value as text for humans: invalid UTF-8 replaced by U+FFFD (a cast alone would store
    the bytes as they are, and readers of the string column, DuckDB and delta-rs, refuse them)."""
    return F.make_valid_utf8(value.cast("string")).alias("raw_text")


def with_ingest_time(records: DataFrame) -> DataFrame:
    """Bronze's rows: the records plus the time they were ingested and its date (the partition).

    Added at the bronze append rather than with the other columns: Spark writes the current time
    into the code it generates for a stage, so a stage that holds it is compiled anew each batch,
    and the parse stage, the largest, would be compiled and warmed up by the JIT every time.
    """
    return records.select("*", F.current_timestamp().alias("ingested_at"), F.current_date().alias("ingest_date"))


@dataclass(frozen=True)
class BatchSummary:
    """One pass over the parsed batch: row counts, the dates and event-time range of the valid rows,
    and the id hashes that more than one valid row shares (the only rows that may repeat an id)."""

    records: int
    valid: int
    quarantined: int
    reasons: dict[str, int]
    event_dates: list
    min_ts: int | None
    max_ts: int | None
    repeated_hashes: list[int]

    @classmethod
    def of(cls, parsed: DataFrame) -> BatchSummary:
        # Three narrow columns to the driver through Arrow: one scan of the held rows, no shuffle.
        valid = F.col(REASON).isNull()
        table = parsed.select(F.col(REASON).alias("reason"), F.when(valid, F.col("ts")).alias("ts"),
                              F.when(valid, F.xxhash64("event_id")).alias("h")).toArrow()
        reasons = {r["values"]: r["counts"] for r in pc.value_counts(table["reason"].drop_null()).to_pylist()}
        ts = table["ts"].drop_null()  # the valid rows' (the contract's ts is never null)
        hashes = pc.value_counts(table["h"].drop_null())
        repeated = pc.filter(hashes.field("values"), pc.greater(hashes.field("counts"), 1))
        days = np.unique(ts.to_numpy() // 86_400_000) if len(ts) else np.array([], dtype=np.int64)
        return cls(
            records=table.num_rows, valid=len(ts), quarantined=sum(reasons.values()), reasons=reasons,
            event_dates=[_EPOCH + timedelta(days=int(d)) for d in days],
            min_ts=pc.min(ts).as_py(), max_ts=pc.max(ts).as_py(), repeated_hashes=repeated.to_pylist())


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
        master = spark.sparkContext.master
        assert master is not None  # a running context has its master
        with HeldRows.for_master(master) as held:
            # Kafka is read and parsed once: the rows held keep each record as received, for bronze
            # and quarantine, next to its parsed fields.
            with timer.stage("parse"):
                parsed = held.hold(parse_kafka_values(records))
                summary = BatchSummary.of(parsed)
            silver_count = 0
            if summary.valid:
                with timer.stage("silver"):
                    silver_app = f"{self.app_id}-silver"
                    append_once(self._new_events(spark, parsed, batch_id, summary), self.silver_path, silver_app,
                                batch_id)
                    silver_count = self._rows_written(spark, silver_app, batch_id)
            if summary.quarantined:  # an empty append would still cost a Delta commit
                with timer.stage("quarantine"):
                    append_once(self._quarantined(parsed, batch_id), SILVER_QUARANTINE.path(self.settings),
                                f"{self.app_id}-quarantine", batch_id)
            with timer.stage("bronze"):
                append_once(with_ingest_time(parsed.select(*records.columns)), BRONZE_CLICKSTREAM.path(self.settings),
                            f"{self.app_id}-bronze", batch_id)

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

    def _rows_written(self, spark: SparkSession, app_id: str, batch_id: int) -> int:
        """The rows this batch appended to silver, from its commit's metrics: found by the commit's
        tag, whether this attempt or an earlier one of the same batch committed it. Counted instead
        (a scan of this batch's files) if the commit has no metrics or is not among the last ones."""
        commits = (DeltaTable.forPath(spark, self.silver_path).history(HISTORY_LOOKBACK)
                   .where(F.col("userMetadata") == commit_tag(app_id, batch_id)).select("operationMetrics").collect())
        if commits and "numOutputRows" in commits[0].operationMetrics:
            return int(commits[0].operationMetrics["numOutputRows"])
        return (spark.read.format("delta").load(self.silver_path)
                .where((F.col("ingest_app") == self.app_id) & (F.col("ingest_batch") == batch_id)).count())

    def _quarantined(self, parsed: DataFrame, batch_id: int) -> DataFrame:
        return parsed.where(F.col(REASON).isNotNull()).select(
            F.col("key").alias("raw_key"), F.col("value").alias("raw_value"), raw_text(F.col("value")),
            "topic", F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
            "kafka_timestamp", F.col(REASON).alias("reason"),
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
        elif summary.repeated_hashes:
            # Most ids occur once. Only rows whose id hash is shared may repeat an id: just those go
            # through an exact dropDuplicates, and the rest need no shuffle of whole rows.
            hashed = valid.withColumn("_h", F.xxhash64("event_id"))
            hashes = F.broadcast(spark.createDataFrame([(h,) for h in summary.repeated_hashes], "_h bigint"))
            unique = (hashed.join(hashes, "_h", "left_anti")
                      .unionByName(hashed.join(hashes, "_h", "left_semi").dropDuplicates(["event_id"]))).drop("_h")
        else:
            unique = valid
        # Across batches: earlier = any batch of another app id (an older checkpoint), or an
        # earlier one of this.
        this_or_later = (F.col("ingest_app") == self.app_id) & (F.col("ingest_batch") >= batch_id)
        assert summary.min_ts is not None and summary.max_ts is not None  # a batch with valid events
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
