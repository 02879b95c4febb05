"""Streaming gold: per 5-minute window statistics, trending items and running totals per event type.

The windows a batch of new silver rows touched are recomputed from silver (rather than adding the
batch to a running state): distinct counts stay exact, late events land in their own window, and
every write is a replacement that a replayed batch repeats to the same result. Silver is read only
for the touched windows' dates and event-time range, which Delta's file statistics turn into a
read of the few files that hold them.

The gold query (``GoldBatch``, over silver as a stream with its own checkpoint and a slower trigger)
writes the Delta gold tables with MERGEs, books the running totals in Postgres (``event_statistics``,
increments: once per batch id) and posts the windows to Postgres: in continuous mode only those
older than the live query's span (``spark_jobs/live.py`` keeps the newer ones current within
seconds), in catch-up (available-now, no live query) all of them, and each visitor's latest items
and the recent events too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from clickrec_platform.events.contract import INTERACTION_WEIGHTS
from clickrec_platform.lake.tables import (
    GOLD_EVENT_STATISTICS,
    GOLD_TRENDING_ITEMS,
    GOLD_WINDOWED_STATS,
    SILVER_EVENTS,
)
from clickrec_platform.serving.live_path import live_horizon, post_live_events
from clickrec_platform.serving.live_tables import (
    STATS_WINDOW,
    TRENDING_SLIDE,
    TRENDING_WINDOW,
    add_event_statistics_once,
    replace_windows,
)
from clickrec_platform.serving.retry import write_with_retry
from clickrec_platform.settings import Settings
from spark_jobs.batch import StageTimer, idempotent_dml, in_pool
from spark_jobs.live import latest_items, live_events

log = logging.getLogger("clickrec.stream")

# The windows' lengths in epoch ms, as the live path computes them in Postgres.
STATS_WINDOW_MS = STATS_WINDOW // timedelta(milliseconds=1)
TRENDING_LENGTH_MS = TRENDING_WINDOW // timedelta(milliseconds=1)
TRENDING_SLIDE_MS = TRENDING_SLIDE // timedelta(milliseconds=1)


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


def stats_window(ts: str) -> F.Column:
    """The start (epoch ms) of the 5-minute window of an event time in epoch ms."""
    return F.floor(F.col(ts) / STATS_WINDOW_MS) * STATS_WINDOW_MS


def _in_windows(rows: DataFrame, window_starts_ms: list[int], length_ms: int) -> DataFrame:
    """The rows whose window ``w`` is one of ``window_starts_ms``, reading only the dates and the
    event-time range they cover (partition pruning, then Delta's per-file min/max of ``ts``)."""
    touched = rows.sparkSession.createDataFrame([(w,) for w in window_starts_ms], "w bigint")
    first, end = min(window_starts_ms), max(window_starts_ms) + length_ms
    return (rows.where(F.col("event_date").isin(_dates_covering(window_starts_ms, length_ms))
                       & (F.col("ts") >= first) & (F.col("ts") < end))
            .join(F.broadcast(touched), "w"))


def windowed_stats(silver: DataFrame, window_starts_ms: list[int]) -> DataFrame:
    """Per touched 5-minute window and event type: events, distinct visitors, distinct items."""
    rows = _in_windows(silver.withColumn("w", stats_window("ts")), window_starts_ms, STATS_WINDOW_MS)
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


@dataclass(frozen=True)
class TouchedWindows:
    """The windows (epoch ms of their starts) that a batch of new silver rows falls in."""

    stats_ms: list[int]
    trending_ms: list[int]

    @classmethod
    def of(cls, new_events: DataFrame) -> TouchedWindows | None:
        """The 5-minute windows of the new events, and the trending windows starting in those or a
        slide earlier; None for no events."""
        stats = sorted(r.w for r in new_events.select(stats_window("ts").alias("w")).distinct().collect())
        if not stats:
            return None
        return cls(stats, sorted(set(stats) | {w - TRENDING_SLIDE_MS for w in stats}))

    def frames(self, spark: SparkSession, settings: Settings) -> tuple[DataFrame, DataFrame]:
        """``windowed_stats`` and ``trending_items`` of these windows, recomputed from silver."""
        silver = spark.read.format("delta").load(SILVER_EVENTS.path(settings))
        return (windowed_stats(silver, self.stats_ms),
                trending_items(silver, self.trending_ms, settings.trending_top_n))

    def post(self, conn: psycopg.Connection, settings: Settings, stats: DataFrame, trending: DataFrame,
             before: datetime | None = None) -> None:
        """Replace these windows in the Postgres live tables (each table in one transaction); with
        ``before``, only those that start before it."""
        def replace(table: str, rows: DataFrame, window_ms: list[int]) -> None:
            starts = [datetime.fromtimestamp(w / 1000, UTC) for w in window_ms]
            if before is not None:
                starts = [start for start in starts if start < before]
                rows = rows.where(F.col("window_start") < F.lit(before))
            if starts:
                replace_windows(conn, table, rows.drop("updated_at").toArrow(), starts, schema=settings.gold_schema)

        replace(table="windowed_stats", rows=stats, window_ms=self.stats_ms)
        replace(table="trending_items", rows=trending, window_ms=self.trending_ms)


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
    values: dict[str, str | Column] = {c: f"s.{c}" for c in rows.columns}  # the merge builder's type
    (target.alias("t").merge(source.alias("s"), condition)
     .whenMatchedDelete(condition="s._delete")
     .whenMatchedUpdate(set=values)
     .whenNotMatchedInsert(condition="NOT s._delete", values=values)
     .execute())


def event_increments(new_events: DataFrame) -> DataFrame:
    """Per event type: how many events, and the first and last event time, of a batch."""
    return (new_events.groupBy("event").agg(
        F.count("*").alias("event_count"), F.min("event_time").alias("first_event_at"),
        F.max("event_time").alias("last_event_at"))
        .withColumn("updated_at", F.current_timestamp()))


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


class GoldBatch:
    """The ``foreachBatch`` function of the gold query: its micro-batch is the silver rows added.

    ``catch_up`` (available-now runs, where no live query runs): post every touched window to
    Postgres, and each visitor's latest items and the recent events too. Otherwise the live query
    owns the windows of the last ``live_window_minutes`` and the other live tables, and this posts
    only the touched windows older than that (late events, replays of old data).
    """

    def __init__(self, settings: Settings, catch_up: bool = False):
        self.settings = settings
        self.catch_up = catch_up

    def __call__(self, new_silver_rows: DataFrame, batch_id: int) -> None:
        started, timer = time.perf_counter(), StageTimer()
        spark, settings = new_silver_rows.sparkSession, self.settings
        in_pool(spark, "gold")
        rows = new_silver_rows.persist()
        frames: list[DataFrame] = [rows]
        try:
            touched = TouchedWindows.of(rows)
            if touched is None:
                return
            stats, trending = (frame.persist() for frame in touched.frames(spark, settings))
            increments = event_increments(rows).persist()
            frames += [stats, trending, increments]
            horizon = live_horizon(settings)
            with timer.stage("live-prepare"):
                if self.catch_up:  # only events of the live span go to live_clickstream_events
                    events = live_events(rows.where(F.col("ts") >= int(horizon.timestamp() * 1000)))
                    recent = latest_items(rows, settings.recent_items_per_visitor).toArrow()

            def post(conn: psycopg.Connection) -> None:  # idempotent as a whole: run again after an outage
                touched.post(conn, settings, stats, trending, before=None if self.catch_up else horizon)
                add_event_statistics_once(conn, f"{settings.stream_app_id}:gold:event_statistics", batch_id,
                                          increments.drop("updated_at").toArrow(), schema=settings.gold_schema)
                if self.catch_up:
                    post_live_events(conn, settings, events, windows=False, recent_items=recent)

            with timer.stage("postgres"):
                write_with_retry(settings, post, what=f"gold batch {batch_id}")
            with timer.stage("gold-windows"):
                merge_replacing(spark, GOLD_WINDOWED_STATS.path(settings), stats, ["window_start", "event"],
                                "window_start")
            with timer.stage("gold-trending"):
                merge_replacing(spark, GOLD_TRENDING_ITEMS.path(settings), trending, ["window_start", "item_id"],
                                "window_start")
            with timer.stage("gold-totals"):
                add_event_statistics(spark, GOLD_EVENT_STATISTICS.path(settings), increments,
                                     f"{settings.stream_app_id}-event-statistics", batch_id)
        finally:
            for frame in frames:
                frame.unpersist()
        log.info("gold batch %d (%.1fs: %s)", batch_id, time.perf_counter() - started, timer.summary())
