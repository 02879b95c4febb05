"""The interface every visitor-level model implements, the popularity fallback they share, and the
base of the models `implicit` scores."""

from __future__ import annotations

import dataclasses
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

# Imported eagerly on purpose: `threadpool_limits` only reaches BLAS libraries already loaded
# when it is entered, and implicit loads its BLAS on import.
import implicit.cpu.als  # noqa: F401
import numpy as np
from threadpoolctl import threadpool_limits

from clickrec_platform.recommend.data import InteractionData
from clickrec_platform.recommend.metrics import NO_ITEM
from clickrec_platform.recommend.ranking import empty_lists, left_pack, pairs_in, top_up

DEFAULT_BATCH_USERS = 10_000
# Real catalogues drift (stock, seasons, promotions), so recent popularity is the safer default.
# The generator plants no drift: there the window barely matters (ndcg@20 0.0536 with 7 days vs
# 0.0541 all-time, CIs overlapping, 600k events); `window_days` is in the default grid.
DEFAULT_POPULARITY_WINDOW_DAYS = 7.0
_NS_PER_DAY = 86_400 * 10**9
# implicit marks filtered-out slots with -FLT_MAX rather than dropping them.
_IMPLICIT_FILTERED = -1e38


def popularity_ranking(
    data: InteractionData, window_days: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All catalogue items, most popular first, and each one's score (visitors in the window).

    Popularity counts distinct visitors, not summed weights, so one compulsive visitor cannot
    make an item popular. Items outside the window follow, ranked by all-time visitors.
    """
    item_index = data.interactions["item_index"].to_numpy()
    all_time = np.bincount(item_index, minlength=data.n_items)
    if window_days is None:
        recent = all_time
    else:
        since = data.train_end.value - int(window_days * _NS_PER_DAY)
        in_window = data.interactions["last_ts_ns"].to_numpy() >= since
        recent = np.bincount(item_index[in_window], minlength=data.n_items)
    ranking = np.lexsort((np.arange(data.n_items), -all_time, -recent))
    return ranking, recent.astype(np.float32)


class Recommender(ABC):
    """fit on training interactions, then rank catalogue items for visitors (by row index)."""

    name: ClassVar[str]
    fallback_window_days: ClassVar[float | None] = DEFAULT_POPULARITY_WINDOW_DAYS
    # Whether short lists are topped up with popular items; off for controls that must stay pure.
    fills_with_popular: ClassVar[bool] = True

    fit_seconds: float | None = None

    # __init__ arguments that are not hyper-parameters: they change how fast, not what is learnt.
    untracked: ClassVar[frozenset[str]] = frozenset({"num_threads", "spark"})

    def arguments(self) -> dict[str, Any]:
        """What the model was made with: its fields (each model is a dataclass whose fields are its
        parameters, declared with their defaults)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}  # type: ignore[arg-type]

    @property
    def params(self) -> dict[str, Any]:
        """The hyper-parameters that define this model, for tracking and grid search: its arguments but
        the `untracked` ones."""
        return {name: value for name, value in self.arguments().items() if name not in self.untracked}

    @abstractmethod
    def _fit(self, data: InteractionData) -> None: ...

    @abstractmethod
    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores), each (len(users), k), for training rows; entries may be invalid
        (-1, or seen items when the model cannot filter them): `recommend` cleans up."""

    def fit(self, data: InteractionData) -> Self:
        started = time.perf_counter()
        self.user_ids = data.user_ids
        self.item_ids = data.item_ids
        self.seen = data.user_items
        self.popular, self.popular_scores = popularity_ranking(data, self.fallback_window_days)
        with threadpool_limits(1, "blas"):
            self._fit(data)
        self.fit_seconds = time.perf_counter() - started
        return self

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def recommend(
        self,
        user_indices: np.ndarray | Sequence[int],
        k: int = 10,
        exclude_seen: bool = True,
        batch_size: int = DEFAULT_BATCH_USERS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores, each (len(user_indices), k); -1 rows are cold-start.

        Users are scored `batch_size` at a time, so memory does not grow with the user count.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        items, scores = empty_lists(len(users), k)
        known = np.flatnonzero(users >= 0)
        with threadpool_limits(1, "blas"):
            for start in range(0, len(known), batch_size):
                rows = known[start : start + batch_size]
                batch = users[rows]
                batch_items, batch_scores = self._recommend_known(batch, k, exclude_seen)
                items[rows], scores[rows] = self._complete(batch, batch_items, batch_scores, k, exclude_seen)
        cold = np.flatnonzero(users < 0)
        if len(cold):
            items[cold], scores[cold] = self._recommend_unknown(len(cold), k)
        return items, scores

    def similar_items(
        self, item_indices: np.ndarray | Sequence[int], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items most like each given item, itself excluded."""
        raise NotImplementedError(f"{self.name} has no notion of item similarity")

    def _recommend_unknown(self, n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        items, scores = empty_lists(n_users, k)
        top = self.popular[:k]
        items[:, : len(top)] = top
        scores[:, : len(top)] = self.popular_scores[top]
        return items, scores

    def _complete(
        self, users: np.ndarray, items: np.ndarray, scores: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop invalid and (if asked) seen entries, then top up short lists from the fallback."""
        invalid = (items < 0) | ~np.isfinite(scores)
        if exclude_seen:
            invalid |= pairs_in(self.seen[users], np.arange(len(users))[:, None], items)
        items, scores = left_pack(items, scores, invalid)
        if self.fills_with_popular:
            items = top_up(items, self.popular, self.seen[users] if exclude_seen else None)
        return items, scores


class _ImplicitModel(Recommender):
    """A model whose ranking is an `implicit` model's (users x items input since 0.5)."""

    # Scores at or below this carry no evidence; item-kNN pads with 0-scored arbitrary items.
    min_informative_score: ClassVar[float] = _IMPLICIT_FILTERED
    _model: Any  # the fitted `implicit` model (an untyped library), set by each subclass's fit

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        n = min(k, self.n_items)
        ids, scores = self._model.recommend(
            users, self.seen[users], N=n, filter_already_liked_items=exclude_seen
        )
        ids, scores = np.atleast_2d(ids).astype(np.int64), np.atleast_2d(scores).astype(np.float32)
        ids = np.where(scores > self.min_informative_score, ids, NO_ITEM)
        items, out_scores = empty_lists(len(users), k)
        items[:, :n], out_scores[:, :n] = ids, np.where(ids >= 0, scores, np.nan)
        return items, out_scores

    def similar_items(
        self, item_indices: np.ndarray | Sequence[int], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(item_indices, dtype=np.int64)
        n = min(k + 1, self.n_items)
        with threadpool_limits(1, "blas"):
            ids, scores = self._model.similar_items(query, N=n)
        ids, scores = np.atleast_2d(ids).astype(np.int64), np.atleast_2d(scores).astype(np.float32)
        invalid = (ids == query[:, None]) | (ids < 0) | (scores <= self.min_informative_score)
        ids, scores = left_pack(ids, scores, invalid)
        items, out_scores = empty_lists(len(query), k)
        width = min(k, ids.shape[1])
        items[:, :width], out_scores[:, :width] = ids[:, :width], scores[:, :width]
        return items, out_scores


@contextmanager
def _quiet_implicit_conversions() -> Iterator[None]:
    """implicit's cosine weighting builds a COO matrix and then warns about converting it back;
    the warning is about implicit's own step, not our input, so it is noise in every fit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        yield
