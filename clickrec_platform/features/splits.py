"""A chronological train / validation / test split of the interactions (by event time, never random).

The boundaries are the event-time quantiles at 70% and 85% (by default) of the weighted events (the
ceil(q * n)-th event time, as `recommend.data.splits_from_events` cuts the same events), so
each part holds its share of the events and everything in validation and test happened after all
of train: no peeking into the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickrec_platform.features.interactions import event_counts, weighted_events

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitBoundaries:
    """Each split covers [start, end): train_start ≤ train < validation_start ≤ … < test_end."""

    train_start: datetime
    validation_start: datetime
    test_start: datetime
    test_end: datetime  # just after the last event

    def as_dict(self) -> dict[str, str]:
        return {name: value.isoformat() for name, value in self.__dict__.items()}

    def ranges(self) -> dict[str, tuple[datetime, datetime]]:
        return {"train": (self.train_start, self.validation_start),
                "validation": (self.validation_start, self.test_start),
                "test": (self.test_start, self.test_end)}


def split_boundaries(events: DataFrame, fractions: tuple[float, float, float]) -> SplitBoundaries:
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be three positive shares summing to 1, got {fractions}")
    first_cut = fractions[0]
    second_cut = fractions[0] + fractions[1]
    row = (weighted_events(events)
           .agg(F.min("ts").alias("first"), F.max("ts").alias("last"),
                F.percentile_approx("ts", [first_cut, second_cut], 1_000_000).alias("cuts"))
           .first())
    if row is None or row["first"] is None:
        raise ValueError("no interactions to split: silver.events holds no weighted events")
    cuts = [int(cut) for cut in row["cuts"]]
    return SplitBoundaries(from_ms(row["first"]), from_ms(cuts[0]), from_ms(cuts[1]), from_ms(row["last"] + 1))


def training_splits(events: DataFrame, bounds: SplitBoundaries) -> DataFrame:
    """visitor_id, item_id, split, weight, events, the count of each event type, first_ts, last_ts,
    split_start, split_end: one row per visitor, item and split.

    The weight is not decayed here: CLICKREC_INTERACTION_HALF_LIFE_DAYS decays it where models are
    fitted (`recommend.data.InteractionData.from_splits`), towards the end of what they train on
    (train, or train + validation before the test), which one column here could not be for both."""
    ranges = bounds.ranges()
    split = (F.when(F.col("event_time") < F.lit(bounds.validation_start), "train")
             .when(F.col("event_time") < F.lit(bounds.test_start), "validation").otherwise("test"))
    split_start = F.create_map(*[x for name in SPLITS for x in (F.lit(name), F.lit(ranges[name][0]))])
    split_end = F.create_map(*[x for name in SPLITS for x in (F.lit(name), F.lit(ranges[name][1]))])
    return (weighted_events(events).withColumn("split", split)
            .groupBy("visitor_id", "item_id", "split")
            .agg(F.sum("weight").alias("weight"), F.count(F.lit(1)).alias("events"), *event_counts(),
                 F.min("event_time").alias("first_ts"), F.max("event_time").alias("last_ts"))
            .withColumn("split_start", split_start[F.col("split")])
            .withColumn("split_end", split_end[F.col("split")]))


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as a naive UTC datetime (how the UTC Spark session returns timestamps)."""
    return datetime.fromtimestamp(ms / 1000.0, UTC).replace(tzinfo=None)
