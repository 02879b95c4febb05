"""Promotion: a challenger must beat the popularity baseline and the current champion, beyond
resampling noise (paired bootstrap interval of the difference above 0)."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec_platform.recommend.gate import BASELINE_REFERENCE, CHAMPION_REFERENCE, Reference, decide
from clickrec_platform.recommend.metrics import ConfidenceInterval, paired_difference

CLEAR = ConfidenceInterval(0.02, 0.01, 0.03)
STRADDLES = ConfidenceInterval(0.004, -0.002, 0.010)


def _refs(champion: ConfidenceInterval | None, baseline: ConfidenceInterval = CLEAR) -> dict[str, Reference]:
    refs = {BASELINE_REFERENCE: Reference(0.070, baseline)}
    if champion is not None:
        refs[CHAMPION_REFERENCE] = Reference(0.160, champion)
    return refs


def test_a_challenger_whose_interval_over_the_champion_straddles_zero_is_kept_out():
    decision = decide(0.164, _refs(STRADDLES), "ndcg@20")

    assert not decision.promote
    assert "does not beat the champion (0.1600" in decision.reason and "straddles 0" in decision.reason
    assert "beats the popularity baseline" in decision.reason and decision.reason.endswith("-> keep")


def test_a_challenger_whose_intervals_clear_zero_is_promoted():
    decision = decide(0.180, _refs(CLEAR), "ndcg@20")

    assert decision.promote and decision.reason.endswith("-> promote")
    assert "beats the champion" in decision.reason and "above 0" in decision.reason


def test_without_a_champion_the_baseline_must_still_be_beaten_beyond_noise():
    assert not decide(0.072, _refs(None, baseline=STRADDLES), "ndcg@20").promote
    winning = decide(0.090, _refs(None), "ndcg@20")
    assert winning.promote and "no champion yet" in winning.reason


def test_beating_the_champion_is_not_enough_when_the_baseline_interval_is_not_above_zero():
    below = ConfidenceInterval(-0.01, -0.02, -0.001)
    decision = decide(0.060, _refs(CLEAR, baseline=below), "ndcg@20")
    assert not decision.promote and "not above 0" in decision.reason


def test_minimum_lift_raises_the_bar_on_top_of_the_interval():
    assert decide(0.165, _refs(CLEAR), "ndcg@20").promote
    strict = decide(0.165, _refs(CLEAR), "ndcg@20", min_relative_lift=0.05)
    assert not strict.promote and "needs > 0.1680" in strict.reason


def test_the_baseline_reference_is_required():
    with pytest.raises(KeyError, match="popularity baseline"):
        decide(0.2, {CHAMPION_REFERENCE: Reference(0.1, CLEAR)}, "ndcg@20")


def test_paired_difference_sees_a_small_consistent_gain_that_unpaired_intervals_would_hide():
    rng = np.random.default_rng(0)
    champion = rng.uniform(0, 1, 2_000)  # wide spread between users
    challenger = champion + 0.01  # every user a little better
    interval = paired_difference(challenger, champion, n_boot=500)
    assert interval.low > 0 and interval.mean == pytest.approx(0.01)

    noisy = champion + rng.normal(0, 0.3, 2_000) + 0.001  # a gain drowned in noise
    straddling = paired_difference(noisy, champion, n_boot=500)
    assert straddling.low < 0 < straddling.high


def test_paired_difference_needs_the_same_users():
    with pytest.raises(ValueError, match="same users"):
        paired_difference(np.ones(3), np.ones(4))
