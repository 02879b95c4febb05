"""One micro-batch of bronze records → silver events and quarantine.

Exactly once, end to end. Spark replays a batch whose commit it did not record, with the same id
and the same bronze rows, so every write here is keyed on that id:
- Delta appends carry ``txnAppId``/``txnVersion`` = (app id, batch id): a replayed append is skipped;
- the rows new to silver are those whose ``event_id`` no earlier batch wrote, which is the same on
  a replay whether or not this batch's own append had landed (silver rows carry the app id and
  batch id that wrote them).
Gold is a query of its own over silver (``spark_jobs/gold.py``), so ingest never waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickrec_platform.events.contract import FIELD_NAMES
from clickrec_platform.events.spark_parse import REASON, parse_events
from clickrec_platform.lake.silver import silver_rows
from clickrec_platform.lake.tables import OPS_STREAM_BATCHES, SILVER_EVENTS, SILVER_QUARANTINE
from clickrec_platform.settings import Settings

log = logging.getLogger("clickrec.stream")


@dataclass
class StageTimer:
    """Seconds per stage of a batch, for the log line and the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.1f}s" for name, secs in self.seconds.items())


def append_once(frame: DataFrame, path: str, app_id: str, batch_id: int) -> None:
    """Append unless this (app id, batch id) already committed to the table."""
    (frame.write.format("delta").mode("append")
     .option("txnAppId", app_id).option("txnVersion", batch_id).save(path))


class RefineBatch:
    """The ``foreachBatch`` function of the refine query (a callable, so it carries its settings)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app_id = settings.stream_app_id
        self.silver_path = SILVER_EVENTS.path(settings)

    def __call__(self, bronze: DataFrame, batch_id: int) -> None:
        started = time.time()
        spark = bronze.sparkSession
        parsed = parse_events(bronze.withColumn("value_text", F.col("value").cast("string")), "value_text")
        # Cache what the batch needs, and the raw record only where it is quarantined.
        parsed = parsed.select(
            *FIELD_NAMES, REASON, "topic", "partition", "offset", "kafka_timestamp",
            F.when(F.col(REASON).isNotNull(), F.col("key").cast("string")).alias("raw_key"),
            F.when(F.col(REASON).isNotNull(), F.col("value_text")).alias("raw_value"),
        ).persist()
        timer = StageTimer()
        try:
            with timer.stage("parse"):
                bronze_rows = parsed.count()
            quarantined = parsed.where(F.col(REASON).isNotNull()).select(
                "raw_key", "raw_value",
                "topic", F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                "kafka_timestamp", F.col(REASON).alias("reason"), F.lit(batch_id).cast("bigint").alias("ingest_batch"),
                F.current_timestamp().alias("ingested_at"))
            with timer.stage("quarantine"):
                quarantined_rows = bronze_rows - parsed.where(F.col(REASON).isNull()).count()
                if quarantined_rows:  # an empty append would still cost a Delta commit
                    append_once(quarantined, SILVER_QUARANTINE.path(self.settings),
                                f"{self.app_id}-quarantine", batch_id)

            new_events = self._new_events(spark, parsed, batch_id).persist()
            try:
                with timer.stage("dedup"):
                    silver_rows = new_events.count()
                with timer.stage("silver"):
                    append_once(new_events, self.silver_path, f"{self.app_id}-silver", batch_id)
            finally:
                new_events.unpersist()
        finally:
            parsed.unpersist()

        duplicate_rows = bronze_rows - silver_rows - quarantined_rows
        seconds = time.time() - started
        ops_row = spark.createDataFrame(
            [(batch_id, bronze_rows, silver_rows, quarantined_rows, duplicate_rows, started, seconds)],
            "batch_id bigint, bronze_rows bigint, silver_rows bigint, quarantined_rows bigint, "
            "duplicate_rows bigint, started_at double, seconds double",
        ).withColumn("started_at", F.col("started_at").cast("timestamp"))
        append_once(ops_row, OPS_STREAM_BATCHES.path(self.settings), f"{self.app_id}-ops", batch_id)
        log.info("refine batch %d: bronze %d = silver %d + quarantined %d + duplicates %d (%.1fs: %s)", batch_id,
                 bronze_rows, silver_rows, quarantined_rows, duplicate_rows, seconds, timer.summary())

    def _new_events(self, spark, parsed: DataFrame, batch_id: int) -> DataFrame:
        """Valid events whose id no earlier batch wrote, one row per id.

        The same event always has the same event time, so earlier copies can only sit in the same
        ``event_date`` partitions: the lookup reads just those.
        """
        valid = silver_rows(parsed.where(F.col(REASON).isNull()), ingest_app=self.app_id, ingest_batch=batch_id,
                            kafka_partition=F.col("partition"), kafka_offset=F.col("offset"))
        # Copies of an event share every contract field (the id hashes them); which copy's Kafka
        # coordinates are kept does not matter, so a hash aggregate beats a sort by offset.
        unique = valid.dropDuplicates(["event_id"])
        dates = [row.event_date for row in unique.select("event_date").distinct().collect()]
        if not dates:
            return unique
        # Earlier = any batch of another app id (an older checkpoint), or an earlier one of this.
        this_or_later = (F.col("ingest_app") == self.app_id) & (F.col("ingest_batch") >= batch_id)
        earlier = (spark.read.format("delta").load(self.silver_path)
                   .where(F.col("event_date").isin(dates) & ~this_or_later)
                   .select("event_id"))
        return unique.join(earlier, "event_id", "left_anti")
