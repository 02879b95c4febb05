"""Next-item evaluation: every prefix of every test session, the model's top k for the next item.

As session-rec's `evaluation/evaluation.py` (`evaluate_sessions`) and `metrics/accuracy.py` with
one relevant item per case, where r is the target's 1-based rank in the top-k list:
HR@k = [r <= k], MRR@k = 1/r if r <= k else 0, NDCG@k = 1/log2(r + 1) if r <= k else 0.
A metric is the mean over all cases (prefixes), as published figures are.

Cases of one session are not independent, so intervals resample *sessions* (a cluster
bootstrap): each resample's value is sum over drawn sessions of their case values / their cases,
the same ratio the point estimate is. `paired_difference` resamples the same sessions for two
models, which is what a promotion gate needs ("challenger - champion interval above 0").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clickrec_platform.recommend.metrics import ConfidenceInterval
from clickrec_platform.recommend.resampling import resampled_sums
from clickrec_platform.recommend.session.base import SessionRecommender
from clickrec_platform.recommend.session.protocol import NextItemCases, Sessions, next_item_cases

METRICS: tuple[str, ...] = ("hitrate", "mrr", "ndcg")
DEFAULT_KS: tuple[int, ...] = (10, 20)
DEFAULT_CHUNK = 2_000  # cases per recommend_many call: the granularity of progress reports


@dataclass(frozen=True)
class NextItemEvaluation:
    model: str
    ranks: np.ndarray  # per case: 1-based rank of the target in the list, 0 when not in it
    case_session: np.ndarray  # per case: index of its session in the evaluated collection
    n_sessions: int
    list_length: int  # k the model was asked for; metrics exist for k <= list_length
    predict_seconds: float

    @property
    def n_cases(self) -> int:
        return len(self.ranks)

    def per_case(self, metric: str) -> np.ndarray:
        """One value per case for "hitrate@20", "mrr@10", "ndcg@20", ..."""
        name, k = _parse(metric)
        if k > self.list_length:
            raise ValueError(f"lists of {self.list_length} cannot be scored at k={k}")
        found = (self.ranks > 0) & (self.ranks <= k)
        rank = np.where(found, self.ranks, 1).astype(np.float64)
        if name == "hitrate":
            value = np.ones(len(rank))
        elif name == "mrr":
            value = 1.0 / rank
        else:
            value = 1.0 / np.log2(rank + 1.0)
        return np.where(found, value, 0.0)

    def value(self, metric: str) -> float:
        return float(self.per_case(metric).mean()) if self.n_cases else float("nan")

    def per_session(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Each session's sum of case values and its number of cases."""
        sums = np.bincount(self.case_session, weights=self.per_case(metric), minlength=self.n_sessions)
        return sums, np.bincount(self.case_session, minlength=self.n_sessions).astype(np.float64)

    def ci(
        self, metric: str, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
    ) -> ConfidenceInterval:
        """The mean over cases with a percentile interval from resampling sessions."""
        sums, counts = self.per_session(metric)
        return _interval(self.value(metric), _resampled_ratios(sums, counts, n_boot, seed), confidence)

    def cis(
        self, metrics: Sequence[str], confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
    ) -> dict[str, ConfidenceInterval]:
        """`ci` for several metrics from the same resamples of sessions (the same intervals as one
        `ci` call each with this seed, for a sixth of the draws when six are asked)."""
        per_session = [self.per_session(metric) for metric in metrics]
        sums = np.column_stack([sums for sums, _ in per_session])
        resampled = _resampled_ratios(sums, per_session[0][1], n_boot, seed)
        return {metric: _interval(self.value(metric), resampled[:, i], confidence) for i, metric in enumerate(metrics)}

    def metrics(self, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
        return {f"{name}@{k}": self.value(f"{name}@{k}") for k in ks for name in METRICS}

    def flat(
        self, prefix: str = "session", ks: Sequence[int] = DEFAULT_KS, confidence: float = 0.95,
        n_boot: int = 1000, seed: int = 0,
    ) -> dict[str, float]:
        """Tracker-safe names ([A-Za-z0-9_]): session_hitrate_at_20, ..._ci_low, ..._ci_high."""
        out = {f"{prefix}_cases": float(self.n_cases), f"{prefix}_sessions": float(self.n_sessions),
               f"{prefix}_predict_seconds": self.predict_seconds}
        for metric, interval in self.cis(list(self.metrics(ks)), confidence, n_boot, seed).items():
            key = f"{prefix}_{metric.replace('@', '_at_')}"
            out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"] = interval.mean, interval.low, interval.high
        return out


def evaluate_next_item(
    model: SessionRecommender,
    sessions: Sessions | NextItemCases,
    k: int = 20,
    chunk: int = DEFAULT_CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> NextItemEvaluation:
    """Rank the next item after every prefix of `sessions` (or given cases) with a fitted model.

    `on_progress(n)` is called after each chunk of n cases (for a progress bar).
    """
    cases = sessions if isinstance(sessions, NextItemCases) else next_item_cases(sessions)
    ranks = np.zeros(len(cases), dtype=np.int64)
    started = time.perf_counter()
    for first in range(0, len(cases), chunk):
        part = cases.take(slice(first, first + chunk))
        recommended, _ = model.recommend_many(part, k)
        ranks[first : first + len(part)] = target_ranks(recommended, part.targets)
        if on_progress is not None:
            on_progress(len(part))
    return NextItemEvaluation(
        model=model.name,
        ranks=ranks,
        case_session=cases.session,
        n_sessions=len(cases.sessions),
        list_length=k,
        predict_seconds=time.perf_counter() - started,
    )


def target_ranks(recommended: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based position of each row's target in its list, 0 when absent (lists hold no repeats)."""
    match = np.asarray(recommended) == np.asarray(targets)[:, None]
    return np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)


def paired_difference(
    challenger: NextItemEvaluation,
    champion: NextItemEvaluation,
    metric: str = "hitrate@20",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> ConfidenceInterval:
    """challenger - champion on the same cases, with an interval from resampling sessions once
    for both: the interval lies above 0 when the challenger is better beyond resampling noise."""
    if not (
        np.array_equal(challenger.case_session, champion.case_session)
        and challenger.n_sessions == champion.n_sessions
    ):
        raise ValueError("a paired comparison needs both models evaluated on the same cases")
    sums_a, counts = challenger.per_session(metric)
    sums_b, _ = champion.per_session(metric)
    resampled = _resampled_ratios(sums_a - sums_b, counts, n_boot, seed)
    return _interval(challenger.value(metric) - champion.value(metric), resampled, confidence)


def _parse(metric: str) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {metric!r}: expected one of {METRICS} '@' k")
    return name, int(k)


def _resampled_ratios(sums: np.ndarray, counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """sum(sums) / sum(counts) over `n_boot` resamples of the sessions (drawn with replacement; the
    draws `resampling` shares). `sums` may have a column per metric: the result then has one too,
    every column from the same resamples."""
    if len(sums) == 0:
        raise ValueError("no sessions to resample")
    totals = resampled_sums(counts, n_boot, seed)
    return resampled_sums(sums, n_boot, seed) / totals.reshape((n_boot,) + (1,) * (np.ndim(sums) - 1))


def _interval(mean: float, resampled: np.ndarray, confidence: float) -> ConfidenceInterval:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return ConfidenceInterval(float(mean), float(low), float(high))
