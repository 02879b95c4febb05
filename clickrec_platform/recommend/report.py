"""Model comparison for people: a markdown table and a bar chart with confidence intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot's import

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from clickrec_platform.recommend.evaluate import Evaluation  # noqa: E402
from clickrec_platform.recommend.metrics import DEFAULT_METRIC, ConfidenceInterval  # noqa: E402

TABLE_METRICS: tuple[str, ...] = ("recall@20", "ndcg@20", "map@20", "hitrate@20", "mrr@20")
CHART_METRICS: tuple[str, ...] = ("recall@20", "ndcg@20")


def winner(evaluations: Sequence[Evaluation], metric: str = DEFAULT_METRIC, group: str = "all") -> str:
    """The label of the best evaluation on `metric` (the first of equals)."""
    if not evaluations:
        raise ValueError("nothing to compare")
    return max(evaluations, key=lambda evaluation: evaluation.value(metric, group)).model


def comparison_table(
    evaluations: Sequence[Evaluation],
    training_seconds: Mapping[str, float] | None = None,
    metric: str = DEFAULT_METRIC,
    metrics: Sequence[str] = TABLE_METRICS,
    group: str = "all",
) -> str:
    """A markdown table, best first on `metric`, the winner marked; means with 95% CIs."""
    best = winner(evaluations, metric, group)
    ordered = sorted(evaluations, key=lambda evaluation: -evaluation.value(metric, group))
    coverage = [f"coverage@{k}" for k in ordered[0].ks if f"coverage@{k}" in ordered[0].coverage][-1:]
    header = ["model", *metrics, *coverage, "train s", "eval s"]
    lines = [
        f"Split `{ordered[0].split}`, {group} visitors ({ordered[0].groups[group].users:,}); "
        f"mean [95% bootstrap CI]; ranked by {metric}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for evaluation in ordered:
        mark = " **(winner)**" if evaluation.model == best else ""
        cells = [f"`{evaluation.model}`{mark}"]
        for name in metrics:
            interval = evaluation.ci(name, group)
            cells.append(f"{interval.mean:.4f} [{interval.low:.4f}, {interval.high:.4f}]")
        cells += [f"{evaluation.coverage[name]:.3f}" for name in coverage]
        seconds = (training_seconds or {}).get(evaluation.model)
        cells.append("" if seconds is None else f"{seconds:.1f}")
        cells.append(f"{evaluation.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_chart(
    evaluations: Sequence[Evaluation],
    path: str | Path,
    metrics: Sequence[str] = CHART_METRICS,
    group: str = "all",
) -> Path:
    """Grouped bars per model, one per metric, with 95% CI error bars, saved as a PNG."""
    rows = [(evaluation.model, {name: evaluation.ci(name, group) for name in metrics}) for evaluation in evaluations]
    return interval_chart(rows, path, title=f"{evaluations[0].split}: {group} visitors",
                          ylabel="mean over visitors (95% CI)")


def interval_chart(
    rows: Sequence[tuple[str, Mapping[str, ConfidenceInterval]]],
    path: str | Path,
    title: str,
    ylabel: str,
) -> Path:
    """Grouped bars: one group per (label, intervals) row, one bar per metric (the first row's),
    each with its interval as the error bar; saved as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [label for label, _ in rows]
    metrics = list(rows[0][1])
    positions = np.arange(len(labels))
    width = 0.8 / len(metrics)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 4.5))
    try:
        for offset, name in enumerate(metrics):
            intervals = [row[name] for _, row in rows]
            means = np.array([interval.mean for interval in intervals])
            errors = np.array(
                [
                    [interval.mean - interval.low for interval in intervals],
                    [interval.high - interval.mean for interval in intervals],
                ]
            )
            axes.bar(
                positions + (offset - (len(metrics) - 1) / 2) * width,
                means,
                width,
                yerr=np.maximum(errors, 0),
                capsize=3,
                label=name,
            )
        axes.set_xticks(positions, labels, rotation=30, ha="right")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return path
