"""The asset checks' verdicts: pure functions of what the checks measured (no Spark, no Dagster)."""

from datetime import datetime

import pandas as pd

from clickrec_platform.features.quality import (
    judge_interactions,
    judge_item_features,
    judge_training_splits,
    judge_user_features,
)
from clickrec_platform.reference.quality import judge_categories, judge_items


def _passed(verdicts) -> dict[str, bool]:
    return {v.name: v.passed for v in verdicts}


def test_interactions_reconcile_only_when_the_counted_events_equal_silvers():
    clean = {"rows": 10, "null_keys": 0, "weight_below_1": 0, "duplicates": 0,
             "interaction_events": 40, "silver_interaction_events": 40}
    assert all(_passed(judge_interactions(clean)).values())
    broken = {**clean, "silver_interaction_events": 41, "null_keys": 1}
    assert _passed(judge_interactions(broken)) == {"reconciles_with_silver": False, "unique_keys": False,
                                                   "weights_in_range": True}


def test_user_features_need_one_row_per_silver_visitor_and_values_in_range():
    clean = {"rows": 5, "silver_visitors": 5, "duplicates": 0, "null_keys": 0, "negative": 0,
             "negative_rates": 0, "profile_not_summing_to_1": 0}
    assert all(_passed(judge_user_features(clean)).values())
    (_, values) = judge_user_features({**clean, "rows": 4, "profile_not_summing_to_1": 2})
    assert not judge_user_features({**clean, "rows": 4})[0].passed
    assert not values.passed and values.measured["profile_not_summing_to_1"] == 2


def test_item_features_reconcile_with_the_interactions_totals():
    clean = {"duplicates": 0, "null_keys": 0, "views": 90, "interaction_views": 90, "interacted_items": 7,
             "items_in_interactions": 7, "negative": 0, "negative_rates": 0, "bad_price_band": 0}
    assert all(_passed(judge_item_features(clean)).values())
    assert _passed(judge_item_features({**clean, "interacted_items": 6}))["reconciles_with_interactions"] is False
    assert _passed(judge_item_features({**clean, "bad_price_band": 1}))["values_in_range"] is False


def _splits(train_end: datetime, events: tuple[int, int, int] = (70, 15, 15)) -> dict:
    days = [datetime(2026, 1, d) for d in (1, 8, 10, 12)]
    edges = {"train": (days[0], train_end), "validation": (days[1], days[2]), "test": (days[2], days[3])}
    return {"splits": {name: {"events": n, "start": edges[name][0], "end": edges[name][1], "ranges": 1}
                       for name, n in zip(edges, events, strict=True)},
            "null_keys": 0, "duplicates": 0, "outside_split": 0, "silver_interaction_events": sum(events)}


def test_training_splits_follow_each_other_in_time_and_keep_their_shares():
    fractions = (0.7, 0.15, 0.15)
    assert all(_passed(judge_training_splits(_splits(datetime(2026, 1, 8)), fractions)).values())
    overlapping = _passed(judge_training_splits(_splits(datetime(2026, 1, 9)), fractions))
    assert overlapping["no_time_leakage"] is False  # train ends after validation starts
    skewed = _passed(judge_training_splits(_splits(datetime(2026, 1, 8), (60, 25, 15)), fractions))
    assert skewed == {"unique_keys": True, "no_time_leakage": True, "reconciles_with_silver": False}
    missing = _splits(datetime(2026, 1, 8))
    del missing["splits"]["test"]
    assert _passed(judge_training_splits(missing, fractions))["no_time_leakage"] is False


def test_categories_and_items_verdicts_name_what_is_wrong():
    tree = pd.DataFrame({"category_id": [1, 2, 3, 3], "problem": pd.Series([None, "cycle", None, None],
                                                                          dtype="string")})
    unique, sound = judge_categories(tree)
    assert not unique.passed and unique.measured["duplicates"] == 1
    assert not sound.passed and sound.measured["by_problem"] == {"cycle": 1} and sound.measured["examples"] == [2]
    t = pd.Timestamp
    versions = pd.DataFrame({"item_id": [1, 1, 2], "valid_from": [t("2026-01-01"), t("2026-01-05"), t("2026-01-01")],
                             "valid_to": [t("2026-01-05"), None, t("2025-12-01")],
                             "is_current": [False, True, False], "price": [1.0, -2.0, 3.0],
                             "available": [1, 1, 2]})
    verdicts = {v.name: v for v in judge_items(versions)}
    assert verdicts["unique_item_version"].passed
    assert verdicts["periods_are_ordered"].measured == {"misordered_periods": 1, "items_without_one_current_version": 1}
    assert verdicts["values_in_range"].measured == {"negative_prices": 1, "bad_available": 1}
