"""Ranking metrics against hand-computed values, and the bootstrap's intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clickrec_platform.recommend.metrics import (
    bootstrap_ci,
    bootstrap_cis,
    catalogue_coverage,
    hits,
    ranking_metrics,
    relevance_from_lists,
)

N_ITEMS = 100


def metrics_for(recommended: list[list[int]], relevant: list[list[int]], ks=(4,)) -> dict[str, np.ndarray]:
    return ranking_metrics(np.array(recommended), relevance_from_lists(relevant, N_ITEMS), ks)


def test_hits_marks_relevant_positions_and_never_padding():
    recommended = np.array([[1, 2, 3, -1], [7, 8, 9, 10]])
    relevant = relevance_from_lists([[2, 3], [10, 99]], N_ITEMS)

    assert hits(recommended, relevant).tolist() == [[False, True, True, False], [False, False, False, True]]


def test_two_hits_among_three_relevant_at_k4():
    # Hits at ranks 2 and 4; |rel| = 3.
    m = metrics_for([[1, 2, 3, 4]], [[2, 4, 9]])

    assert m["precision@4"][0] == pytest.approx(2 / 4)
    assert m["recall@4"][0] == pytest.approx(2 / 3)
    assert m["hitrate@4"][0] == 1.0
    assert m["mrr@4"][0] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(k, |rel|) = 3 ideal hits
    assert m["ndcg@4"][0] == pytest.approx(dcg / idcg)
    assert m["map@4"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_cut_at_k2_sees_only_the_first_two_ranks():
    m = metrics_for([[1, 2, 3, 4]], [[2, 4, 9]], ks=(2,))

    assert m["precision@2"][0] == pytest.approx(1 / 2)
    assert m["recall@2"][0] == pytest.approx(1 / 3)
    assert m["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map@2"][0] == pytest.approx((1 / 2) / 2)  # denominator min(k=2, |rel|=3)
    assert m["mrr@2"][0] == pytest.approx(1 / 2)


def test_recall_divides_by_all_relevant_items_even_beyond_k():
    relevant = list(range(30))
    m = metrics_for([list(range(20))], [relevant], ks=(20,))

    assert m["recall@20"][0] == pytest.approx(20 / 30)  # the `recommenders` convention, not 20/min(20, 30)
    assert m["precision@20"][0] == 1.0
    assert m["ndcg@20"][0] == pytest.approx(1.0)
    assert m["map@20"][0] == pytest.approx(1.0)


def test_fewer_recommendations_than_k_count_as_misses():
    m = metrics_for([[5, -1, -1, -1]], [[5]])

    assert m["precision@4"][0] == pytest.approx(1 / 4)  # divided by k, not by the list's length
    assert m["recall@4"][0] == 1.0
    assert m["ndcg@4"][0] == pytest.approx(1.0)
    assert m["map@4"][0] == pytest.approx(1.0)
    assert m["mrr@4"][0] == 1.0


def test_no_hit_scores_zero_everywhere():
    m = metrics_for([[1, 2, 3, 4]], [[50, 60]])

    assert all(values[0] == 0.0 for values in m.values())


def test_empty_relevance_is_undefined_not_zero():
    m = metrics_for([[1, 2, 3, 4], [1, 2, 3, 4]], [[], [1]])

    assert all(np.isnan(values[0]) for values in m.values())
    assert m["recall@4"][1] == 1.0


def test_metrics_are_per_user_and_vectorised_over_users():
    m = metrics_for([[1, 2, 3, 4], [9, 8, 7, 6], [4, 3, 2, 1]], [[1], [6], [50]])

    assert m["mrr@4"].tolist() == pytest.approx([1.0, 1 / 4, 0.0])
    assert m["hitrate@4"].tolist() == [1.0, 1.0, 0.0]


def test_scoring_at_a_k_longer_than_the_lists_is_refused():
    with pytest.raises(ValueError, match="k=20"):
        metrics_for([[1, 2, 3, 4]], [[1]], ks=(20,))


def test_coverage_counts_distinct_items_and_ignores_padding():
    recommended = np.array([[0, 1, -1], [1, 2, 3]])

    assert catalogue_coverage(recommended, 10) == pytest.approx(4 / 10)
    assert catalogue_coverage(recommended, 10, k=1) == pytest.approx(2 / 10)


def test_bootstrap_of_a_constant_is_the_constant():
    ci = bootstrap_ci(np.full(50, 0.25), n_boot=200)

    assert (ci.mean, ci.low, ci.high) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(1)
    few = bootstrap_ci(rng.random(100), n_boot=500, seed=3)
    many = bootstrap_ci(rng.random(10_000), n_boot=500, seed=3)

    assert few.low < few.mean < few.high
    assert many.low < many.mean < many.high
    assert many.high - many.low < (few.high - few.low) / 5  # ~ 1/sqrt(100) apart
    assert many.mean == pytest.approx(0.5, abs=0.02)
    assert many.high - many.low == pytest.approx(2 * 1.96 * (1 / 12) ** 0.5 / 100, rel=0.2)


def test_bootstrap_is_reproducible_and_shares_resamples_across_metrics():
    values = np.random.default_rng(2).random(300)

    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    together = bootstrap_cis({"a": values, "b": values * 2}, seed=5)
    assert together["b"].low == pytest.approx(2 * together["a"].low)
    alone = bootstrap_ci(values, seed=5)
    assert (together["a"].mean, together["a"].low, together["a"].high) == pytest.approx(
        (alone.mean, alone.low, alone.high)
    )


def test_bootstrap_refuses_undefined_values_and_survives_no_users():
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci(np.array([0.1, np.nan]))
    assert np.isnan(bootstrap_ci(np.array([])).mean)
