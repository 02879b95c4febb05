"""The feature tables' asset checks: each reads its table from the lake, measures and judges it
(``features/quality.py``). Blocking ones stop what depends on the table."""

from datetime import date

import dagster as dg

from clickrec_platform.defs import checks
from clickrec_platform.defs.features.assets import (
    INTERACTIONS_KEY,
    ITEM_FEATURES_KEY,
    TRAINING_SPLITS_KEY,
    USER_FEATURES_KEY,
)
from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.features.quality import (
    judge_interactions,
    judge_item_features,
    judge_training_splits,
    judge_user_features,
    measure_interactions,
    measure_item_features,
    measure_training_splits,
    measure_user_features,
)
from clickrec_platform.lake.tables import (
    GOLD_INTERACTIONS,
    GOLD_ITEM_FEATURES,
    GOLD_TRAINING_SPLITS,
    GOLD_USER_FEATURES,
    SILVER_EVENTS,
)
from clickrec_platform.lake.writes import in_date_range


def _run_dates(context: dg.AssetCheckExecutionContext) -> tuple[date, date] | None:
    """The event dates of the run (the partition or range it materialises), None in a run without."""
    run = context.op_execution_context
    if not (run.has_partition_key or run.has_partition_key_range):
        return None
    window = run.partition_time_window
    return window.start.date(), window.end.date()


@dg.multi_asset_check(
    specs=[
        checks.spec(INTERACTIONS_KEY, "reconciles_with_silver",
                    "The counted events equal silver's interaction events of the same dates.", blocking=True),
        checks.spec(INTERACTIONS_KEY, "unique_keys", "One row per (event_date, visitor_id, item_id); no null keys.",
                    blocking=True),
        checks.spec(INTERACTIONS_KEY, "weights_in_range", "weight ≥ 1 on every row.", blocking=True),
    ],
    can_subset=True, name="interactions_checks",
    description="Over the run's event dates (every date when run alone).",
)
def interactions_checks(context: dg.AssetCheckExecutionContext, spark: SparkResource, lake: LakeResource):
    session = spark.get_session()
    written, events = lake.read(session, GOLD_INTERACTIONS), lake.read(session, SILVER_EVENTS)
    dates = _run_dates(context)
    if dates is not None:
        written = in_date_range(written, "event_date", *dates)
        events = in_date_range(events, "event_date", *dates)
    measured = measure_interactions(written, events)
    where = "all dates" if dates is None else f"{dates[0]} … {dates[1]} (exclusive)"
    yield from checks.selected(context, INTERACTIONS_KEY, judge_interactions(measured), dates=where)


@dg.multi_asset_check(
    specs=[
        checks.spec(USER_FEATURES_KEY, "one_row_per_visitor",
                    "Rows = distinct visitors in silver; unique, non-null visitor_id.", blocking=True),
        checks.spec(USER_FEATURES_KEY, "values_in_range",
                    "Counts and rates ≥ 0, recency ≥ 0, each profile sums to 1."),
    ],
    can_subset=True, name="user_features_checks",
)
def user_features_checks(context: dg.AssetCheckExecutionContext, spark: SparkResource, lake: LakeResource):
    session = spark.get_session()
    measured = measure_user_features(lake.read(session, GOLD_USER_FEATURES), lake.read(session, SILVER_EVENTS))
    yield from checks.selected(context, USER_FEATURES_KEY, judge_user_features(measured))


@dg.multi_asset_check(
    specs=[
        checks.spec(ITEM_FEATURES_KEY, "reconciles_with_interactions",
                    "Unique, non-null item_id; every interacted item present; view totals equal.", blocking=True),
        checks.spec(ITEM_FEATURES_KEY, "values_in_range", "Counts ≥ 0, rates ≥ 0, price band in 1–5."),
    ],
    can_subset=True, name="item_features_checks",
)
def item_features_checks(context: dg.AssetCheckExecutionContext, spark: SparkResource, lake: LakeResource):
    session = spark.get_session()
    measured = measure_item_features(lake.read(session, GOLD_ITEM_FEATURES), lake.read(session, GOLD_INTERACTIONS))
    yield from checks.selected(context, ITEM_FEATURES_KEY, judge_item_features(measured))


@dg.multi_asset_check(
    specs=[
        checks.spec(TRAINING_SPLITS_KEY, "unique_keys", "One row per (visitor_id, item_id, split); no null keys.",
                    blocking=True),
        checks.spec(TRAINING_SPLITS_KEY, "no_time_leakage",
                    "Every row lies inside its split's dates, and the splits follow each other in time.",
                    blocking=True),
        checks.spec(TRAINING_SPLITS_KEY, "reconciles_with_silver",
                    "Events across splits equal silver's interaction events; each split's share is "
                    "within 2 points of its fraction.", blocking=True),
    ],
    can_subset=True, name="training_splits_checks",
)
def training_splits_checks(context: dg.AssetCheckExecutionContext, spark: SparkResource, lake: LakeResource):
    session = spark.get_session()
    measured = measure_training_splits(lake.read(session, GOLD_TRAINING_SPLITS), lake.read(session, SILVER_EVENTS))
    verdicts = judge_training_splits(measured, lake.settings().split_fractions)
    yield from checks.selected(context, TRAINING_SPLITS_KEY, verdicts)
