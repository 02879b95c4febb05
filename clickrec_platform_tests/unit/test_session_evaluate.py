"""Next-item metrics, the session bootstrap and the paired difference."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest

from clickrec_platform.recommend.session.baselines import Popularity
from clickrec_platform.recommend.session.evaluate import (
    NextItemEvaluation,
    evaluate_next_item,
    paired_difference,
    target_ranks,
)
from clickrec_platform.recommend.session.knn import SKNN
from clickrec_platform.recommend.session.protocol import SessionData, SessionProtocol, Sessions
from clickrec_platform.recommend.session.rules import SequentialRules
from clickrec_platform.recommend.session.search import grid_search


def _evaluation(ranks: list[int], sessions: list[int], list_length: int = 20) -> NextItemEvaluation:
    return NextItemEvaluation(
        model="m", ranks=np.array(ranks), case_session=np.array(sessions), n_sessions=max(sessions) + 1,
        list_length=list_length, predict_seconds=0.0,
    )


def test_target_ranks() -> None:
    recommended = np.array([[4, 5, 6], [7, 8, -1], [1, 2, 3]])
    assert target_ranks(recommended, np.array([6, 7, 9])).tolist() == [3, 1, 0]


def test_metrics_by_hand() -> None:
    evaluation = _evaluation([1, 3, 0, 12], [0, 0, 1, 1])
    assert evaluation.value("hitrate@20") == pytest.approx(3 / 4)
    assert evaluation.value("mrr@20") == pytest.approx((1 + 1 / 3 + 1 / 12) / 4)
    assert evaluation.value("ndcg@20") == pytest.approx((1 + 1 / 2 + 1 / log2(13)) / 4)
    assert evaluation.value("hitrate@10") == pytest.approx(2 / 4)
    assert evaluation.value("mrr@2") == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        evaluation.value("hitrate@21")
    with pytest.raises(ValueError):
        evaluation.value("recall@20")


def test_interval_resamples_sessions_not_cases() -> None:
    # Every session has the same hit rate (1/2), however many cases: no resample can move it.
    even = _evaluation([1, 0, 1, 0, 0, 1] + [1, 0], [0, 0, 1, 1, 1, 1, 2, 2])
    interval = even.ci("hitrate@20", n_boot=200)
    assert interval.mean == interval.low == interval.high == pytest.approx(0.5)
    # Sessions that differ give a real interval around the mean, wider at higher confidence.
    mixed = _evaluation([1, 1, 0, 0, 1, 0, 1, 1, 0], [0, 0, 1, 1, 2, 3, 4, 5, 6])
    narrow, wide = mixed.ci("hitrate@20", 0.5, seed=3), mixed.ci("hitrate@20", 0.99, seed=3)
    assert wide.low <= narrow.low <= narrow.mean <= narrow.high <= wide.high
    assert wide.low < wide.high
    assert mixed.ci("hitrate@20", seed=3) == mixed.ci("hitrate@20", seed=3)  # seeded


def test_paired_difference() -> None:
    base = _evaluation([1, 0, 0, 2, 0, 0], [0, 0, 1, 1, 2, 3])
    same = paired_difference(base, base, "hitrate@20")
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = _evaluation([1, 1, 3, 2, 4, 0], [0, 0, 1, 1, 2, 3])  # never worse, better somewhere
    diff = paired_difference(better, base, "hitrate@20", n_boot=500)
    assert diff.mean == pytest.approx(3 / 6) and diff.low > 0
    # Better in one session, worse in another: the interval straddles 0.
    mixed = _evaluation([1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 2, 3])
    straddling = paired_difference(mixed, base, "hitrate@20", n_boot=500)
    assert straddling.low < 0 < straddling.high
    with pytest.raises(ValueError):
        paired_difference(base, _evaluation([1, 0, 0], [0, 1, 2]), "hitrate@20")


def test_evaluate_next_item_end_to_end() -> None:
    train = Sessions.from_lists([[0, 1, 2], [1, 2, 3], [3, 4]], n_items=5)
    test = Sessions.from_lists([[0, 1, 2], [3, 4], [4, 0]], n_items=5)
    evaluation = evaluate_next_item(SKNN(k=10, sample_size=0).fit(train), test, k=3, chunk=2)
    assert evaluation.n_cases == 2 + 1 + 1 and evaluation.n_sessions == 3
    # [0] -> 1: S0 only: items 0, 1, 2 tie, lower index first: rank 2. [0, 1] -> 2: hit.
    # [3] -> 4: S1 and S2 hold 3; 4 is in S2. [4] -> 0: only S2 holds 4, and not 0: miss.
    assert evaluation.ranks[0] == 2 and evaluation.ranks[1] > 0 and evaluation.ranks[2] > 0
    assert evaluation.ranks[3] == 0
    flat = evaluation.flat(ks=(3,), n_boot=50)
    assert flat["session_hitrate_at_3"] == pytest.approx(3 / 4)
    assert flat["session_hitrate_at_3_ci_low"] <= 3 / 4 <= flat["session_hitrate_at_3_ci_high"]
    assert flat["session_cases"] == 4
    assert set(evaluation.metrics((3,))) == {"hitrate@3", "mrr@3", "ndcg@3"}


def test_evaluate_reports_progress() -> None:
    train = Sessions.from_lists([[0, 1], [1, 2]], n_items=3)
    seen: list[int] = []
    evaluate_next_item(Popularity().fit(train), Sessions.from_lists([[0, 1, 2]] * 3, n_items=3), chunk=4,
                       on_progress=seen.append)
    assert seen == [4, 2]


def test_grid_search_scores_on_validation_and_ranks_best_first() -> None:
    # Validation always continues 0 -> 1; training holds 0 -> 1 once and 0 -> 2 twice. SR with
    # pruning 1 keeps only 0 -> 2 (a miss); with pruning 2 it finds 1 at rank 2.
    train = Sessions.from_lists([[0, 1], [0, 2], [0, 2]], n_items=3)
    validation = Sessions.from_lists([[0, 1]] * 2, n_items=3)
    data = SessionData(SessionProtocol(), np.arange(3), train, validation, validation, validation, 0, 0)
    trials = grid_search(SequentialRules, {"pruning": [1, 2]}, data, metric="mrr@20", fixed={"steps": 1})
    assert [t.params for t in trials] == [{"steps": 1, "pruning": 2}, {"steps": 1, "pruning": 1}]
    assert [t.value for t in trials] == pytest.approx([0.5, 0.0])


def test_intervals_of_several_metrics_share_resamples_and_equal_one_ci_call_each() -> None:
    rng = np.random.default_rng(1)
    evaluation = NextItemEvaluation("m", rng.integers(0, 30, 5000), np.sort(rng.integers(0, 900, 5000)), 900,
                                    20, 0.0)
    metrics = list(evaluation.metrics())
    shared = evaluation.cis(metrics, n_boot=300)
    for metric in metrics:
        alone = evaluation.ci(metric, n_boot=300)
        assert (shared[metric].mean, shared[metric].low, shared[metric].high) == pytest.approx(
            (alone.mean, alone.low, alone.high), rel=1e-12)
    flat = evaluation.flat("s", n_boot=300)
    assert flat["s_mrr_at_20_ci_low"] == pytest.approx(shared["mrr@20"].low, rel=1e-12)
