"""Join events to the catalogue as it was when each event happened."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def with_item_at_event_time(events: DataFrame, versions: DataFrame, columns: tuple[str, ...] = ("category_id",)
                            ) -> DataFrame:
    """`events` plus the named columns of the item version valid at `event_time` (null if none)."""
    version = versions.select(F.col("item_id").alias("_item_id"), F.col("valid_from").alias("_from"),
                              F.col("valid_to").alias("_to"), *columns)
    during = ((F.col("item_id") == F.col("_item_id")) & (F.col("event_time") >= F.col("_from"))
              & (F.col("_to").isNull() | (F.col("event_time") < F.col("_to"))))
    return events.join(version, during, "left").drop("_item_id", "_from", "_to")
