"""What the feature tables' asset checks measure (Spark, one or two passes per table) and how they judge it
(pure functions of the measurements, unit-tested without Spark or Dagster).

Each check reads the table as it is in the lake, so it can run alone (re-run from the UI) as well as right
after its asset in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickrec_platform.features.interactions import COUNT_COLUMNS, weighted_events
from clickrec_platform.features.items import PRICE_BANDS
from clickrec_platform.features.splits import SPLITS
from clickrec_platform.lake.quality import Verdict, count_where, duplicate_keys, null_keys

SPLIT_SHARE_TOLERANCE = 0.02  # how far a split's share of events may be from its fraction


def _first(frame: DataFrame):
    row = frame.first()
    assert row is not None  # an aggregate without grouping has one row
    return row


# gold.interactions ------------------------------------------------------------------------------------------

def measure_interactions(written: DataFrame, events: DataFrame) -> dict[str, int]:
    """Over the same event dates: the table's rows, null keys, duplicates, weights below 1 and counted
    events, and silver's interaction events."""
    counts = count_where(written, {"null_keys": null_keys(["event_date", "visitor_id", "item_id"]),
                                   "weight_below_1": F.col("weight") < 1})
    counted = _first(written.agg(sum((F.sum(c) for c in COUNT_COLUMNS.values()), F.lit(0))))[0] or 0
    return {**counts, "interaction_events": int(counted), "silver_interaction_events": weighted_events(events).count(),
            "duplicates": duplicate_keys(written, ["event_date", "visitor_id", "item_id"])}


def judge_interactions(m: Mapping[str, int]) -> list[Verdict]:
    return [
        Verdict("reconciles_with_silver", m["interaction_events"] == m["silver_interaction_events"],
                {"interaction_events": m["interaction_events"],
                 "silver_interaction_events": m["silver_interaction_events"]}),
        Verdict("unique_keys", m["duplicates"] == 0 and m["null_keys"] == 0,
                {"duplicate_rows": m["duplicates"], "null_key_rows": m["null_keys"]}),
        Verdict("weights_in_range", m["weight_below_1"] == 0, {"rows_below_1": m["weight_below_1"]}),
    ]


# gold.user_features -----------------------------------------------------------------------------------------

USER_VALUE_PROBLEMS = ("negative", "negative_rates", "profile_not_summing_to_1")


def measure_user_features(written: DataFrame, events: DataFrame) -> dict[str, int]:
    def profile_off(name: str):
        return F.abs(F.aggregate(name, F.lit(0.0), lambda acc, x: acc + x) - 1) > 1e-6

    counts = count_where(written, {
        "null_keys": null_keys(["visitor_id"]),
        "negative": F.least(*[F.col(c) for c in ["views", "addtocarts", "transactions", "recency_days",
                                                  "sessions"]]) < 0,
        "negative_rates": F.least("view_to_cart_rate", "view_to_purchase_rate", "cart_to_purchase_rate") < 0,
        "profile_not_summing_to_1": profile_off("hour_profile") | profile_off("weekday_profile"),
    })
    return {**counts, "silver_visitors": events.select("visitor_id").distinct().count(),
            "duplicates": duplicate_keys(written, ["visitor_id"])}


def judge_user_features(m: Mapping[str, int]) -> list[Verdict]:
    bad = {name: m[name] for name in USER_VALUE_PROBLEMS}
    return [
        Verdict("one_row_per_visitor",
                m["rows"] == m["silver_visitors"] and m["duplicates"] == 0 and m["null_keys"] == 0,
                {"rows": m["rows"], "silver_visitors": m["silver_visitors"], "duplicates": m["duplicates"],
                 "null_keys": m["null_keys"]}),
        Verdict("values_in_range", not any(bad.values()), bad),
    ]


# gold.item_features -----------------------------------------------------------------------------------------

ITEM_VALUE_PROBLEMS = ("negative", "negative_rates", "bad_price_band")


def measure_item_features(written: DataFrame, interactions: DataFrame) -> dict[str, int]:
    counts = count_where(written, {
        "null_keys": null_keys(["item_id"]),
        "negative": F.least("views", "addtocarts", "transactions", "weight", "views_7d") < 0,
        "negative_rates": F.least("conversion_rate", "cart_rate") < 0,
        "bad_price_band": ~F.col("price_band").between(1, PRICE_BANDS),
    })
    totals = _first(written.agg(F.sum("views"), F.count(F.when(F.col("unique_visitors") > 0, 1))))
    expected = _first(interactions.agg(F.sum("views"), F.countDistinct("item_id")))
    return {**counts, "duplicates": duplicate_keys(written, ["item_id"]),
            "views": int(totals[0] or 0), "interacted_items": int(totals[1]),
            "interaction_views": int(expected[0] or 0), "items_in_interactions": int(expected[1])}


def judge_item_features(m: Mapping[str, int]) -> list[Verdict]:
    reconciles = ("duplicates", "null_keys", "views", "interaction_views", "interacted_items", "items_in_interactions")
    bad = {name: m[name] for name in ITEM_VALUE_PROBLEMS}
    return [
        Verdict("reconciles_with_interactions",
                m["duplicates"] == 0 and m["null_keys"] == 0 and m["views"] == m["interaction_views"]
                and m["interacted_items"] == m["items_in_interactions"], {name: m[name] for name in reconciles}),
        Verdict("values_in_range", not any(bad.values()), bad),
    ]


# gold.training_splits ---------------------------------------------------------------------------------------

def measure_training_splits(written: DataFrame, events: DataFrame) -> dict[str, Any]:
    """Null keys, duplicates, rows outside their split's dates, each split's events and dates (as the rows
    carry them), and silver's interaction events."""
    counts = count_where(written, {
        "null_keys": null_keys(["visitor_id", "item_id", "split"]),
        "outside_split": (F.col("first_ts") < F.col("split_start")) | (F.col("last_ts") >= F.col("split_end")),
    })
    per_split = written.groupBy("split").agg(
        F.sum("events").alias("events"), F.min("split_start").alias("start"), F.max("split_end").alias("end"),
        F.countDistinct("split_start", "split_end").alias("ranges")).collect()
    return {**counts, "duplicates": duplicate_keys(written, ["visitor_id", "item_id", "split"]),
            "silver_interaction_events": weighted_events(events).count(),
            "splits": {row["split"]: {"events": int(row["events"]), "start": row["start"], "end": row["end"],
                                      "ranges": int(row["ranges"])} for row in per_split}}


def judge_training_splits(m: Mapping[str, Any], fractions: Sequence[float]) -> list[Verdict]:
    splits = m["splits"]
    total = sum(part["events"] for part in splits.values())
    shares = {name: splits[name]["events"] / total if total and name in splits else 0.0 for name in SPLITS}
    shares_ok = all(abs(shares[name] - fraction) <= SPLIT_SHARE_TOLERANCE
                    for name, fraction in zip(SPLITS, fractions, strict=True))
    # One date range per split, each starting where the one before ends (train < validation < test).
    present = all(name in splits and splits[name]["ranges"] == 1 for name in SPLITS)
    ordered = present and all(splits[before]["end"] <= splits[after]["start"]
                              for before, after in zip(SPLITS, SPLITS[1:], strict=False)) \
        and splits["test"]["start"] < splits["test"]["end"]
    boundaries = {f"{name}_{edge}": str(splits[name][edge]) for name in SPLITS if name in splits
                  for edge in ("start", "end")}
    return [
        Verdict("unique_keys", m["duplicates"] == 0 and m["null_keys"] == 0,
                {"duplicates": m["duplicates"], "null_keys": m["null_keys"]}),
        Verdict("no_time_leakage", ordered and m["outside_split"] == 0,
                {"rows_outside_their_split": m["outside_split"], "boundaries": boundaries}),
        Verdict("reconciles_with_silver", total == m["silver_interaction_events"] and shares_ok,
                {"events": total, "silver_interaction_events": m["silver_interaction_events"],
                 "shares": {name: round(share, 4) for name, share in shares.items()}}),
    ]

