"""One training of the session models: parameters searched on validation, the chosen point scored
on validation, then refitted on train + validation and scored once on test (never used to choose).

`train_session_candidates` is pure (no MLflow): the Dagster asset logs what it returns
(`session.tracking`) and hands it to the gate (`session_gate_references`).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clickrec_platform.recommend.candidates import parse_param
from clickrec_platform.recommend.data import lookup_index
from clickrec_platform.recommend.gate import BASELINE_REFERENCE, CHAMPION_REFERENCE, Reference
from clickrec_platform.recommend.report import interval_chart
from clickrec_platform.recommend.session.base import SessionRecommender
from clickrec_platform.recommend.session.baselines import Popularity, RecentItemKNN
from clickrec_platform.recommend.session.evaluate import (
    NextItemEvaluation,
    evaluate_next_item,
    paired_difference,
)
from clickrec_platform.recommend.session.knn import SKNN, STAN, VSKNN
from clickrec_platform.recommend.session.protocol import SessionData, Sessions
from clickrec_platform.recommend.session.rules import SequentialRules
from clickrec_platform.recommend.session.search import Trial, grid_points, rank_trials

log = logging.getLogger("clickrec.sessions")

SESSION_BASELINE = "popularity"
SESSION_MODELS: dict[str, Callable[..., SessionRecommender]] = {
    "popularity": Popularity,
    "sr": SequentialRules,
    "sknn": SKNN,
    "vsknn": VSKNN,
    "stan": STAN,
    "recent_item_knn": RecentItemKNN,
}

# session-rec's tuned RetailRocket settings (as `clickrec bench sessions` runs them): what a grid does
# not vary stays at these values.
TUNED_PARAMS: dict[str, dict[str, Any]] = {
    "sr": {"steps": 7, "weighting": "div"},
    "sknn": {"k": 50, "sample_size": 5000, "similarity": "cosine"},
    "vsknn": {"k": 1500, "sample_size": 2500, "weighting": "same", "weighting_score": "linear"},
    "stan": {"k": 500, "sample_size": 1000, "lambda_spw": 1.81, "lambda_snh": 100, "lambda_inh": 0.4525},
}


def build_session_model(name: str, params: Mapping[str, Any] | None = None) -> SessionRecommender:
    """A fresh session model; `params` as logged (strings are parsed back)."""
    if name not in SESSION_MODELS:
        raise ValueError(f"unknown session model {name!r}; known: {', '.join(SESSION_MODELS)}")
    return SESSION_MODELS[name](**{key: parse_param(value) for key, value in (params or {}).items()})


@dataclass
class SessionCandidate:
    name: str
    params: dict[str, Any]
    validation: NextItemEvaluation  # fitted on train, scored on validation: what chooses
    test: NextItemEvaluation  # refitted on train + validation, scored on test: reported only
    model: SessionRecommender  # the refitted one (what gets served)
    fit_seconds: float
    searched: int = 0  # grid points tried on validation
    run: Any = field(default=None)  # the logged run, once logged

    def value(self, metric: str) -> float:
        return self.validation.value(metric)


def train_session_candidates(
    data: SessionData,
    names: Sequence[str | tuple[str, Mapping[str, Any]]],
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    metric: str = "mrr@20",
    k: int = 20,
    progress: Callable[[str], None] = log.info,
    workers: int = 1,
) -> list[SessionCandidate]:
    """Each candidate (a name, or a name with fixed params): its grid (if any and no params given)
    searched on validation by `metric`, then scored on validation, refitted on `train_full` and
    scored on test.

    With `workers` > 1, fits that do not depend on each other (grid points; a candidate's validation
    fit and its test refit) run side by side in that many worker processes (the models loop over
    cases in Python, so threads would wait on each other): the same models and scores, sooner."""
    if len(data.validation) == 0 or len(data.test) == 0:
        raise ValueError("session training needs validation and test sessions")
    out = []
    train_full = data.train_full
    with _worker_pool(workers) as pool:
        run = _runner(pool)
        for entry in names:
            name, params = (entry, None) if isinstance(entry, str) else entry
            searched = 0
            if params is None and grids and grids.get(name):
                points = grid_points(grids[name], fixed=TUNED_PARAMS.get(name))
                scored = run([(_fit_and_score, name, point, data.train, data.validation, k, False) for point in points])
                trials = rank_trials([Trial(point, evaluation.value(metric)) for (_, evaluation), point
                                      in zip(scored, points, strict=True)])
                params, searched = trials[0].params, len(trials)
                progress(f"session {name}: grid of {searched} points, best {params} ({metric} {trials[0].value:.4f})")
            params = TUNED_PARAMS.get(name, {}) if params is None else params
            (_, validation), (final, test) = run([
                (_fit_and_score, name, params, data.train, data.validation, k, False),
                (_fit_and_score, name, params, train_full, data.test, k, True)])
            progress(f"session {name}: validation {metric} {validation.value(metric):.4f}, "
                     f"test {metric} {test.value(metric):.4f} (fit {final.fit_seconds:.1f}s)")
            out.append(SessionCandidate(name, final.params(), validation, test, final, final.fit_seconds or 0.0,
                                        searched))
    return out


def _fit_and_score(name: str, params: Mapping[str, Any], train: Sessions, evaluated: Sessions, k: int,
                   keep_model: bool) -> tuple[SessionRecommender | None, NextItemEvaluation]:
    """A model fitted on `train` and scored on `evaluated` (module level: worker processes run it)."""
    model = build_session_model(name, params).fit(train)
    return (model if keep_model else None), evaluate_next_item(model, evaluated, k)


@contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    if workers <= 1:
        yield None
        return
    # spawn: the training runs inside Dagster's process, whose threads a fork would copy mid-flight.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _runner(pool: ProcessPoolExecutor | None) -> Callable[[list[tuple[Any, ...]]], list[Any]]:
    """Runs calls (function, *arguments) and returns their results in order: in the pool, or here."""
    def run(calls: list[tuple[Any, ...]]) -> list[Any]:
        if pool is None:
            return [call[0](*call[1:]) for call in calls]
        futures = [pool.submit(*call) for call in calls]
        return [future.result() for future in futures]
    return run


def best_session_challenger(candidates: Sequence[SessionCandidate], metric: str) -> SessionCandidate:
    """The best candidate on validation that is not the popularity floor."""
    contenders = [c for c in candidates if c.name != SESSION_BASELINE]
    if not contenders:
        raise ValueError("no session candidate besides popularity: nothing to promote")
    return max(contenders, key=lambda c: c.value(metric))


def session_gate_references(
    challenger: SessionCandidate,
    candidates: Sequence[SessionCandidate],
    champion: tuple[str, Mapping[str, str]] | None,
    metric: str,
    confidence: float = 0.95,
    n_boot: int = 1000,
) -> tuple[dict[str, Reference], str]:
    """The gate's references on this validation (same sessions): popularity, and the champion's
    configuration as retrained in this training (its logged metrics were measured on other data
    and cannot be paired). A note says when the champion could not be compared."""
    def reference(other: SessionCandidate) -> Reference:
        return Reference(other.value(metric), paired_difference(challenger.validation, other.validation, metric,
                                                                confidence, n_boot))

    baseline = next(c for c in candidates if c.name == SESSION_BASELINE)
    references = {BASELINE_REFERENCE: reference(baseline)}
    if champion is None:
        return references, ""
    name, params = champion
    same = [c for c in candidates if c.name == name
            and {key: str(value) for key, value in c.params.items()}.items() <= dict(params).items()]
    if not same:
        return references, f"the session champion's configuration ({name}) was not trained here: not compared"
    references[CHAMPION_REFERENCE] = reference(same[0])
    return references, f"the session champion's configuration ({name}) retrained here stands in for it"


def session_comparison_table(candidates: Sequence[SessionCandidate], ks: Sequence[int] = (20,)) -> str:
    """Markdown: each candidate's validation and test HR/MRR/NDCG (the test column chose nothing)."""
    metrics = [f"{name}@{k}" for k in ks for name in ("hitrate", "mrr", "ndcg")]
    header = ["model", "params", *(f"val {m}" for m in metrics), *(f"test {m}" for m in metrics), "fit s"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in candidates:
        values = [f"{c.validation.value(m):.4f}" for m in metrics] + [f"{c.test.value(m):.4f}" for m in metrics]
        params = ", ".join(f"{k}={v}" for k, v in c.params.items())
        rows.append(f"| {c.name} | {params} | " + " | ".join(values) + f" | {c.fit_seconds:.1f} |")
    return "\n".join(rows)


def session_comparison_chart(candidates: Sequence[SessionCandidate], path: str | Path,
                             metrics: Sequence[str] = ("hitrate@20", "mrr@20"), n_boot: int = 1000) -> Path:
    """Bars per candidate of its validation `metrics` with 95% intervals over sessions, as a PNG."""
    rows = [(c.name, c.validation.cis(metrics, n_boot=n_boot)) for c in candidates]
    cases = candidates[0].validation.n_cases
    return interval_chart(rows, path, title=f"next item on validation: {cases:,} predictions",
                          ylabel="mean over predictions (95% CI over sessions)")


class SessionServable:
    """A fitted session model with its item ids: what the API holds and asks per request."""

    def __init__(self, model: SessionRecommender, item_ids: np.ndarray) -> None:
        self.model = model
        self.item_ids = np.asarray(item_ids, dtype=np.int64)

    def recommend_ids(self, item_ids: Sequence[int], timestamps: Sequence[int] | None = None, k: int = 20
                      ) -> list[tuple[int, float]]:
        """(item id, score) best first after a session given as item ids, oldest first; unknown items
        are skipped, and the list may be shorter than k (the caller tops it up)."""
        position = lookup_index(self.item_ids, item_ids)
        known = position >= 0
        stamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)[known]
        items, scores = self.model.recommend(position[known], stamps, k)
        return [(int(item), float(score)) for item, score in zip(self.item_ids[items], scores, strict=True)]
