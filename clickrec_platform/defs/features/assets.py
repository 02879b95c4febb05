"""Feature tables over silver.events, computed by Spark and written to Delta gold tables (their checks:
``checks.py`` beside this module).

`interactions` is partitioned by event date: a run writes exactly its dates (one date, or a range
in one run when backfilling). The others are whole-table snapshots as of the latest event.
"""


import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickrec_platform.defs.ingest.sources import SILVER_EVENTS_KEY
from clickrec_platform.defs.partitions import EVENT_DATES
from clickrec_platform.defs.reference.assets import CATEGORIES_KEY, ITEMS_KEY
from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.features.interactions import interactions
from clickrec_platform.features.items import item_features
from clickrec_platform.features.splits import SPLITS, split_boundaries, training_splits
from clickrec_platform.features.users import user_features
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


def _preview(frame: DataFrame, rows: int = 10) -> dg.MetadataValue:
    # pyspark types toPandas() as a protocol of a few methods; it returns a pandas DataFrame
    return dg.MetadataValue.md(frame.limit(rows).toPandas().to_markdown(index=False))  # type: ignore[attr-defined]


@dg.asset(
    key=INTERACTIONS_KEY, deps=[SILVER_EVENTS_KEY], partitions_def=EVENT_DATES,
    backfill_policy=dg.BackfillPolicy.single_run(), group_name="features", kinds={"delta", "spark"},
    description="Visitor × item × event date: views, addtocarts, likes, transactions and the weight "
                "(view 1, addtocart 3, like 4, transaction 5). A run replaces exactly its dates.",
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
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(written.count()), "delta_version": version,
        "dates": f"{start} … {end} (exclusive)", "preview": _preview(written)})


@dg.asset(
    key=USER_FEATURES_KEY, deps=[SILVER_EVENTS_KEY, ITEMS_KEY], group_name="features", kinds={"delta", "spark"},
    description="One row per visitor: counts per event type, recency, frequency, sessions, conversion "
                "rates, hour-of-day and weekday profiles, top categories (point in time).",
)
def user_features_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    events = lake.read(session, SILVER_EVENTS)
    as_of = _latest(events, "event_time")
    path = GOLD_USER_FEATURES.path(settings)
    version = overwrite(user_features(events, lake.read(session, SILVER_ITEMS), F.lit(as_of)), path,
                        description=f"as of {as_of}")
    written = session.read.format("delta").load(path)
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(written.count()), "delta_version": version, "as_of": str(as_of),
        "preview": _preview(written)})


@dg.asset(
    key=ITEM_FEATURES_KEY, deps=[INTERACTIONS_KEY, ITEMS_KEY, CATEGORIES_KEY], group_name="features",
    kinds={"delta", "spark"},
    description="One row per item: popularity by event type, over the last 1/7/30 days, conversion, "
                "current category, root category, price and price band (quintiles 1–5), availability.",
)
def item_features_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    daily = lake.read(session, GOLD_INTERACTIONS)
    as_of = _latest(daily, "event_date")
    current = lake.read(session, SILVER_ITEMS).where(F.col("is_current"))
    path = GOLD_ITEM_FEATURES.path(settings)
    version = overwrite(item_features(daily, current, lake.read(session, SILVER_CATEGORIES), F.lit(as_of)), path,
                        description=f"as of {as_of}")
    written = session.read.format("delta").load(path)
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(written.count()), "delta_version": version, "as_of": str(as_of),
        "preview": _preview(written.orderBy(F.desc("weight")))})


@dg.asset(
    key=TRAINING_SPLITS_KEY, deps=[SILVER_EVENTS_KEY, INTERACTIONS_KEY], group_name="features",
    kinds={"delta", "spark"},
    description="Visitor × item × split: a chronological train/validation/test split (70/15/15 of the "
                "interaction events by time, CLICKREC_SPLIT_FRACTIONS), with each split's dates on every row.",
)
def training_splits_asset(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    session = spark.get_session()
    events = lake.read(session, SILVER_EVENTS)
    bounds = split_boundaries(events, settings.split_fractions)
    path = GOLD_TRAINING_SPLITS.path(settings)
    version = overwrite(training_splits(events, bounds), path, description=f"split {bounds.as_dict()}")
    written = session.read.format("delta").load(path)
    per_split = {row["split"]: int(row["events"]) for row in
                 written.groupBy("split").agg(F.sum("events").alias("events")).collect()}
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(written.count()), "delta_version": version,
        **{f"split_{name}": value for name, value in bounds.as_dict().items()},
        **{f"{name}_events": per_split.get(name, 0) for name in SPLITS},
        "preview": _preview(written)})


def _latest(frame: DataFrame, column: str):
    latest = frame.agg(F.max(column)).first()
    assert latest is not None  # an aggregate without grouping has one row
    return latest[0]
