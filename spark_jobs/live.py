"""Spark's own latency path: each micro-batch of Kafka records → the Postgres live tables, nothing else.

Off by default: the speed layer (``clickrec_platform/speed/``, ``clickrec speed``) keeps the same tables
within tens of milliseconds at a fraction of the CPU. With ``--live-query`` (or
``CLICKREC_STREAM_LIVE_QUERY=true``), in continuous mode the ``live`` query reads the topic on its own (its own checkpoint and Kafka
offsets), parses every record with the same contract as silver, and hands the valid events to
``apply_live_events`` in one Postgres transaction: ``live_clickstream_events`` (the events of the
last ``CLICKREC_LIVE_WINDOW_MINUTES`` of event time), ``user_recent_items``, and the
``windowed_stats`` / ``trending_items`` windows of that span, recomputed in Postgres from
``live_clickstream_events``. It makes no Delta commit, so a batch costs a Kafka read, a parse and
one transaction: produce → visible in Postgres takes seconds, while the ingest query writes the lake
in larger, cheaper batches. Windows that start before the horizon (late events, replays of old
data) are the gold query's, from silver.

Exactly once: every write is an insert-if-absent, a merge that keeps the greatest value, or a
window recomputed from the table, so a replayed batch repeats the same result. Quarantine is the
ingest query's: records that fail to parse are skipped here.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from clickrec_platform.events.spark_parse import REASON, parse_kafka_values
from clickrec_platform.serving.live_path import post_live_events
from clickrec_platform.serving.live_tables import LIVE_EVENT_COLUMNS
from clickrec_platform.serving.retry import write_with_retry
from clickrec_platform.settings import Settings
from spark_jobs.batch import StageTimer, in_pool

log = logging.getLogger("clickrec.stream")

def live_events(rows: DataFrame) -> pa.Table:
    """Valid events (parsed or silver rows, ``ts`` in epoch ms) as ``apply_live_events`` takes them."""
    return rows.select(*[F.timestamp_millis("ts").alias("ts") if c == "ts" else c for c in LIVE_EVENT_COLUMNS]
                       ).toArrow()


def latest_items(rows: DataFrame, keep_per_visitor: int) -> DataFrame:
    """Each visitor's latest interaction per item (``user_recent_items``' columns), their
    ``keep_per_visitor`` newest items only: what a large batch changes there, made small in Spark."""
    # The latest (time, event): on a tie in time the greater event, as the Postgres merge decides.
    recent = (rows.where(F.col("item_id").isNotNull()).groupBy("visitor_id", "item_id")
              .agg(F.max(F.struct("ts", "event")).alias("_last")))
    per_visitor = Window.partitionBy("visitor_id").orderBy(F.desc("_last.ts"), F.desc("item_id"))
    return (recent.withColumn("_n", F.row_number().over(per_visitor)).where(F.col("_n") <= keep_per_visitor)
            .select("visitor_id", "item_id", F.col("_last.event").alias("last_event"),
                    F.timestamp_millis("_last.ts").alias("last_seen_at")))


class LiveBatch:
    """The ``foreachBatch`` function of the live query."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        started, timer = time.perf_counter(), StageTimer()
        in_pool(records.sparkSession, "live")
        with timer.stage("parse"):
            parsed = parse_kafka_values(records)
            events = live_events(parsed.where(F.col(REASON).isNull()))
        if events.num_rows == 0:
            return
        with timer.stage("postgres"):
            applied = write_with_retry(self.settings, lambda conn: post_live_events(conn, self.settings, events,
                                                                                    windows=True),
                                       what=f"live batch {batch_id}")
        log.info("live batch %d: %d events, %d new in live_clickstream_events, %d visitors, %d + %d windows "
                 "(%.2fs: %s)", batch_id,
                 events.num_rows, applied.inserted, applied.visitors, applied.stats_windows,
                 applied.trending_windows, time.perf_counter() - started, timer.summary())
