"""Visitor × item interaction weights (view 1, addtocart 3, like 4, transaction 5), per event date."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clickrec_platform.events.contract import INTERACTION_WEIGHTS

# One count column per weighted event type, named after it (views, addtocarts, likes, transactions).
COUNT_COLUMNS = {event: f"{event}s" for event in INTERACTION_WEIGHTS}


def interaction_weight() -> Column:
    """The contract's weight of an event; null for events that are not interactions (search)."""
    weight = None
    for event, value in INTERACTION_WEIGHTS.items():
        weight = (F.when(F.col("event") == event, F.lit(float(value))) if weight is None
                  else weight.when(F.col("event") == event, F.lit(float(value))))
    assert weight is not None  # the contract weighs some events
    return weight


def weighted_events(events: DataFrame) -> DataFrame:
    """The events that are interactions with an item, with their `weight`."""
    return (events.where(F.col("event").isin(list(INTERACTION_WEIGHTS)) & F.col("item_id").isNotNull())
            .withColumn("weight", interaction_weight()))


def event_counts(prefix: str = "") -> list[Column]:
    """Aggregates counting each weighted event type (`views`, `addtocarts`, …)."""
    return [F.count(F.when(F.col("event") == event, 1)).alias(f"{prefix}{name}")
            for event, name in COUNT_COLUMNS.items()]


def interactions(events: DataFrame) -> DataFrame:
    """event_date, visitor_id, item_id, the count of each event type, weight, first_ts, last_ts."""
    return (weighted_events(events)
            .groupBy("event_date", "visitor_id", "item_id")
            .agg(*event_counts(), F.sum("weight").alias("weight"),
                 F.min("event_time").alias("first_ts"), F.max("event_time").alias("last_ts")))
