"""One row per visitor: what they did, how often, when, and in which categories."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from clickrec_platform.features.interactions import event_counts, interaction_weight
from clickrec_platform.features.point_in_time import with_item_at_event_time

SESSION_GAP_SECONDS = 30 * 60  # a visitor idle this long starts a new session (when events carry no session id)
TOP_CATEGORIES = 3


def user_features(events: DataFrame, item_versions: DataFrame, as_of: Column) -> DataFrame:
    """visitor_id; views/addtocarts/likes/transactions/searches and events; first_seen, last_seen,
    recency_days (to `as_of`); active_days and events_per_active_day (frequency); sessions;
    view_to_cart_rate, view_to_purchase_rate, cart_to_purchase_rate (null without a denominator);
    hour_profile (24 shares, UTC) and weekday_profile (7 shares, Monday first); top_categories
    (up to 3 category ids by interaction weight, each event counted in the category its item had
    at the time)."""
    activity = (_with_session_starts(events)
                .groupBy("visitor_id")
                .agg(*event_counts(), F.count(F.when(F.col("event") == "search", 1)).alias("searches"),
                     F.count(F.lit(1)).alias("events"),
                     F.min("event_time").alias("first_seen"), F.max("event_time").alias("last_seen"),
                     F.countDistinct("event_date").alias("active_days"),
                     F.sum(F.col("session_start").cast("int")).alias("sessions"),
                     _shares(F.hour("event_time"), range(24)).alias("hour_profile"),
                     # dayofweek is 1 = Sunday … 7 = Saturday; (d + 5) % 7 makes Monday 0.
                     _shares((F.dayofweek("event_time") + 5) % 7, range(7)).alias("weekday_profile")))
    activity = activity.select(
        "*",
        ((as_of.cast("double") - F.col("last_seen").cast("double")) / 86_400.0).alias("recency_days"),
        (F.col("events") / F.col("active_days")).alias("events_per_active_day"),
        _rate("addtocarts", "views").alias("view_to_cart_rate"),
        _rate("transactions", "views").alias("view_to_purchase_rate"),
        _rate("transactions", "addtocarts").alias("cart_to_purchase_rate"),
    )
    return activity.join(_top_categories(events, item_versions), "visitor_id", "left")


def _with_session_starts(events: DataFrame) -> DataFrame:
    """`session_start` is true on a visitor's first event of a session: a new session id, or, for
    events without one (RetailRocket's), the first after 30 idle minutes."""
    previous = Window.partitionBy("visitor_id").orderBy("ts", "event_id")
    gap = (F.col("ts") - F.lag("ts").over(previous)) / 1000.0
    prior_session = F.lag("session_id").over(previous)
    start = (F.lag("ts").over(previous).isNull()
             | F.when(F.col("session_id").isNotNull(), ~F.col("session_id").eqNullSafe(prior_session))
             .otherwise(gap > SESSION_GAP_SECONDS))
    return events.withColumn("session_start", start)


def _shares(value: Column, buckets: range) -> Column:
    total = F.count(F.lit(1))
    return F.array(*[F.count(F.when(value == bucket, 1)) / total for bucket in buckets])


def _rate(numerator: str, denominator: str) -> Column:
    return F.when(F.col(denominator) > 0, F.col(numerator) / F.col(denominator))


def _top_categories(events: DataFrame, item_versions: DataFrame) -> DataFrame:
    weighted = (events.where(F.col("item_id").isNotNull()).withColumn("weight", interaction_weight())
                .where(F.col("weight").isNotNull()))
    by_category = (with_item_at_event_time(weighted, item_versions)
                   .where(F.col("category_id").isNotNull())
                   .groupBy("visitor_id", "category_id").agg(F.sum("weight").alias("weight")))
    ranked = Window.partitionBy("visitor_id").orderBy(F.desc("weight"), "category_id")
    return (by_category.withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= TOP_CATEGORIES)
            .groupBy("visitor_id")
            .agg(F.sort_array(F.collect_list(F.struct("rank", "category_id"))).alias("_ranked"))
            .select("visitor_id", F.col("_ranked.category_id").alias("top_categories")))
