"""Sequential rules (SR): "b was seen within a few steps after a", weighted by the distance.

Kamehkhosh, Jannach & Ludewig, "A comparison of frequent pattern techniques and a deep learning
method for session-based recommendation", TempRec workshop at RecSys 2017; as session-rec's
`algorithms/baselines/sr.py` does it: in every training session, each item b and each item a at
most `steps` positions before it add weight(distance) to the rule a -> b (repeats count, a == b
included); each a keeps only its `pruning` strongest rules (a fraction of them if < 1, all if 0);
a prefix is scored by the rules of its last item alone.

The rules are one sparse matrix built from `steps` shifted copies of the event array; pruning is
one sort. Equal weights at the pruning cut keep the rule seen first in training, as session-rec's
`Counter.most_common` keeps insertion order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from clickrec_platform.recommend.session.base import NO_ITEM, SessionRecommender
from clickrec_platform.recommend.session.protocol import NextItemCases, Sessions

# Weight of a rule a -> b when b comes `distance` steps after a (session-rec's names).
DISTANCE_WEIGHTS: dict[str, Callable[[int], float]] = {
    "same": lambda d: 1.0,
    "div": lambda d: 1.0 / d,
    "linear": lambda d: max(0.0, 1.0 - 0.1 * d),
    "log": lambda d: 1.0 / np.log10(d + 1.7),
    "quadratic": lambda d: 1.0 / d**2,
}


@dataclass(eq=False)
class SequentialRules(SessionRecommender):
    name = "sr"

    steps: int = 10
    weighting: str = "div"
    pruning: float = 20

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.weighting not in DISTANCE_WEIGHTS:
            raise ValueError(f"weighting must be one of {sorted(DISTANCE_WEIGHTS)}")
        if self.pruning < 0:
            raise ValueError("pruning must be >= 0 (0 keeps every rule)")

    def _fit(self, sessions: Sessions) -> None:
        session = sessions.session_of_event
        items = sessions.items
        sources, targets, weights, first_seen = [], [], [], []
        for distance in range(1, self.steps + 1):
            later = np.flatnonzero(session[distance:] == session[:-distance]) + distance
            sources.append(items[later - distance])
            targets.append(items[later])
            weights.append(np.full(len(later), DISTANCE_WEIGHTS[self.weighting](distance)))
            # session-rec visits events in order and, for each, distances 1..steps.
            first_seen.append(later * self.steps + distance - 1)
        source, target = np.concatenate(sources), np.concatenate(targets)
        weight, seen = np.concatenate(weights), np.concatenate(first_seen)

        key = source * sessions.n_items + target
        distinct, inverse = np.unique(key, return_inverse=True)
        total = np.bincount(inverse, weights=weight, minlength=len(distinct))
        earliest = np.full(len(distinct), np.iinfo(np.int64).max)
        np.minimum.at(earliest, inverse, seen)
        rule_source, rule_target = distinct // sessions.n_items, distinct % sessions.n_items

        order = np.lexsort((earliest, -total, rule_source))
        rule_source, rule_target, total = rule_source[order], rule_target[order], total[order]
        rank = np.arange(len(order)) - np.searchsorted(rule_source, rule_source)
        if self.pruning > 0:
            per_source = np.bincount(rule_source, minlength=sessions.n_items)[rule_source]
            if self.pruning < 1:
                keep_count = per_source - (per_source * self.pruning).astype(np.int64)
            else:
                keep_count = np.full(len(rank), int(self.pruning))
            kept = rank < keep_count
            rule_source, rule_target, total = rule_source[kept], rule_target[kept], total[kept]
        # Ranked as every model ranks (score, then lower item index), zero-weight rules out.
        order = np.lexsort((rule_target, -total, rule_source))
        order = order[total[order] > 0]
        rule_source, rule_target, total = rule_source[order], rule_target[order], total[order]
        # CSR-shaped arrays (source -> targets), each row strongest first: its first k are its top k.
        self.rule_indptr = np.r_[0, np.cumsum(np.bincount(rule_source, minlength=sessions.n_items))]
        self.rule_targets = rule_target
        self.rule_weights = total

    def rules(self) -> sp.csr_matrix:
        """The kept rules as an items x items matrix (source row, target column)."""
        n = len(self.rule_indptr) - 1
        return sp.csr_matrix((self.rule_weights, self.rule_targets, self.rule_indptr), shape=(n, n))

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        last = int(items[-1])
        start, end = self.rule_indptr[last], self.rule_indptr[last + 1]
        return self.rule_targets[start:end], self.rule_weights[start:end]

    def recommend_many(self, cases: NextItemCases, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Only the last item matters: one gather of each last item's first k rules."""
        last = cases.sessions.items[cases.ends - 1]
        starts = self.rule_indptr[last]
        lengths = np.minimum(self.rule_indptr[last + 1] - starts, k)
        out_items = np.full((len(cases), k), NO_ITEM, dtype=np.int64)
        out_scores = np.full((len(cases), k), np.nan)
        row = np.repeat(np.arange(len(cases)), lengths)
        column = np.arange(len(row)) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        source = starts[row] + column
        out_items[row, column] = self.rule_targets[source]
        out_scores[row, column] = self.rule_weights[source]
        return out_items, out_scores
