"""Honest offline evaluation: train on the past, score on the next period, report with CIs.

Validation scores choose models and hyperparameters; the test split is touched once, by
`evaluate_on_test`, which retrains on train + validation (the freshest data a deployed model
would have) and scores the last period. Results are reported for all evaluated visitors and
separately for warm ones (with training history) and cold-start ones (who get the fallback),
because a model can only differ from popularity on the warm ones.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clickrec_platform.recommend.data import GroundTruth, InteractionData
from clickrec_platform.recommend.metrics import (
    DEFAULT_METRIC,
    METRICS,
    ConfidenceInterval,
    bootstrap_cis,
    metric_name,
    paired_difference,
    ranking_metrics,
)
from clickrec_platform.recommend.models import DEFAULT_BATCH_USERS, Recommender

GROUPS: tuple[str, ...] = ("all", "warm", "cold_start")
DEFAULT_KS: tuple[int, ...] = (10, 20)

# Kept small on purpose: each point is a full fit and evaluation.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "most_popular": {"window_days": [3.0, 7.0, None]},
    "item_knn": {"similarity": ["cosine", "bm25"], "neighbours": [50, 200]},
    "als": {"factors": [32, 64], "alpha": [2.0, 10.0, 40.0]},
    "bpr": {"learning_rate": [0.01, 0.05], "factors": [32, 64]},
    "recent_item_knn": {"session_items": [3, 10], "recency_decay": [0.5, 0.9]},
}


@dataclass(frozen=True)
class GroupMetrics:
    users: int
    metrics: dict[str, ConfidenceInterval]  # "ndcg@20" -> mean and CI over these users


@dataclass(frozen=True)
class Evaluation:
    model: str  # a label: the model's name unless the caller named it
    params: dict[str, Any]
    split: str
    ks: tuple[int, ...]
    groups: dict[str, GroupMetrics]
    coverage: dict[str, float]  # "coverage@20": over every evaluated visitor's list
    seconds: float
    unreachable_share: float  # relevant pairs whose item no model knew (unseen in training)
    dropped_users: int  # held-out visitors with no item new to them, hence nothing to score
    # Per evaluated visitor (group "all", in `visitor_ids` order): what a paired comparison resamples.
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    visitor_ids: np.ndarray | None = field(default=None, repr=False)

    def ci(self, metric: str, group: str = "all") -> ConfidenceInterval:
        return self.groups[group].metrics[metric]

    def value(self, metric: str, group: str = "all") -> float:
        """A metric's mean; `coverage@k` too."""
        if metric.startswith("coverage@"):
            return self.coverage[metric]
        return self.ci(metric, group).mean

    def flat(self, prefix: str = "val") -> dict[str, float]:
        """Flat metric names for trackers that only take [A-Za-z0-9_] keys:
        val_ndcg_at_20, val_ndcg_at_20_ci_low, val_warm_ndcg_at_20, val_cold_start_users, ..."""
        out: dict[str, float] = {}
        for group, result in self.groups.items():
            stem = prefix if group == "all" else f"{prefix}_{group}"
            out[f"{stem}_users"] = float(result.users)
            for metric, interval in result.metrics.items():
                key = f"{stem}_{metric.replace('@', '_at_')}"
                out[key] = interval.mean
                out[f"{key}_ci_low"] = interval.low
                out[f"{key}_ci_high"] = interval.high
        for metric, value in self.coverage.items():
            out[f"{prefix}_{metric.replace('@', '_at_')}"] = value
        out[f"{prefix}_unreachable_share"] = self.unreachable_share
        out[f"{prefix}_evaluation_seconds"] = self.seconds
        return out


def evaluate(
    model: Recommender,
    data: InteractionData,
    split: str = "validation",
    ks: Sequence[int] = DEFAULT_KS,
    cold_start: bool = True,
    *,
    new_items_only: bool = True,
    min_weight: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_USERS,
    label: str | None = None,
) -> Evaluation:
    """Score a model fitted on `data`'s training splits against `split`.

    With `new_items_only` (the default, matching `exclude_seen=True` recommendations) the truth
    holds only items new to each visitor. `cold_start=False` leaves cold-start visitors out.
    The same `seed` and truth give every model the same bootstrap resamples, so their
    intervals are paired. `label` names the result (default: the model's name).
    """
    started = time.perf_counter()
    if not _fitted_on(model, data):
        raise ValueError(f"{model.name} must be fitted on this data's training splits first")
    ks = tuple(sorted(ks))
    truth = data.evaluation_truth(split, min_weight, new_items_only)
    dropped = len(data.evaluation_truth(split, min_weight, new_items_only=False)) - len(truth)
    if not cold_start:
        truth = truth.subset(np.flatnonzero(~truth.is_cold))

    per_user, recommended_at = _score_in_batches(model, truth, ks, new_items_only, batch_size)
    groups = {"all": np.ones(len(truth), dtype=bool), "warm": ~truth.is_cold}
    if cold_start:
        groups["cold_start"] = truth.is_cold
    results = {
        group: GroupMetrics(
            users=int(members.sum()),
            metrics=bootstrap_cis(
                {name: values[members] for name, values in per_user.items()}, n_boot, seed=seed
            ),
        )
        for group, members in groups.items()
    }
    coverage = {f"coverage@{k}": float(recommended_at[k].sum() / data.n_items) for k in ks}
    return Evaluation(
        model=label or model.name,
        params=dict(model.params),
        split=split,
        ks=ks,
        groups=results,
        coverage=coverage,
        seconds=time.perf_counter() - started,
        unreachable_share=truth.unreachable_share,
        dropped_users=dropped,
        per_user=per_user,
        visitor_ids=truth.visitor_ids,
    )


def paired_user_difference(
    challenger: Evaluation, reference: Evaluation, metric: str, confidence: float = 0.95,
    n_boot: int = 1000, seed: int = 0,
) -> ConfidenceInterval:
    """challenger - reference on `metric` over the same evaluated visitors, paired bootstrap."""
    if (challenger.visitor_ids is None or reference.visitor_ids is None
            or not np.array_equal(challenger.visitor_ids, reference.visitor_ids)):
        raise ValueError("a paired comparison needs both models evaluated on the same visitors")
    return paired_difference(challenger.per_user[metric], reference.per_user[metric], n_boot, confidence, seed)


def _fitted_on(model: Recommender, data: InteractionData) -> bool:
    """Same index spaces, or every row and column would mean something else."""
    item_ids, user_ids = getattr(model, "item_ids", None), getattr(model, "user_ids", None)
    return (
        item_ids is not None
        and user_ids is not None
        and np.array_equal(item_ids, data.item_ids)
        and np.array_equal(user_ids, data.user_ids)
    )


def _score_in_batches(
    model: Recommender, truth: GroundTruth, ks: tuple[int, ...], exclude_seen: bool, batch_size: int
) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """Per-user metrics, and which items appear in any top-k, holding one batch of lists at once."""
    n_items = model.n_items
    recommended_at = {k: np.zeros(n_items, dtype=bool) for k in ks}
    parts: dict[str, list[np.ndarray]] = {metric_name(m, k): [] for k in ks for m in METRICS}
    for start in range(0, len(truth), batch_size):
        rows = np.arange(start, min(start + batch_size, len(truth)))
        items, _ = model.recommend(truth.user_index[rows], k=max(ks), exclude_seen=exclude_seen)
        for name, values in ranking_metrics(items, truth.relevant[rows], ks).items():
            parts[name].append(values)
        for k in ks:
            top = items[:, :k]
            recommended_at[k][top[top >= 0]] = True
    per_user = {name: np.concatenate(chunks) if chunks else np.zeros(0) for name, chunks in parts.items()}
    return per_user, recommended_at


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    score: float
    fit_seconds: float
    evaluation: Evaluation


@dataclass(frozen=True)
class GridSearchResult:
    metric: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {**trial.params, self.metric: trial.score, "fit_seconds": trial.fit_seconds}
                for trial in self.trials
            ]
        ).sort_values(self.metric, ascending=False, kind="stable")


def grid_search(
    model_factory: Callable[..., Recommender],
    grid: Mapping[str, Sequence[Any]],
    data: InteractionData,
    metric: str = DEFAULT_METRIC,
    *,
    split: str = "validation",
    group: str = "all",
    ks: Sequence[int] = DEFAULT_KS,
    n_boot: int = 200,
    executor: Executor | None = None,
) -> GridSearchResult:
    """Fit `model_factory(**point)` for every point of the grid and keep the best on `metric`
    (validation by default: the test split must never choose anything). Ties keep the first.
    With an `executor`, points are fitted and scored side by side (the same trials, in order)."""
    if not grid:
        raise ValueError("grid must name at least one parameter")
    names = list(grid)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[name] for name in names))]

    def trial(params: dict[str, Any]) -> Trial:
        model = model_factory(**params).fit(data)
        evaluation = evaluate(model, data, split, ks, n_boot=n_boot)
        return Trial(params, evaluation.value(metric, group), model.fit_seconds or 0.0, evaluation)

    trials = list(map(trial, points) if executor is None else executor.map(trial, points))
    best = max(trials, key=lambda trial: trial.score)  # max keeps the first of equals
    return GridSearchResult(metric=metric, best_params=best.params, best_score=best.score, trials=trials)


REFIT_SPLITS: tuple[str, ...] = ("train", "validation")


def refit_data(
    splits: pd.DataFrame, *, half_life_days: float | None = None, items: pd.DataFrame | None = None
) -> InteractionData:
    """What the final models train on: train + validation, scored against test."""
    return InteractionData.from_splits(splits, train_splits=REFIT_SPLITS, half_life_days=half_life_days, items=items)


@dataclass(frozen=True)
class FinalEvaluation:
    model: Recommender
    data: InteractionData
    evaluation: Evaluation


def evaluate_on_test(
    model_factory: Callable[[], Recommender],
    splits: pd.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    half_life_days: float | None = None,
    items: pd.DataFrame | None = None,
    data: InteractionData | None = None,
    **evaluate_options: Any,
) -> FinalEvaluation:
    """The final, once-only score: a fresh model trained on train + validation, scored on test.

    `data`, when given, is `refit_data(splits, ...)` built once for several models (`splits` is
    then not read)."""
    if data is None:
        data = refit_data(splits, half_life_days=half_life_days, items=items)
    elif data.train_splits != REFIT_SPLITS:
        raise ValueError(f"the final evaluation trains on {REFIT_SPLITS}, not {data.train_splits}")
    model = model_factory().fit(data)
    return FinalEvaluation(
        model=model, data=data, evaluation=evaluate(model, data, "test", ks, **evaluate_options)
    )
