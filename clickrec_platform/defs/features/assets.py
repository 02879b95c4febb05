"""Feature tables over silver.events, computed by Spark and written to Delta gold tables.

`interactions` is partitioned by event date: a run writes exactly its dates (one date, or a range
in one run when backfilling). The others are whole-table snapshots as of the latest event.
"""


import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickrec_platform.defs import checks
from clickrec_platform.defs.ingest.sources import SILVER_EVENTS_KEY
from clickrec_platform.defs.partitions import EVENT_DATES
from clickrec_platform.defs.reference.assets import CATEGORIES_KEY, ITEMS_KEY
from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.features.interactions import COUNT_COLUMNS, interactions, weighted_events
from clickrec_platform.features.items import PRICE_BANDS, item_features
from clickrec_platform.features.splits import SPLITS, split_boundaries, training_splits
from clickrec_platform.features.users import user_features
from clickrec_platform.lake.quality import count_where, duplicate_keys, null_keys
from clickrec_platform.lake.tables import (
    GOLD_INTERACTIONS,
    GOLD_ITEM_FEATURES,
    GOLD_TRAINING_SPLITS,
    GOLD_USER_FEATURES,
    SILVER_CATEGORIES,
    SILVER_EVENTS,
    SILVER_ITEMS,
)
from clickrec_platform.lake.writes import in_date_range, overwrite, replace_date_range

INTERACTIONS_KEY = ["delta", "gold", "interactions"]
USER_FEATURES_KEY = ["delta", "gold", "user_features"]
ITEM_FEATURES_KEY = ["delta", "gold", "item_features"]
TRAINING_SPLITS_KEY = ["delta", "gold", "training_splits"]
SPLIT_SHARE_TOLERANCE = 0.02  # how far a split's share of events may be from its fraction


def _preview(frame: DataFrame, rows: int = 10) -> dg.MetadataValue:
    # pyspark types toPandas() as a protocol of a few methods; it returns a pandas DataFrame
    return dg.MetadataValue.md(frame.limit(rows).toPandas().to_markdown(index=False))  # type: ignore[attr-defined]


@dg.asset(
    key=INTERACTIONS_KEY, deps=[SILVER_EVENTS_KEY], partitions_def=EVENT_DATES,
    backfill_policy=dg.BackfillPolicy.single_run(), group_name="features", kinds={"delta", "spark"},
    description="Visitor × item × event date: views, addtocarts, likes, transactions and the weight "
                "(view 1, addtocart 3, like 4, transaction 5). A run replaces exactly its dates.",
    check_specs=[
        checks.spec(INTERACTIONS_KEY, "reconciles_with_silver",
                    "The counted events equal silver's interaction events of the same dates.", blocking=True),
        checks.spec(INTERACTIONS_KEY, "unique_keys", "One row per (event_date, visitor_id, item_id); no null keys.",
                    blocking=True),
        checks.spec(INTERACTIONS_KEY, "weights_in_range", "weight ≥ 1 on every row.", blocking=True),
    ],
)
def interactions_by_day(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    events = in_date_range(lake.read(session, SILVER_EVENTS), "event_date", start, end)
    path = GOLD_INTERACTIONS.path(settings)
    version = replace_date_range(interactions(events), path, "event_date", start, end)

    written = in_date_range(session.read.format("delta").load(path), "event_date", start, end)
    counts = count_where(written, {"null_keys": null_keys(["event_date", "visitor_id", "item_id"]),
                                   "weight_below_1": F.col("weight") < 1})
    counted = written.agg(sum((F.sum(c) for c in COUNT_COLUMNS.values()), F.lit(0))).first()
    assert counted is not None  # an aggregate without grouping has one row
    counted_events = counted[0] or 0
    silver_events = weighted_events(events).count()
    duplicates = duplicate_keys(written, ["event_date", "visitor_id", "item_id"])
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(counts["rows"]), "delta_version": version,
        "dates": f"{start} … {end} (exclusive)", "interaction_events": dg.MetadataValue.int(counted_events),
        "preview": _preview(written)})
    yield checks.result("reconciles_with_silver", counted_events == silver_events,
                        interaction_events=counted_events, silver_interaction_events=silver_events)
    yield checks.result("unique_keys", duplicates == 0 and counts["null_keys"] == 0,
                        duplicate_rows=duplicates, null_key_rows=counts["null_keys"])
    yield checks.result("weights_in_range", counts["weight_below_1"] == 0, rows_below_1=counts["weight_below_1"])


@dg.asset(
    key=USER_FEATURES_KEY, deps=[SILVER_EVENTS_KEY, ITEMS_KEY], group_name="features", kinds={"delta", "spark"},
    description="One row per visitor: counts per event type, recency, frequency, sessions, conversion "
                "rates, hour-of-day and weekday profiles, top categories (point in time).",
    check_specs=[
        checks.spec(USER_FEATURES_KEY, "one_row_per_visitor",
                    "Rows = distinct visitors in silver; unique, non-null visitor_id.", blocking=True),
        checks.spec(USER_FEATURES_KEY, "values_in_range",
                    "Counts and rates ≥ 0, recency ≥ 0, each profile sums to 1."),
    ],
)
def user_features_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    events = lake.read(session, SILVER_EVENTS)
    latest = events.agg(F.max("event_time")).first()
    assert latest is not None  # an aggregate without grouping has one row
    as_of = latest[0]
    path = GOLD_USER_FEATURES.path(settings)
    version = overwrite(user_features(events, lake.read(session, SILVER_ITEMS), F.lit(as_of)), path,
                        description=f"as of {as_of}")

    written = session.read.format("delta").load(path)
    profile_off = lambda name: F.abs(F.aggregate(name, F.lit(0.0), lambda acc, x: acc + x) - 1) > 1e-6  # noqa: E731
    counts = count_where(written, {
        "null_keys": null_keys(["visitor_id"]),
        "negative": F.least(*[F.col(c) for c in ["views", "addtocarts", "transactions", "recency_days",
                                                  "sessions"]]) < 0,
        "negative_rates": F.least("view_to_cart_rate", "view_to_purchase_rate", "cart_to_purchase_rate") < 0,
        "profile_not_summing_to_1": profile_off("hour_profile") | profile_off("weekday_profile"),
    })
    visitors = events.select("visitor_id").distinct().count()
    duplicates = duplicate_keys(written, ["visitor_id"])
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(counts["rows"]), "delta_version": version, "as_of": str(as_of),
        "preview": _preview(written)})
    yield checks.result("one_row_per_visitor", counts["rows"] == visitors and duplicates == 0
                        and counts["null_keys"] == 0, rows=counts["rows"], silver_visitors=visitors,
                        duplicates=duplicates, null_keys=counts["null_keys"])
    bad = {name: counts[name] for name in ("negative", "negative_rates", "profile_not_summing_to_1")}
    yield checks.result("values_in_range", not any(bad.values()), bad)


@dg.asset(
    key=ITEM_FEATURES_KEY, deps=[INTERACTIONS_KEY, ITEMS_KEY, CATEGORIES_KEY], group_name="features",
    kinds={"delta", "spark"},
    description="One row per item: popularity by event type, over the last 1/7/30 days, conversion, "
                "current category, root category, price and price band (quintiles 1–5), availability.",
    check_specs=[
        checks.spec(ITEM_FEATURES_KEY, "reconciles_with_interactions",
                    "Unique, non-null item_id; every interacted item present; view totals equal.", blocking=True),
        checks.spec(ITEM_FEATURES_KEY, "values_in_range", "Counts ≥ 0, rates ≥ 0, price band in 1–5."),
    ],
)
def item_features_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    daily = lake.read(session, GOLD_INTERACTIONS)
    latest = daily.agg(F.max("event_date")).first()
    assert latest is not None  # an aggregate without grouping has one row
    as_of = latest[0]
    current = lake.read(session, SILVER_ITEMS).where(F.col("is_current"))
    path = GOLD_ITEM_FEATURES.path(settings)
    version = overwrite(item_features(daily, current, lake.read(session, SILVER_CATEGORIES), F.lit(as_of)), path,
                        description=f"as of {as_of}")

    written = session.read.format("delta").load(path)
    counts = count_where(written, {
        "null_keys": null_keys(["item_id"]),
        "negative": F.least("views", "addtocarts", "transactions", "weight", "views_7d") < 0,
        "negative_rates": F.least("conversion_rate", "cart_rate") < 0,
        "bad_price_band": ~F.col("price_band").between(1, PRICE_BANDS),
    })
    totals = written.agg(F.sum("views"), F.count(F.when(F.col("unique_visitors") > 0, 1))).first()
    expected = daily.agg(F.sum("views"), F.countDistinct("item_id")).first()
    assert totals is not None and expected is not None  # aggregates without grouping have one row
    duplicates = duplicate_keys(written, ["item_id"])
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(counts["rows"]), "delta_version": version, "as_of": str(as_of),
        "interacted_items": int(expected[1]), "preview": _preview(written.orderBy(F.desc("weight")))})
    yield checks.result("reconciles_with_interactions",
                        duplicates == 0 and counts["null_keys"] == 0 and tuple(totals) == tuple(expected),
                        duplicates=duplicates, null_keys=counts["null_keys"], views=int(totals[0] or 0),
                        interaction_views=int(expected[0] or 0), interacted_items=int(totals[1]),
                        items_in_interactions=int(expected[1]))
    bad = {name: counts[name] for name in ("negative", "negative_rates", "bad_price_band")}
    yield checks.result("values_in_range", not any(bad.values()), bad)


@dg.asset(
    key=TRAINING_SPLITS_KEY, deps=[SILVER_EVENTS_KEY, INTERACTIONS_KEY], group_name="features",
    kinds={"delta", "spark"},
    description="Visitor × item × split: a chronological train/validation/test split (70/15/15 of the "
                "interaction events by time, CLICKREC_SPLIT_FRACTIONS), with each split's dates on every row.",
    check_specs=[
        checks.spec(TRAINING_SPLITS_KEY, "unique_keys", "One row per (visitor_id, item_id, split); no null keys.",
                    blocking=True),
        checks.spec(TRAINING_SPLITS_KEY, "no_time_leakage",
                    "Every row lies inside its split's dates, and the splits follow each other in time.",
                    blocking=True),
        checks.spec(TRAINING_SPLITS_KEY, "reconciles_with_silver",
                    "Events across splits equal silver's interaction events; each split's share is "
                    "within 2 points of its fraction.", blocking=True),
    ],
)
def training_splits_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    events = lake.read(session, SILVER_EVENTS)
    bounds = split_boundaries(events, settings.split_fractions)
    path = GOLD_TRAINING_SPLITS.path(settings)
    version = overwrite(training_splits(events, bounds), path,
                        description=f"split {bounds.as_dict()}")

    written = session.read.format("delta").load(path)
    counts = count_where(written, {
        "null_keys": null_keys(["visitor_id", "item_id", "split"]),
        "outside_split": (F.col("first_ts") < F.col("split_start")) | (F.col("last_ts") >= F.col("split_end")),
    })
    per_split = {row["split"]: int(row["events"]) for row in
                 written.groupBy("split").agg(F.sum("events").alias("events")).collect()}
    total = sum(per_split.values())
    silver_total = weighted_events(events).count()
    shares = {name: per_split.get(name, 0) / total if total else 0.0 for name in SPLITS}
    shares_ok = all(abs(shares[name] - fraction) <= SPLIT_SHARE_TOLERANCE
                    for name, fraction in zip(SPLITS, settings.split_fractions, strict=True))
    ordered = bounds.train_start <= bounds.validation_start <= bounds.test_start < bounds.test_end
    duplicates = duplicate_keys(written, ["visitor_id", "item_id", "split"])
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(counts["rows"]), "delta_version": version,
        **{f"split_{name}": value for name, value in bounds.as_dict().items()},
        **{f"{name}_events": per_split.get(name, 0) for name in SPLITS},
        "preview": _preview(written)})
    yield checks.result("unique_keys", duplicates == 0 and counts["null_keys"] == 0,
                        duplicates=duplicates, null_keys=counts["null_keys"])
    yield checks.result("no_time_leakage", ordered and counts["outside_split"] == 0,
                        rows_outside_their_split=counts["outside_split"], boundaries=bounds.as_dict())
    yield checks.result("reconciles_with_silver", total == silver_total and shares_ok,
                        events=total, silver_interaction_events=silver_total,
                        shares={name: round(share, 4) for name, share in shares.items()})
