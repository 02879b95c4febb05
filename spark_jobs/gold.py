"""Streaming gold, per micro-batch of new silver rows: the windows they touched, recomputed from silver.

Recomputing a whole window from silver (rather than adding the batch to a running state) keeps
distinct counts exact, lets late events land in their own window, and makes every write a
replacement that a replayed batch repeats to the same result. Totals that are increments
(``event_statistics``) are booked once per batch id instead. The gold query reads silver as a
stream with its own checkpoint, so a replayed batch brings the same rows and the same id.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import psycopg
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from clickrec_platform.events.contract import INTERACTION_WEIGHTS
from clickrec_platform.lake.tables import (
    GOLD_EVENT_STATISTICS,
    GOLD_TRENDING_ITEMS,
    GOLD_WINDOWED_STATS,
    SILVER_EVENTS,
)
from clickrec_platform.serving.live_tables import (
    add_event_statistics_once,
    insert_live_events,
    replace_windows,
    upsert_recent_items,
)
from clickrec_platform.settings import Settings
from spark_jobs.refine import StageTimer

log = logging.getLogger("clickrec.stream")

STATS_WINDOW_MS = 5 * 60_000
TRENDING_LENGTH_MS = 10 * 60_000
TRENDING_SLIDE_MS = 5 * 60_000


def _weight() -> F.Column:
    weight = F.lit(None).cast("double")
    for event, value in INTERACTION_WEIGHTS.items():
        weight = F.when(F.col("event") == event, F.lit(float(value))).otherwise(weight)
    return weight


def _ms_to_ts(column: str | F.Column) -> F.Column:
    return F.timestamp_millis(F.col(column) if isinstance(column, str) else column)


def _dates_covering(starts_ms: list[int], length_ms: int) -> list[date]:
    days = set()
    for start in starts_ms:
        days.add(datetime.fromtimestamp(start / 1000, UTC).date())
        days.add(datetime.fromtimestamp((start + length_ms - 1) / 1000, UTC).date())
    return sorted(days)


def _in_windows(rows: DataFrame, window_starts_ms: list[int], length_ms: int) -> DataFrame:
    """The rows whose window ``w`` is one of ``window_starts_ms``, reading only the days they cover."""
    touched = rows.sparkSession.createDataFrame([(w,) for w in window_starts_ms], "w bigint")
    return (rows.where(F.col("event_date").isin(_dates_covering(window_starts_ms, length_ms)))
            .join(F.broadcast(touched), "w"))


def windowed_stats(silver: DataFrame, window_starts_ms: list[int]) -> DataFrame:
    """Per touched 5-minute window and event type: events, distinct visitors, distinct items."""
    rows = _in_windows(silver.withColumn("w", F.floor(F.col("ts") / STATS_WINDOW_MS) * STATS_WINDOW_MS),
                       window_starts_ms, STATS_WINDOW_MS)
    return (rows.groupBy("w", "event")
            .agg(F.count("*").alias("event_count"), F.countDistinct("visitor_id").alias("unique_users"),
                 F.countDistinct("item_id").alias("unique_items"))
            .select(_ms_to_ts("w").alias("window_start"), _ms_to_ts(F.col("w") + STATS_WINDOW_MS).alias("window_end"),
                    "event", "event_count", "unique_users", "unique_items",
                    F.current_timestamp().alias("updated_at")))


def trending_items(silver: DataFrame, window_starts_ms: list[int], top_n: int) -> DataFrame:
    """Top items per touched 10-minute window (sliding by 5), scored by interaction weight."""
    slide = F.floor(F.col("ts") / TRENDING_SLIDE_MS) * TRENDING_SLIDE_MS
    weighted = (silver.where(F.col("item_id").isNotNull())
                .withColumn("weight", _weight()).where(F.col("weight").isNotNull())
                # An event belongs to the window starting in its slide and to the one a slide earlier.
                .withColumn("w", F.explode(F.array(slide, slide - TRENDING_SLIDE_MS))))
    rows = _in_windows(weighted, window_starts_ms, TRENDING_LENGTH_MS)
    scored = rows.groupBy("w", "item_id").agg(F.sum("weight").alias("score"), F.count("*").alias("event_count"))
    ranking = Window.partitionBy("w").orderBy(F.desc("score"), F.asc("item_id"))
    return (scored.withColumn("rank", F.row_number().over(ranking)).where(F.col("rank") <= top_n)
            .select(_ms_to_ts("w").alias("window_start"),
                    _ms_to_ts(F.col("w") + TRENDING_LENGTH_MS).alias("window_end"),
                    "item_id", "score", "event_count", F.col("rank").cast("int"),
                    F.current_timestamp().alias("updated_at")))


def merge_replacing(spark: SparkSession, path: str, rows: DataFrame, keys: list[str], scope: str) -> None:
    """Make the target's rows for every ``scope`` value present in ``rows`` equal ``rows``, in one commit:
    matching keys are updated, new ones inserted, and the scope's other target rows deleted."""
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, path)
    scopes = rows.select(scope).distinct()
    stale = (target.toDF().join(F.broadcast(scopes), scope).join(rows.select(*keys), keys, "left_anti")
             .select(*[F.col(c) for c in rows.columns]).withColumn("_delete", F.lit(True)))
    source = rows.withColumn("_delete", F.lit(False)).unionByName(stale)
    condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    values = {c: f"s.{c}" for c in rows.columns}
    (target.alias("t").merge(source.alias("s"), condition)
     .whenMatchedDelete(condition="s._delete")
     .whenMatchedUpdate(set=values)
     .whenNotMatchedInsert(condition="NOT s._delete", values=values)
     .execute())


@contextmanager
def idempotent_dml(spark: SparkSession, app_id: str, version: int):
    """Delta skips DML (MERGE here) whose (app id, version) the table has already committed."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


def add_event_statistics(spark: SparkSession, path: str, increments: DataFrame, app_id: str, batch_id: int) -> None:
    from delta.tables import DeltaTable

    with idempotent_dml(spark, app_id, batch_id):
        (DeltaTable.forPath(spark, path).alias("t").merge(increments.alias("s"), "t.event = s.event")
         .whenMatchedUpdate(set={
             "event_count": "t.event_count + s.event_count",
             "first_event_at": "least(t.first_event_at, s.first_event_at)",
             "last_event_at": "greatest(t.last_event_at, s.last_event_at)",
             "updated_at": "s.updated_at"})
         .whenNotMatchedInsertAll().execute())


def update_gold(spark: SparkSession, settings: Settings, new_events: DataFrame, batch_id: int,
                timer: StageTimer) -> None:
    """Gold tables in Delta and Postgres for the events this batch added to silver."""
    app_id = settings.stream_app_id
    stats_windows = sorted({r.w for r in new_events.select(
        (F.floor(F.col("ts") / STATS_WINDOW_MS) * STATS_WINDOW_MS).alias("w")).distinct().collect()})
    if not stats_windows:
        return
    trending_windows = sorted(set(stats_windows) | {w - TRENDING_SLIDE_MS for w in stats_windows})
    silver = spark.read.format("delta").load(SILVER_EVENTS.path(settings))

    stats = windowed_stats(silver, stats_windows).persist()
    trending = trending_items(silver, trending_windows, settings.trending_top_n).persist()
    increments = (new_events.groupBy("event").agg(
        F.count("*").alias("event_count"), F.min("event_time").alias("first_event_at"),
        F.max("event_time").alias("last_event_at"))
        .withColumn("updated_at", F.current_timestamp())).persist()
    try:
        # Postgres first: it is what the API and SQL consumers read, so it should not wait for the
        # Delta MERGEs. Each side is idempotent on its own, so the order is free.
        recent = (new_events.where(F.col("item_id").isNotNull())
                  .groupBy("visitor_id", "item_id")
                  .agg(F.max_by("event", "ts").alias("last_event"), F.max("event_time").alias("last_seen_at")))
        per_visitor = Window.partitionBy("visitor_id").orderBy(F.desc("last_seen_at"), F.desc("item_id"))
        recent = (recent.withColumn("_n", F.row_number().over(per_visitor))
                  .where(F.col("_n") <= settings.recent_items_per_visitor).drop("_n"))
        live = (new_events.orderBy(F.desc("ts"), F.asc("event_id")).limit(settings.live_events_per_batch)
                .select("event_id", F.col("event_time").alias("ts"), "visitor_id", "event", "item_id",
                        "session_id", "source"))
        with timer.stage("postgres"), psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
            schema = settings.gold_schema
            replace_windows(conn, "windowed_stats", stats.drop("updated_at").toArrow(),
                            [datetime.fromtimestamp(w / 1000, UTC) for w in stats_windows], schema=schema)
            replace_windows(conn, "trending_items", trending.drop("updated_at").toArrow(),
                            [datetime.fromtimestamp(w / 1000, UTC) for w in trending_windows], schema=schema)
            add_event_statistics_once(conn, f"{app_id}:event_statistics", batch_id,
                                      increments.drop("updated_at").toArrow(), schema=schema)
            upsert_recent_items(conn, recent.toArrow(), keep_per_visitor=settings.recent_items_per_visitor,
                                schema=schema)
            insert_live_events(conn, live.toArrow(),
                               retention=timedelta(minutes=settings.live_events_retention_minutes), schema=schema)
        with timer.stage("gold-windows"):
            merge_replacing(spark, GOLD_WINDOWED_STATS.path(settings), stats, ["window_start", "event"],
                            "window_start")
        with timer.stage("gold-trending"):
            merge_replacing(spark, GOLD_TRENDING_ITEMS.path(settings), trending, ["window_start", "item_id"],
                            "window_start")
        with timer.stage("gold-totals"):
            add_event_statistics(spark, GOLD_EVENT_STATISTICS.path(settings), increments,
                                 f"{app_id}-event-statistics", batch_id)
    finally:
        for frame in (stats, trending, increments):
            frame.unpersist()


class GoldBatch:
    """The ``foreachBatch`` function of the gold query: its micro-batch is the silver rows added."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, new_silver_rows: DataFrame, batch_id: int) -> None:
        started, timer = time.perf_counter(), StageTimer()
        rows = new_silver_rows.persist()
        try:
            update_gold(rows.sparkSession, self.settings, rows, batch_id, timer)
        finally:
            rows.unpersist()
        log.info("gold batch %d (%.1fs: %s)", batch_id, time.perf_counter() - started, timer.summary())
