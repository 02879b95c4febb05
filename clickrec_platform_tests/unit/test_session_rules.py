"""Sequential rules and the popularity baseline, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec_platform.recommend.session.baselines import Popularity
from clickrec_platform.recommend.session.protocol import Sessions, next_item_cases
from clickrec_platform.recommend.session.rules import SequentialRules


def _rules(model: SequentialRules) -> dict[tuple[int, int], float]:
    matrix = model.rules().tocoo()
    return {(int(a), int(b)): float(w) for a, b, w in zip(matrix.row, matrix.col, matrix.data, strict=True)}


def test_rules_weigh_each_pair_by_its_distance() -> None:
    # [0, 1, 2]: 0->1 (1 step), 1->2 (1), 0->2 (2 steps: 1/2); [0, 2]: 0->2 (1); [3, 3]: 3->3 (1).
    train = Sessions.from_lists([[0, 1, 2], [0, 2], [3, 3]], n_items=4)
    model = SequentialRules(steps=2, weighting="div", pruning=0).fit(train)
    assert _rules(model) == pytest.approx({(0, 1): 1.0, (1, 2): 1.0, (0, 2): 1.5, (3, 3): 1.0})
    assert model.recommend([3, 0])[0].tolist() == [2, 1]  # only the last item's rules count
    assert model.recommend([0, 3])[0].tolist() == [3]


def test_steps_bound_the_distance() -> None:
    train = Sessions.from_lists([[0, 1, 2], [0, 2]], n_items=3)
    assert (0, 2) in _rules(SequentialRules(steps=2).fit(train))
    assert _rules(SequentialRules(steps=1, pruning=0).fit(train)) == {(0, 1): 1.0, (1, 2): 1.0, (0, 2): 1.0}


def test_pruning_keeps_the_strongest_and_on_ties_the_first_seen() -> None:
    train = Sessions.from_lists([[0, 1, 2], [0, 2]], n_items=3)
    assert _rules(SequentialRules(steps=2, pruning=1).fit(train)) == {(0, 2): 1.5, (1, 2): 1.0}
    # steps=1: 0->1 and 0->2 both weigh 1; 0->1 was met first in training.
    assert _rules(SequentialRules(steps=1, pruning=1).fit(train)) == {(0, 1): 1.0, (1, 2): 1.0}
    # A fraction prunes that share of each item's rules: 2 - int(2 * 0.5) = 1 kept for item 0.
    assert _rules(SequentialRules(steps=2, pruning=0.5).fit(train)) == {(0, 2): 1.5, (1, 2): 1.0}


def test_linear_weighting() -> None:
    train = Sessions.from_lists([[0, 1, 2]], n_items=3)
    rules = _rules(SequentialRules(steps=2, weighting="linear", pruning=0).fit(train))
    assert rules == pytest.approx({(0, 1): 0.9, (1, 2): 0.9, (0, 2): 0.8})


def test_sr_recommend_many_matches_recommend() -> None:
    rng = np.random.default_rng(0)
    train = Sessions.from_lists([rng.integers(0, 30, size=rng.integers(2, 9)).tolist() for _ in range(200)], n_items=30)
    model = SequentialRules().fit(train)
    cases = next_item_cases(Sessions.from_lists([rng.integers(0, 30, size=5).tolist() for _ in range(10)], n_items=30))
    items, scores = model.recommend_many(cases, k=5)
    for case in range(len(cases)):
        one_items, one_scores = model.recommend(cases.prefix(case)[0], k=5)
        assert items[case, : len(one_items)].tolist() == one_items.tolist()
        np.testing.assert_allclose(scores[case, : len(one_items)], one_scores)


def test_popularity_counts_events() -> None:
    train = Sessions.from_lists([[2, 2, 1], [1, 2], [0, 2]], n_items=4)
    model = Popularity().fit(train)
    assert model.recommend([3], k=3)[0].tolist() == [2, 1, 0]
    items, _ = model.recommend_many(next_item_cases(Sessions.from_lists([[0, 1, 3]], n_items=4)), k=4)
    assert items.tolist() == [[2, 1, 0, -1]] * 2  # item 3 was never seen: not recommended


def test_recent_item_knn_adapter_ranks_by_item_similarity_and_skips_the_prefix() -> None:
    from clickrec_platform.recommend.session.baselines import RecentItemKNN

    # Visitors 0..2 (from_lists: one visitor per session): 0 and 1 co-occur twice, 0 and 2 once.
    train = Sessions.from_lists([[0, 1], [0, 1, 2], [2, 3]], n_items=4)
    model = RecentItemKNN().fit(train)
    items, _ = model.recommend([0], k=2)
    assert items.tolist()[0] == 1 and 0 not in items.tolist()
