"""One training: fit every candidate on the train split, evaluate on validation, refit on train +
validation and score once on test, log each to MLflow, then let the gate decide whether the best
challenger becomes the champion.

The gate compares like with like, paired: the champion's configuration (always among the candidates,
see `with_champion_config`) is retrained in this same training, so challenger and champion are scored
on the same validation visitors and the bootstrap can resample those visitors once for both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from clickrec_platform.recommend.candidates import BASELINE, CONTROL, RENAMED, build_model
from clickrec_platform.recommend.data import InteractionData
from clickrec_platform.recommend.evaluate import (
    Evaluation,
    FinalEvaluation,
    evaluate,
    evaluate_on_test,
    grid_search,
    paired_user_difference,
    refit_data,
)
from clickrec_platform.recommend.gate import (
    BASELINE_REFERENCE,
    CHAMPION_REFERENCE,
    GateDecision,
    Reference,
    decide,
)
from clickrec_platform.recommend.models import Recommender
from clickrec_platform.recommend.report import comparison_chart, comparison_table
from clickrec_platform.recommend.tracking import (
    CHALLENGER,
    CHAMPION,
    AliasedVersion,
    LoggedRun,
    aliased_version,
    gate_metrics,
    log_model_run,
    set_alias,
)

log = logging.getLogger("clickrec.training")
A = TypeVar("A")
B = TypeVar("B")

CANDIDATE_TAG = "clickrec.candidate"
TRAINING_TAG = "clickrec.training_id"
GATE_TAG = "clickrec.gate"


@dataclass
class Candidate:
    name: str
    model: Recommender
    evaluation: Evaluation  # fitted on train, scored on validation: what chooses
    run: LoggedRun | None = None
    test_evaluation: Evaluation | None = None  # refitted on train + validation, scored on test: reported only

    @property
    def metrics(self) -> dict[str, float]:
        return gate_metrics(self.evaluation.flat("val"))

    @property
    def logged_run(self) -> LoggedRun:
        """Its run, for a candidate the training logged (`train_candidates` logs each one)."""
        if self.run is None:
            raise ValueError(f"candidate {self.name} has no logged run")
        return self.run


@dataclass
class Training:
    training_id: str
    candidates: list[Candidate]
    data_versions: dict[str, str]
    split_dates: dict[str, str]
    report_markdown: str
    chart_path: Path
    seconds: float

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)


def train_candidates(splits: pd.DataFrame, items: pd.DataFrame | None,
                     names: Sequence[str | tuple[str, Mapping[str, str]]], *,
                     training_id: str, experiment: str, registered_model: str, tracking_uri: str,
                     data_versions: Mapping[str, object], artifacts_dir: Path,
                     grids: Mapping[str, Mapping[str, Sequence[object]]] | None = None,
                     metric: str = "ndcg@20", half_life_days: float | None = None,
                     threads: int = 1, progress: Callable[[str], None] = log.info) -> Training:
    """Fit, evaluate and log every candidate (a name, or a name with params); every model but the
    random control is registered. A candidate named in `grids` (and given no params) first has its
    grid searched on validation by `metric`, and goes on with the best point. Each is then refitted
    on train + validation and scored once on test (`test_*` metrics), which chooses nothing.
    `half_life_days` decays the training weights (an interaction that old counts half).

    With `threads` > 1, fits that do not depend on each other (a candidate's validation fit and its
    test refit, the points of a grid) run side by side, each model still on one thread: the models
    and scores are the ones a single thread gets, in less time where the cores are free."""
    started = time.perf_counter()
    data = InteractionData.from_splits(splits, items=items, half_life_days=half_life_days)
    final_data = refit_data(splits, half_life_days=half_life_days, items=items)  # one for every candidate
    candidates = []
    # BLAS limits are process-wide: each fit and bootstrap product asks for one thread, but a thread
    # leaving its limit restores what it found, which could give the other thread's product two
    # threads (and other last bits). Held once around the pool, every product runs on one thread.
    with (threadpool_limits(1, "blas") if threads > 1 else nullcontext(),
          ThreadPoolExecutor(max_workers=threads) if threads > 1 else nullcontext() as pool):
        for entry in names:
            name, params = (entry, None) if isinstance(entry, str) else entry
            if params is None and grids and grids.get(name):
                search = grid_search(lambda _name=name, **point: build_model(_name, point), grids[name], data,
                                     metric, executor=pool)
                params = search.best_params
                progress(f"{name}: grid of {len(search.trials)} points, best {params} "
                         f"({metric} {search.best_score:.4f})")
            chosen = dict(build_model(name, params).params)

            def validate(_name=name, _params=params) -> tuple[Recommender, Evaluation]:
                model = build_model(_name, _params).fit(data)
                return model, evaluate(model, data, "validation", label=_name)

            def test(_name=name, _params=chosen) -> FinalEvaluation:
                return evaluate_on_test(lambda: build_model(_name, _params), splits, data=final_data, label=_name)

            (model, evaluation), final = _side_by_side(pool, validate, test)
            progress(f"{name}: fit {model.fit_seconds:.1f}s, evaluated in {evaluation.seconds:.1f}s, "
                     f"ndcg@20 {evaluation.value('ndcg@20'):.4f}; test ndcg@20 {final.evaluation.value('ndcg@20'):.4f}")
            candidates.append(Candidate(name, model, evaluation, test_evaluation=final.evaluation))
    evaluations = [c.evaluation for c in candidates]
    report = comparison_table(evaluations, {c.name: c.model.fit_seconds or 0.0 for c in candidates})
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    report_path = artifacts_dir / "model_comparison.md"
    report_path.write_text(report)
    chart_path = comparison_chart(evaluations, artifacts_dir / "model_comparison.png")
    versions = {name: str(value) for name, value in data_versions.items()}
    for candidate in candidates:
        candidate.run = log_model_run(
            experiment, candidate.model, candidate.evaluation, data_versions=versions,
            split_dates=data.split_dates(), training_seconds=candidate.model.fit_seconds or 0.0,
            tracking_uri=tracking_uri, artifacts=[report_path, chart_path],
            registered_model_name=None if candidate.name == CONTROL else registered_model,
            test_evaluation=candidate.test_evaluation,
            tags={CANDIDATE_TAG: candidate.name, TRAINING_TAG: training_id}, run_name=candidate.name)
    return Training(training_id, candidates, versions, data.split_dates(), report, chart_path,
                    time.perf_counter() - started)


def _side_by_side(pool: Executor | None, first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Both results; computed together on `pool`, or one after the other without one."""
    if pool is None:
        return first(), second()
    later = pool.submit(second)
    return pool.submit(first).result(), later.result()


@dataclass(frozen=True)
class GateOutcome:
    promoted: bool
    reason: str
    challenger: str  # the best candidate's name
    challenger_version: str | None
    champion_version: str | None  # after the decision
    champion_metrics: dict[str, float] | None  # on this training's evaluation, when comparable
    baseline_metrics: dict[str, float]

    def champion_beats_baseline(self, metric: str) -> bool:
        return (self.champion_metrics is not None and
                self.champion_metrics.get(metric, float("-inf")) > self.baseline_metrics[metric])


def run_gate(training: Training, registered_model: str, tracking_uri: str, metric: str = "ndcg@20",
             min_relative_lift: float = 0.0, confidence: float = 0.95, n_boot: int = 1000) -> GateOutcome:
    """Promote the best challenger (on validation `metric`) to `champion` only if the paired bootstrap
    interval of its difference with the current champion and with the popularity baseline, on this
    training's validation visitors, lies above 0 at `confidence`; otherwise it becomes `challenger` and
    the champion stays. The reason is tagged on the challenger's run and model version."""
    baseline = training.candidate(BASELINE)
    contenders = [c for c in training.candidates if c.name not in (BASELINE, CONTROL)]
    if not contenders:
        raise ValueError("no candidate besides the baseline and the control: nothing to promote")
    best = max(contenders, key=lambda c: c.metrics[metric])
    current = aliased_version(registered_model, CHAMPION, tracking_uri)
    champion, note = _comparable_champion(current, training, tracking_uri)

    def reference(other: Candidate) -> Reference:
        return Reference(other.metrics[metric], paired_user_difference(best.evaluation, other.evaluation, metric,
                                                                       confidence, n_boot))

    references = {BASELINE_REFERENCE: reference(baseline)}
    if champion is not None:
        references[CHAMPION_REFERENCE] = reference(champion)
    decision: GateDecision = decide(best.metrics[metric], references, metric, confidence, min_relative_lift)
    reason = decision.reason + (f" ({note})" if note else "")
    best_run = best.run
    version = best_run.registered_version if best_run else None
    client = MlflowClient(tracking_uri)
    if best_run is not None and version is not None:
        set_alias(registered_model, version, CHAMPION if decision.promote else CHALLENGER, tracking_uri)
        client.set_model_version_tag(registered_model, version, GATE_TAG, reason[:5000])
        client.set_tag(best_run.run_id, GATE_TAG, reason[:5000])
    champion_metrics: dict[str, float] | None
    if decision.promote:
        champion_version, champion_metrics = version, best.metrics
    else:
        champion_version = current.version if current else None
        champion_metrics = champion.metrics if champion is not None else None
    return GateOutcome(decision.promote, reason, best.name, version, champion_version, champion_metrics,
                       baseline.metrics)


def _comparable_champion(current: AliasedVersion | None, training: Training, tracking_uri: str
                         ) -> tuple[Candidate | None, str]:
    """The champion's configuration as retrained in this training (the only way to compare it on the
    same visitors, paired), or None with a note saying why not."""
    if current is None:
        return None, ""
    run = MlflowClient(tracking_uri).get_run(current.run_id)
    name = run.data.tags.get(CANDIDATE_TAG, "")  # "" (no tag) matches no candidate, as None did
    same_config = [c for c in training.candidates if RENAMED.get(name, name) == c.name and c.run is not None
                   and {k: str(v) for k, v in c.model.params.items()}.items() <= run.data.params.items()]
    if same_config:
        return same_config[0], f"champion v{current.version} ({name}): its configuration retrained here stands in for it"
    return None, f"champion v{current.version} is not comparable on this data and its configuration was not trained"


def with_champion_config(names: Sequence[str], registered_model: str, tracking_uri: str
                         ) -> list[str | tuple[str, dict[str, str]]]:
    """The candidates plus the current champion's exact configuration (its parameters as logged), so
    the gate can always compare with the champion on the same data, whatever grids choose."""
    found = champion_model(registered_model, tracking_uri)
    return list(names) if found is None else [*names, (found[0], found[1])]


def champion_model(registered_model: str, tracking_uri: str) -> tuple[str, dict[str, str], str, str] | None:
    """(candidate name, params, version, run id) of the current champion, or None."""
    current = aliased_version(registered_model, CHAMPION, tracking_uri)
    if current is None:
        return None
    run = MlflowClient(tracking_uri).get_run(current.run_id)
    params = {k: v for k, v in run.data.params.items() if not k.startswith(("data_version_", "split_"))}
    return run.data.tags[CANDIDATE_TAG], params, current.version, current.run_id

