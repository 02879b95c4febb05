"""The model comparison: a markdown table with the winner marked, and a bar chart PNG."""

from __future__ import annotations

import pytest

from clickrec_platform.recommend.evaluate import Evaluation, GroupMetrics
from clickrec_platform.recommend.metrics import METRICS, ConfidenceInterval
from clickrec_platform.recommend.report import comparison_chart, comparison_table, winner


def fake_evaluation(label: str, level: float) -> Evaluation:
    metrics = {
        f"{m}@{k}": ConfidenceInterval(level, level * 0.9, level * 1.1) for m in METRICS for k in (10, 20)
    }
    return Evaluation(
        model=label,
        params={},
        split="validation",
        ks=(10, 20),
        groups={"all": GroupMetrics(users=1234, metrics=metrics)},
        coverage={"coverage@10": 0.1, "coverage@20": 0.2},
        seconds=1.5,
        unreachable_share=0.01,
        dropped_users=0,
    )


EVALUATIONS = [
    fake_evaluation("most_popular", 0.07),
    fake_evaluation("als", 0.16),
    fake_evaluation("random", 0.001),
]


def test_table_ranks_models_marks_the_winner_and_shows_intervals():
    table = comparison_table(EVALUATIONS, training_seconds={"als": 12.34, "most_popular": 0.1})
    rows = [line for line in table.splitlines() if line.startswith("| `")]

    assert [row.split("`")[1] for row in rows] == ["als", "most_popular", "random"]
    assert "**(winner)**" in rows[0] and "winner" not in "".join(rows[1:])
    assert "0.1600 [0.1440, 0.1760]" in rows[0]
    assert "| 12.3 |" in rows[0]
    assert "1,234" in table and "ndcg@20" in table.splitlines()[2]


def test_winner_follows_the_chosen_metric():
    assert winner(EVALUATIONS) == "als"
    with pytest.raises(ValueError):
        winner([])


def test_chart_is_written_as_png(tmp_path):
    path = comparison_chart(EVALUATIONS, tmp_path / "charts" / "comparison.png")

    assert path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000
