"""Choose a session model's parameters on validation, never on test.

Each candidate is fitted on `SessionData.train` and scored on `SessionData.validation` (whose items
are all known to train); the winner is then refitted on `train_full` and scored once on test by
the caller. Small grids around session-rec's tuned RetailRocket values, the ranges its papers
searched, are in `DEFAULT_GRIDS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickrec_platform.recommend.session.base import SessionRecommender
from clickrec_platform.recommend.session.evaluate import evaluate_next_item
from clickrec_platform.recommend.session.protocol import SessionData

DEFAULT_GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "sr": {"steps": [5, 10], "weighting": ["div", "linear"]},
    "sknn": {"k": [50, 100, 200], "sample_size": [1000, 5000]},
    "vsknn": {"k": [200, 1500], "weighting": ["same", "div"], "weighting_score": ["div", "linear"]},
    "stan": {"k": [200, 500], "lambda_spw": [1.81, 3.62], "lambda_inh": [0.4525, 2.05, 7.24]},
}


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    value: float  # the search metric on validation


def grid_search(
    make: Callable[..., SessionRecommender],
    grid: Mapping[str, Sequence[Any]],
    data: SessionData,
    metric: str = "mrr@20",
    fixed: Mapping[str, Any] | None = None,
) -> list[Trial]:
    """Every combination of `grid` (plus `fixed` arguments), best validation `metric` first."""
    if len(data.validation) == 0:
        raise ValueError("no validation sessions: give the protocol validation_days > 0")
    trials = []
    for params in grid_points(grid, fixed):
        model = make(**params).fit(data.train)
        trials.append(Trial(params, evaluate_next_item(model, data.validation).value(metric)))
    return rank_trials(trials)


def grid_points(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of `grid`, each with the `fixed` arguments, in the grid's order."""
    names = list(grid)
    return [{**(fixed or {}), **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(grid[name] for name in names))]


def rank_trials(trials: Sequence[Trial]) -> list[Trial]:
    """Best value first; equal values keep the grid's order."""
    return sorted(trials, key=lambda trial: -trial.value)
