"""The evaluator on a world small enough to score by hand, and grid search / final test runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.data import InteractionData, splits_from_events
from clickrec_platform.recommend.evaluate import evaluate, evaluate_on_test, grid_search
from clickrec_platform.recommend.models import ALS, MostPopular
from clickrec_platform.sources.generator import GeneratorConfig, generate_events


def splits_frame(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """(split, visitor, item, day) rows in the `gold.training_splits` shape."""
    bounds = {"train": (0, 10), "validation": (10, 12), "test": (12, 14)}
    stamp = pd.Timestamp("2015-05-04", tz="UTC")
    days = pd.to_timedelta([r[3] for r in rows], unit="D")
    return pd.DataFrame(
        {
            "visitor_id": np.array([r[1] for r in rows], dtype=np.int64),
            "item_id": np.array([r[2] for r in rows], dtype=np.int64),
            "split": [r[0] for r in rows],
            "weight": 1.0,
            "events": 1,
            "transactions": 0,
            "first_ts": stamp + days,
            "last_ts": stamp + days,
            "split_start": [stamp + pd.Timedelta(days=bounds[r[0]][0]) for r in rows],
            "split_end": [stamp + pd.Timedelta(days=bounds[r[0]][1]) for r in rows],
        }
    )


# All-time popularity in train: item 11 (2 visitors), then 10 and 12 (1 each, 10 first by id).
# Validation, new items only: visitor 1 -> {12}; 2 -> {99} (unknown to training); 3 (cold) -> {11}.
SPLITS = splits_frame(
    [
        ("train", 1, 10, 1),
        ("train", 1, 11, 9),
        ("train", 2, 11, 2),
        ("train", 2, 12, 8),
        ("validation", 1, 12, 10.5),
        ("validation", 1, 10, 10.5),
        ("validation", 2, 99, 11),
        ("validation", 3, 11, 11),
        ("test", 1, 13, 13),
        ("test", 2, 10, 13),
    ]
)


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return InteractionData.from_splits(SPLITS)


def test_hand_scored_popularity(data):
    # Lists at k=2: visitor 1 [12, -] (10, 11 seen), visitor 2 [10, -], visitor 3 (cold) [11, 10].
    result = evaluate(MostPopular(window_days=None).fit(data), data, ks=(1, 2), n_boot=50)

    assert result.groups["all"].users == 3
    assert result.groups["warm"].users == 2 and result.groups["cold_start"].users == 1
    assert result.value("recall@2") == pytest.approx(2 / 3)
    assert result.value("recall@2", "warm") == pytest.approx(1 / 2)
    assert result.value("recall@2", "cold_start") == 1.0
    assert result.value("precision@2") == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert result.value("ndcg@1") == pytest.approx(2 / 3)
    assert result.coverage == {"coverage@1": pytest.approx(3 / 3), "coverage@2": pytest.approx(3 / 3)}
    assert result.unreachable_share == pytest.approx(1 / 3)
    assert result.dropped_users == 0
    assert (result.split, result.ks, result.model) == ("validation", (1, 2), "most_popular")


def test_all_held_out_items_when_asked(data):
    result = evaluate(MostPopular(window_days=None).fit(data), data, ks=(2,), new_items_only=False, n_boot=50)

    # Visitor 1 now also has item 10, which it had seen and so could not be recommended.
    assert result.ci("recall@2", "warm").mean == pytest.approx((1 / 2 + 0) / 2)


def test_cold_start_visitors_can_be_left_out(data):
    result = evaluate(MostPopular(window_days=None).fit(data), data, ks=(2,), cold_start=False, n_boot=50)

    assert set(result.groups) == {"all", "warm"}
    assert result.groups["all"].users == 2


def test_flat_names_suit_a_tracker(data):
    flat = evaluate(MostPopular().fit(data), data, ks=(2,), n_boot=50).flat("val")

    assert flat["val_users"] == 3.0
    assert flat["val_recall_at_2"] >= flat["val_recall_at_2_ci_low"]
    assert {"val_warm_ndcg_at_2_ci_high", "val_cold_start_users", "val_coverage_at_2", "val_map_at_2"} <= set(
        flat
    )
    assert all(key.replace("_", "").isalnum() for key in flat)


def test_unfitted_or_foreign_models_are_refused(data):
    with pytest.raises(ValueError, match="fitted"):
        evaluate(MostPopular(), data)
    other = InteractionData.from_splits(SPLITS, train_splits=("train", "validation"))
    with pytest.raises(ValueError, match="fitted"):
        evaluate(MostPopular().fit(other), data)


def test_final_test_trains_on_train_and_validation():
    final = evaluate_on_test(lambda: MostPopular(window_days=None), SPLITS, ks=(2,), n_boot=50)

    assert final.data.train_splits == ("train", "validation")
    assert final.evaluation.split == "test"
    # Visitor 2's new item 10 is found; visitor 1's item 13 was never seen before the test.
    assert final.evaluation.value("recall@2") == pytest.approx(1 / 2)
    assert final.evaluation.unreachable_share == pytest.approx(1 / 2)


@pytest.fixture(scope="module")
def generated() -> InteractionData:
    return InteractionData.from_splits(
        splits_from_events(generate_events(GeneratorConfig(seed=5, events=30_000)))
    )


def test_grid_search_tries_every_point_and_keeps_the_best(generated):
    result = grid_search(ALS, {"factors": [4, 32], "iterations": [1, 5]}, generated, metric="ndcg@20")

    assert [trial.params for trial in result.trials] == [
        {"factors": 4, "iterations": 1},
        {"factors": 4, "iterations": 5},
        {"factors": 32, "iterations": 1},
        {"factors": 32, "iterations": 5},
    ]
    assert result.best_score == max(trial.score for trial in result.trials)
    assert result.best_params == next(t.params for t in result.trials if t.score == result.best_score)
    assert result.table()["ndcg@20"].is_monotonic_decreasing
    assert all(trial.evaluation.split == "validation" for trial in result.trials)


def test_grid_search_needs_a_grid(generated):
    with pytest.raises(ValueError, match="grid"):
        grid_search(ALS, {}, generated)
