"""Promotion: a challenger must beat the popularity baseline and the current champion."""

from __future__ import annotations

import pytest

from clickrec_platform.recommend.gate import decide

BASELINE = {"ndcg@20": 0.070, "recall@20": 0.100}
CHAMPION = {"ndcg@20": 0.160, "recall@20": 0.210}


def test_a_worse_challenger_is_not_promoted():
    decision = decide({"ndcg@20": 0.152, "recall@20": 0.300}, CHAMPION, BASELINE)

    assert not decision.promote
    assert "does not beat the champion (0.1600" in decision.reason
    assert "0.1520" in decision.reason and "-5.0%" in decision.reason


def test_a_better_challenger_is_promoted():
    decision = decide({"ndcg@20": 0.180}, CHAMPION, BASELINE)

    assert decision.promote
    assert "beats the champion" in decision.reason and "beats the popularity baseline" in decision.reason


def test_without_a_champion_the_baseline_must_still_be_beaten():
    losing = decide({"ndcg@20": 0.050}, None, BASELINE)
    winning = decide({"ndcg@20": 0.090}, None, BASELINE)

    assert not losing.promote and "does not beat the popularity baseline" in losing.reason
    assert winning.promote and "no champion yet" in winning.reason


def test_beating_the_champion_is_not_enough_when_the_baseline_is_higher():
    weak_champion = {"ndcg@20": 0.040}

    assert not decide({"ndcg@20": 0.060}, weak_champion, BASELINE).promote


def test_a_tie_is_not_an_improvement():
    assert not decide(dict(CHAMPION), CHAMPION, BASELINE).promote


def test_minimum_lift_raises_the_bar():
    challenger = {"ndcg@20": 0.165}  # +3.1% over the champion

    assert decide(challenger, CHAMPION, BASELINE, min_relative_lift=0.0).promote
    strict = decide(challenger, CHAMPION, BASELINE, min_relative_lift=0.05)
    assert not strict.promote and "needs > 0.1680" in strict.reason


def test_the_gate_metric_is_chosen_and_must_exist():
    assert decide({"ndcg@20": 0.1, "recall@20": 0.5}, CHAMPION, BASELINE, metric="recall@20").promote
    with pytest.raises(KeyError, match="map@10"):
        decide({"ndcg@20": 0.2}, CHAMPION, BASELINE, metric="map@10")
