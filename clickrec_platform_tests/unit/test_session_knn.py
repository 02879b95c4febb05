"""SKNN, V-SKNN and STAN against scores worked out by hand on four training sessions.

    S0 = [0, 1, 2]  ends day 1        S2 = [2, 3, 4]  ends day 3
    S1 = [1, 3]     ends day 2        S3 = [0, 5]     ends day 4
"""

from __future__ import annotations

from math import exp, log, sqrt

import numpy as np
import pytest

from clickrec_platform.recommend.session.base import last_positions
from clickrec_platform.recommend.session.knn import POSITION_WEIGHTS, SKNN, STAN, STEP_WEIGHTS, VSKNN
from clickrec_platform.recommend.session.protocol import MS_PER_DAY, Sessions, next_item_cases

DAY = MS_PER_DAY


def _training() -> Sessions:
    items = [[0, 1, 2], [1, 3], [2, 3, 4], [0, 5]]
    # Each session's events a minute apart, its last event on day 1, 2, 3, 4.
    stamps = [[(s + 1) * DAY - (len(it) - 1 - j) * 60_000 for j in range(len(it))] for s, it in enumerate(items)]
    return Sessions.from_lists(items, stamps, n_items=6)


def _scores(model, prefix, timestamps=None, k: int = 10) -> dict[int, float]:
    items, scores = model.recommend(prefix, timestamps, k=k)
    return dict(zip(items.tolist(), scores.tolist(), strict=True))


def _assert_scores(actual: dict[int, float], expected: dict[int, float]) -> None:
    assert set(actual) == set(expected)
    for item, value in expected.items():
        assert actual[item] == pytest.approx(value), item


def test_sknn_sums_cosine_of_the_k_nearest() -> None:
    # Prefix {1, 2}: candidates S0 (shares 1 and 2), S1 (1), S2 (2); S3 shares nothing.
    s0, s1, s2 = 2 / sqrt(2 * 3), 1 / sqrt(2 * 2), 1 / sqrt(2 * 3)
    model = SKNN(k=2, sample_size=0).fit(_training())
    _assert_scores(_scores(model, [1, 2]), {0: s0, 1: s0 + s1, 2: s0, 3: s1})  # S2 is the 3rd: out
    assert model.recommend([1, 2])[0].tolist() == [1, 0, 2, 3]  # ties: lower index first

    model = SKNN(k=3, sample_size=0).fit(_training())
    _assert_scores(_scores(model, [1, 2]), {0: s0, 1: s0 + s1, 2: s0 + s2, 3: s1 + s2, 4: s2})


def test_sknn_samples_the_most_recent_candidates() -> None:
    # sample_size 2 keeps S1 and S2 (days 2, 3) and drops S0 (day 1), the most similar.
    model = SKNN(k=3, sample_size=2).fit(_training())
    s1, s2 = 1 / sqrt(4), 1 / sqrt(6)
    _assert_scores(_scores(model, [1, 2]), {1: s1, 3: s1 + s2, 2: s2, 4: s2})


def test_sknn_jaccard() -> None:
    model = SKNN(k=1, sample_size=0, similarity="jaccard").fit(_training())
    _assert_scores(_scores(model, [1, 2]), {0: 2 / 3, 1: 2 / 3, 2: 2 / 3})


def test_sknn_of_a_training_session_ranks_its_items_first() -> None:
    # S2 itself has similarity 1; its items lead: 3 (1 + S1's 1/sqrt(6)), 2 (1 + S0's 1/3), 4.
    model = SKNN(k=10, sample_size=0).fit(_training())
    assert model.recommend([2, 3, 4])[0].tolist()[:3] == [3, 2, 4]

    rng = np.random.default_rng(7)
    lists = [rng.choice(40, size=rng.integers(2, 6), replace=False).tolist() for _ in range(200)]
    nearest_only = SKNN(k=1, sample_size=0).fit(Sessions.from_lists(lists, n_items=40))
    for items in lists[:20]:
        # Ties in similarity 1 can only come from sessions with the same item set.
        assert set(nearest_only.recommend(items)[0].tolist()) == set(items)


def test_vsknn_position_weights_and_step_decay() -> None:
    # Prefix [2, 1], "div": item 2 at position 1 of 2 weighs 1/2, item 1 weighs 1.
    # "vec" similarity: shared weight / 2 distinct items -> S0 0.75, S1 0.5, S2 0.25.
    # Step decay "div": S0 and S1 share the last item (step 1); S2 only item 2 (step 2): x 1/2.
    model = VSKNN(k=3, sample_size=0).fit(_training())
    s0, s1, s2 = 0.75, 0.5, 0.25 * 0.5
    _assert_scores(_scores(model, [2, 1]), {0: s0, 1: s0 + s1, 2: s0 + s2, 3: s1 + s2, 4: s2})
    # Plain SKNN ranks item 3 (S1 + S2) above item 0 (S0 only); the decays turn that round.
    assert SKNN(k=3, sample_size=0).fit(_training()).recommend([2, 1])[0].tolist() == [1, 2, 3, 0, 4]
    assert model.recommend([2, 1])[0].tolist() == [1, 2, 0, 3, 4]


def test_vsknn_repeated_item_takes_its_last_position() -> None:
    # Prefix [1, 2, 1]: item 2 at position 2 of 3 weighs 2/3, item 1 (last at 3) weighs 1.
    model = VSKNN(k=1, sample_size=0).fit(_training())
    _assert_scores(_scores(model, [1, 2, 1]), {i: (1 + 2 / 3) / 2 for i in (0, 1, 2)})


def test_vsknn_idf_boosts_rare_items() -> None:
    # idf = log(4 sessions / events of the item): items 0..3 have 2 events, item 4 one.
    plain = _scores(VSKNN(k=3, sample_size=0).fit(_training()), [2, 1])
    boosted = _scores(VSKNN(k=3, sample_size=0, idf_weighting=1.0).fit(_training()), [2, 1])
    assert boosted[3] == pytest.approx(plain[3] * (1 + log(2)))
    assert boosted[4] == pytest.approx(plain[4] * (1 + log(4)))


def test_vsknn_with_flat_weights_and_cosine_is_sknn() -> None:
    flat = VSKNN(k=2, sample_size=0, similarity="cosine", weighting="same", weighting_score="same")
    _assert_scores(_scores(flat.fit(_training()), [1, 2]), _scores(SKNN(k=2, sample_size=0).fit(_training()), [1, 2]))


def test_weighting_functions() -> None:
    positions = np.arange(1, 13, dtype=float)
    linear = POSITION_WEIGHTS["linear"](positions, 12)
    assert linear[-1] == 1.0 and linear[-3] == pytest.approx(0.8) and linear[2] == pytest.approx(0.1)
    assert (linear[:2] == 0).all()  # never negative, unlike session-rec's
    assert POSITION_WEIGHTS["div"](positions, 12)[5] == pytest.approx(0.5)
    assert STEP_WEIGHTS["linear"](np.array([1.0, 10.0, 15.0])).tolist() == pytest.approx([0.9, 0.0, 0.0])
    assert STEP_WEIGHTS["div"](np.array([4.0]))[0] == 0.25


def test_last_positions() -> None:
    items, positions = last_positions(np.array([5, 3, 5, 7]))
    assert dict(zip(items.tolist(), positions.tolist(), strict=True)) == {3: 2, 5: 3, 7: 4}


def test_stan_each_decay_by_hand() -> None:
    # Prefix [2, 1] at day 5, all lambdas 1 (lambda_snh in days).
    w2, w1 = exp(-1), 1.0  # lambda_spw: item 2 one step back
    norm = sqrt(w2**2 + w1**2)
    s0 = (w1 + w2) / (norm * sqrt(3)) * exp(-4)  # lambda_snh: S0 ended 4 days before
    s1 = w1 / (norm * sqrt(2)) * exp(-3)
    s2 = w2 / (norm * sqrt(3)) * exp(-2)
    # lambda_inh: in S0 = [0, 1, 2] the last shared item (2) is at 3: item 0 two away, 1 one.
    # In S1 = [1, 3] it is 1 (at 1); in S2 = [2, 3, 4] it is 2 (at 1).
    expected = {
        0: s0 * exp(-2),
        1: s0 * exp(-1) + s1,
        2: s0 + s2,
        3: s1 * exp(-1) + s2 * exp(-1),
        4: s2 * exp(-2),
    }
    model = STAN(k=3, sample_size=0, lambda_spw=1, lambda_snh=1, lambda_inh=1).fit(_training())
    _assert_scores(_scores(model, [2, 1], [5 * DAY - 60_000, 5 * DAY]), expected)


def test_stan_recency_decay_reorders_neighbours() -> None:
    # k=1: without time decay S0 (2 shared items) wins; a strong decay prefers recent S2.
    no_time = STAN(k=1, sample_size=0, lambda_spw=None, lambda_snh=None, lambda_inh=None).fit(_training())
    assert set(no_time.recommend([1, 2], [0, 5 * DAY])[0].tolist()) == {0, 1, 2}
    recent = STAN(k=1, sample_size=0, lambda_spw=None, lambda_snh=0.1, lambda_inh=None).fit(_training())
    assert set(recent.recommend([1, 2], [0, 5 * DAY])[0].tolist()) == {2, 3, 4}


def _random_sessions(seed: int, n: int = 300, n_items: int = 50) -> Sessions:
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, n_items, size=rng.integers(2, 8)).tolist() for _ in range(n)]
    return Sessions.from_lists(lists, n_items=n_items)


def test_stan_without_decays_is_sknn() -> None:
    train = _random_sessions(1)
    sknn = SKNN(k=20, sample_size=100).fit(train)
    stan = STAN(k=20, sample_size=100, lambda_spw=None, lambda_snh=None, lambda_inh=None).fit(train)
    for prefix in ([3, 4, 3], [10], [7, 8, 9, 1]):
        _assert_scores(_scores(stan, prefix, k=50), _scores(sknn, prefix, k=50))


def test_stan_with_huge_lambdas_tends_to_sknn() -> None:
    # Every candidate is a neighbour, so near-ties cannot pick different neighbours.
    train = _random_sessions(1)
    sknn = SKNN(k=10_000, sample_size=0).fit(train)
    stan = STAN(k=10_000, sample_size=0, lambda_spw=1e9, lambda_snh=1e9, lambda_inh=1e9).fit(train)
    for prefix in ([3, 4, 3], [10], [7, 8, 9, 1]):
        stamps = [int(train.timestamps[-1])] * len(prefix)
        _assert_scores(_scores(stan, prefix, stamps, k=50), _scores(sknn, prefix, k=50))


@pytest.mark.parametrize(
    "model",
    [SKNN(k=5, sample_size=30), VSKNN(k=5, sample_size=30, idf_weighting=0.5), STAN(k=5, sample_size=30)],
    ids=lambda m: m.name,
)
def test_recommend_many_matches_recommend(model) -> None:
    model.fit(_random_sessions(2))
    test = _random_sessions(3, n=20)
    cases = next_item_cases(test)
    items, scores = model.recommend_many(cases, k=7)
    for case in range(len(cases)):
        prefix, stamps = cases.prefix(case)
        one_items, one_scores = model.recommend(prefix, stamps, k=7)
        assert items[case, : len(one_items)].tolist() == one_items.tolist()
        assert (items[case, len(one_items) :] == -1).all()
        np.testing.assert_allclose(scores[case, : len(one_items)], one_scores)


def test_unknown_items_are_ignored() -> None:
    model = SKNN(k=2, sample_size=0).fit(_training())
    assert model.recommend([1, 2, 99, -1])[0].tolist() == model.recommend([1, 2])[0].tolist()
    assert len(model.recommend([99])[0]) == 0
