"""The interface every session-based recommender shares, and the helpers they rank with.

A model is fitted on `Sessions` (item indices in the protocol's index space) and then asked for
the next item after a session prefix. Lists hold only items the model scored above zero, so
they may be shorter than k; session-rec's evaluation fills such lists with zero-score items in
arbitrary order, which can only add chance hits, so we leave them short and the comparison fair.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np

from clickrec_platform.recommend.session.protocol import NextItemCases, Sessions

NO_ITEM = -1  # pads a list shorter than k


class SessionRecommender(ABC):
    """fit on training sessions, then rank items to follow a session prefix.

    Each model is a dataclass whose fields are its parameters, declared with their defaults (checked in
    ``__post_init__``)."""

    name: ClassVar[str]
    fit_seconds: float | None = None

    def params(self) -> dict[str, Any]:
        """The constructor arguments that define this model (for tracking and tables)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}  # type: ignore[arg-type]

    @abstractmethod
    def _fit(self, sessions: Sessions) -> None: ...

    @abstractmethod
    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidate item indices and their scores (> 0) for one prefix, in any order."""

    def fit(self, sessions: Sessions) -> Self:
        started = time.perf_counter()
        self.n_items = sessions.n_items
        self.train_end_ms = int(sessions.timestamps.max()) if len(sessions.timestamps) else 0
        self._fit(sessions)
        self.fit_seconds = time.perf_counter() - started
        return self

    def recommend(
        self, items: Sequence[int] | np.ndarray, timestamps: Sequence[int] | np.ndarray | None = None,
        k: int = 20,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-k item indices after a prefix (oldest item first) and their scores, best first.

        Item indices outside the model's index space are ignored; timestamps (epoch ms, one per
        item) matter only to models with time decay, which otherwise take the end of training.
        """
        indices = np.asarray(items, dtype=np.int64)
        known = (indices >= 0) & (indices < self.n_items)
        stamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)[known]
        indices = indices[known]
        if len(indices) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        candidates, scores = self._score(indices, stamps)
        return top_k(candidates, scores, k)

    def recommend_many(self, cases: NextItemCases, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for every prefix of `cases`: (len(cases), k) items padded with -1, scores with NaN."""
        out_items = np.full((len(cases), k), NO_ITEM, dtype=np.int64)
        out_scores = np.full((len(cases), k), np.nan)
        items, stamps = cases.sessions.items, cases.sessions.timestamps
        for case, (start, end) in enumerate(zip(cases.starts.tolist(), cases.ends.tolist(), strict=True)):
            candidates, scores = self._score(items[start:end], stamps[start:end])
            top, top_scores = top_k(candidates, scores, k)
            out_items[case, : len(top)] = top
            out_scores[case, : len(top)] = top_scores
        return out_items, out_scores


def top_k(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best positive-score items, best first; equal scores rank the lower index first."""
    positive = scores > 0
    items, scores = items[positive], scores[positive]
    if len(items) > k:
        # Partition at the k-th best score, keeping every item tied with it, then sort only those.
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        near = scores >= threshold
        items, scores = items[near], scores[near]
    order = np.lexsort((items, -scores))[:k]
    return items[order], scores[order]


def last_positions(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct items of a sequence and the 1-based position of each one's last occurrence,
    the position session-rec's models give a repeated item."""
    reversed_unique, first_from_end = np.unique(items[::-1], return_index=True)
    return reversed_unique, len(items) - first_from_end


def gather_slices(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR entries of `rows` (concatenated, in row order) and their row's rank
    in `rows`, without a Python loop over rows."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    owner = np.repeat(np.arange(len(rows)), lengths)
    shift = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(len(owner)) + shift, owner
