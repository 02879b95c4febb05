"""Recommenders behind one small interface, all working in `InteractionData`'s index space.

Every model answers every visitor: rows of -1 (visitors unseen in training) get the popularity
fallback, and a list the model cannot fill (an item-kNN user whose items have no neighbours)
is topped up from the same fallback, so lists always hold k items when the catalogue allows.
Filled-in entries carry a NaN score: the model did not rank them.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

# Imported eagerly on purpose: `threadpool_limits` only reaches BLAS libraries already loaded
# when it is entered, and implicit loads its BLAS on import.
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from sklearn.decomposition import TruncatedSVD
from threadpoolctl import threadpool_limits

from clickrec_platform.recommend.data import InteractionData, lookup_index
from clickrec_platform.recommend.metrics import NO_ITEM
from clickrec_platform.recommend.ranking import (
    empty_lists,
    first_allowed,
    left_pack,
    pairs_in,
    top_k_sparse,
    top_up,
)

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

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The hyperparameters that define this model, for tracking and grid search."""

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


class MostPopular(Recommender):
    """The floor: the items most visitors touched recently, the same list for everyone."""

    name = "most_popular"

    def __init__(self, window_days: float | None = DEFAULT_POPULARITY_WINDOW_DAYS) -> None:
        self.window_days = window_days

    @property
    def params(self) -> dict[str, Any]:
        return {"window_days": self.window_days}

    def _fit(self, data: InteractionData) -> None:
        # The fallback every model shares is this model's ranking when the windows agree.
        self.popular, self.popular_scores = popularity_ranking(data, self.window_days)

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        if exclude_seen:
            items = first_allowed(self.popular, k, self.seen[users])
        else:
            items = np.broadcast_to(self._recommend_unknown(1, k)[0], (len(users), k)).copy()
        scores = np.where(items >= 0, self.popular_scores[np.maximum(items, 0)], np.nan).astype(np.float32)
        return items, scores


class RandomRecommender(Recommender):
    """The control: k random unseen items. Anything scoring near it has learnt nothing."""

    name = "random"
    fills_with_popular = False

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    @property
    def params(self) -> dict[str, Any]:
        return {"random_state": self.random_state}

    def _fit(self, data: InteractionData) -> None:
        self._rng = np.random.default_rng(self.random_state)

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        # Three times k draws leave room for repeats and seen items; a list still short is
        # left short rather than filled with anything but chance.
        draws = self._rng.integers(0, self.n_items, size=(len(users), 3 * k))
        invalid = _repeated_in_row(draws)
        if exclude_seen:
            invalid |= pairs_in(self.seen[users], np.arange(len(users))[:, None], draws)
        items, scores = left_pack(draws, self._rng.random(draws.shape), invalid)
        order = np.argsort(-np.nan_to_num(scores[:, :k], nan=-1.0), axis=1, kind="stable")
        return np.take_along_axis(items[:, :k], order, axis=1), np.take_along_axis(
            scores[:, :k], order, axis=1
        )

    def _recommend_unknown(self, n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._recommend_known(np.zeros(n_users, dtype=np.int64), k, exclude_seen=False)


def _repeated_in_row(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    repeated = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(repeated, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
    return repeated


class _ImplicitModel(Recommender):
    """A model whose ranking is an `implicit` model's (users x items input since 0.5)."""

    # Scores at or below this carry no evidence; item-kNN pads with 0-scored arbitrary items.
    min_informative_score: ClassVar[float] = _IMPLICIT_FILTERED

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


class ItemKNN(_ImplicitModel):
    """Items scored by their similarity to what the visitor touched, K neighbours per item."""

    name = "item_knn"
    min_informative_score = 0.0
    SIMILARITIES: ClassVar[tuple[str, ...]] = ("cosine", "bm25")

    def __init__(self, similarity: str = "cosine", neighbours: int = 100, num_threads: int = 1) -> None:
        if similarity not in self.SIMILARITIES:
            raise ValueError(f"similarity must be one of {self.SIMILARITIES}, not {similarity!r}")
        self.similarity = similarity
        self.neighbours = neighbours
        self.num_threads = num_threads

    @property
    def params(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "neighbours": self.neighbours}

    def _fit(self, data: InteractionData) -> None:
        kind = CosineRecommender if self.similarity == "cosine" else BM25Recommender
        self._model = kind(K=self.neighbours, num_threads=self.num_threads)
        with _quiet_implicit_conversions():
            self._model.fit(data.user_items, show_progress=False)

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        n = min(k, self.n_items)
        ids, scores = _item_knn_top(self._model, self.seen, users, n, exclude_seen)
        ids = np.where(scores > self.min_informative_score, ids, NO_ITEM)
        items, out_scores = empty_lists(len(users), k)
        items[:, :n], out_scores[:, :n] = ids, np.where(ids >= 0, scores, np.nan)
        return items, out_scores


def _item_knn_top(
    model: CosineRecommender | BM25Recommender, seen: sp.csr_matrix, users: np.ndarray, n: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """What `model.recommend(users, seen[users], N=n, ...)` returns, with float32 scores.

    implicit answers a batch one user at a time, slicing a one-row scipy matrix per user, which
    costs about twice its own scoring; this hands its scorer each row's CSR slice directly, so
    the lists and scores are the same ones (`test_item_knn_fast_path_matches_implicit`).
    """
    scorer = getattr(model, "scorer", None)
    if scorer is None or seen.indptr.dtype != np.int32 or seen.indices.dtype != np.int32:
        ids, scores = model.recommend(users, seen[users], N=n, filter_already_liked_items=exclude_seen)
        return np.atleast_2d(ids).astype(np.int64), np.atleast_2d(scores).astype(np.float32)
    ids = np.full((len(users), n), NO_ITEM, dtype=np.int64)
    scores = np.full((len(users), n), -np.finfo(np.float32).max, dtype=np.float32)  # as implicit pads
    indptr, indices, data = seen.indptr, seen.indices, seen.data
    for row, user in enumerate(users.tolist()):
        found, found_scores = scorer.recommend(
            indptr[user : user + 2], indices, data, K=n, remove_own_likes=exclude_seen
        )
        width = min(len(found), n)
        ids[row, :width] = found[:width]
        scores[row, :width] = found_scores[:width]
    return ids, scores


class ALS(_ImplicitModel):
    """Implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008), confidence = alpha x weight."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 10.0,  # best of 1..20 at 600k generated events (ndcg@20 0.139 vs 0.116 at 2)
        random_state: int = 42,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.random_state = random_state
        self.num_threads = num_threads

    @property
    def params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "alpha": self.alpha,
            "random_state": self.random_state,
        }

    def _fit(self, data: InteractionData) -> None:
        self._model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            alpha=self.alpha,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )
        self._model.fit(data.user_items, show_progress=False)


class BPR(_ImplicitModel):
    """Bayesian personalised ranking: pairwise SGD on (seen, unseen) item pairs; weights ignored."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
        num_threads: int = 1,  # more threads make SGD updates race, and results irreproducible
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    @property
    def params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "learning_rate": self.learning_rate,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "random_state": self.random_state,
        }

    def _fit(self, data: InteractionData) -> None:
        self._model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )
        self._model.fit(data.user_items, show_progress=False)


class PureSVD(_ImplicitModel):
    """PureSVD (Cremonesi, Koren and Turrin, RecSys 2010): scikit-learn's randomized truncated SVD
    of the visitor x item weights, R ~ U S Vt. A visitor's scores are r_u V Vt: the row is folded
    into the item factors, so the user factors are (R V) and no visitor needs one of its own.
    Served through implicit's dot-product scorer, as SparkALS is; similar items are the cosine of
    the item factors. Not among the default candidates: scoring every visitor against every item
    with 128 factors costs about twice ALS's evaluation, and ALS scores higher on our data (the
    150k-event test world: ndcg@20 0.148 against ALS's 0.178 and popularity's 0.069; 64 factors
    0.089, 256 factors 0.140)."""

    name = "pure_svd"

    def __init__(self, factors: int = 128, n_iter: int = 7, random_state: int = 42) -> None:
        self.factors = factors
        self.n_iter = n_iter
        self.random_state = random_state

    @property
    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "n_iter": self.n_iter, "random_state": self.random_state}

    def _fit(self, data: InteractionData) -> None:
        weights = data.user_items.astype(np.float32)
        # TruncatedSVD needs fewer components than the matrix's smaller side.
        rank = max(1, min(self.factors, min(weights.shape) - 1))
        svd = TruncatedSVD(rank, algorithm="randomized", n_iter=self.n_iter, random_state=self.random_state)
        svd.fit(weights)
        item_factors = np.ascontiguousarray(svd.components_.T, dtype=np.float32)
        self._model = AlternatingLeastSquares(factors=rank, num_threads=1)
        self._model.item_factors = item_factors
        self._model.user_factors = np.ascontiguousarray(weights @ item_factors, dtype=np.float32)


class SessionKNN(Recommender):
    """Recent-item neighbours (the candidate `recent_item_knn`; it was called `session_knn`, but it
    never looks at neighbour sessions): score = sum over a visitor's last few items of item-item
    cosine similarity, the most recent counting most (weight recency_decay ** steps back)."""

    name = "recent_item_knn"

    def __init__(
        self, session_items: int = 5, recency_decay: float = 0.7, neighbours: int = 100, num_threads: int = 1
    ) -> None:
        if not 0 < recency_decay <= 1:
            raise ValueError("recency_decay must be in (0, 1]")
        self.session_items = session_items
        self.recency_decay = recency_decay
        self.neighbours = neighbours
        self.num_threads = num_threads

    @property
    def params(self) -> dict[str, Any]:
        return {
            "session_items": self.session_items,
            "recency_decay": self.recency_decay,
            "neighbours": self.neighbours,
        }

    def _fit(self, data: InteractionData) -> None:
        knn = CosineRecommender(K=self.neighbours, num_threads=self.num_threads)
        with _quiet_implicit_conversions():
            knn.fit(data.user_items, show_progress=False)
        similarity = knn.similarity.tocsr().astype(np.float32)
        similarity.setdiag(0)  # an item is not its own recommendation
        similarity.eliminate_zeros()
        self.similarity = similarity
        self.recent_items = self._last_items_per_user(data)

    def _last_items_per_user(self, data: InteractionData) -> sp.csr_matrix:
        pairs = data.interactions
        order = np.lexsort((-pairs["last_ts_ns"].to_numpy(), pairs["user_index"].to_numpy()))
        user = pairs["user_index"].to_numpy()[order]
        item = pairs["item_index"].to_numpy()[order]
        steps_back = np.arange(len(user)) - np.searchsorted(user, user)
        recent = steps_back < self.session_items
        return sp.csr_matrix(
            (self.recency_decay ** steps_back[recent].astype(np.float32), (user[recent], item[recent])),
            shape=(data.n_users, data.n_items),
            dtype=np.float32,
        )

    def _recommend_known(
        self, users: np.ndarray, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.recent_items[users] @ self.similarity
        return top_k_sparse(scores, k, self.seen[users] if exclude_seen else None)

    def recommend_from_items(
        self, item_id_lists: Sequence[Sequence[int]], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """For live sessions: item *ids* in (oldest first), item *ids* out, (len(lists), k).

        Unknown ids are ignored; items in the session are not recommended back; a session
        with no known item gets popular items.
        """
        rows, columns, weights = [], [], []
        for row, item_ids in enumerate(item_id_lists):
            known = lookup_index(self.item_ids, list(item_ids)[::-1])
            known = pd.unique(known[known >= 0])[: self.session_items]
            rows.extend([row] * len(known))
            columns.extend(known.tolist())
            weights.extend((self.recency_decay ** np.arange(len(known))).tolist())
        session = sp.csr_matrix(
            (np.asarray(weights, dtype=np.float32), (rows, columns)), shape=(len(item_id_lists), self.n_items)
        )
        items, scores = top_k_sparse(session @ self.similarity, k, session)
        items = top_up(items, self.popular, session)
        ids = np.where(items >= 0, self.item_ids[np.maximum(items, 0)], NO_ITEM)
        return ids, scores

    def similar_items(
        self, item_indices: np.ndarray | Sequence[int], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(item_indices, dtype=np.int64)
        return top_k_sparse(self.similarity[query], k)


class SparkALS(_ImplicitModel):
    """Implicit ALS trained by Spark MLlib, the option that scales out with the cluster.

    Training runs in Spark; the learnt factors are then brought home and served through
    implicit's scorer, so ranking, filtering and pickling work exactly as for `ALS`. The
    session is not pickled with the model.
    """

    name = "spark_als"

    def __init__(
        self,
        spark: Any,
        rank: int = 64,
        reg_param: float = 0.05,
        max_iter: int = 10,
        alpha: float = 10.0,
        seed: int = 42,
    ) -> None:
        self.spark = spark
        self.rank = rank
        self.reg_param = reg_param
        self.max_iter = max_iter
        self.alpha = alpha
        self.seed = seed

    @property
    def params(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "reg_param": self.reg_param,
            "max_iter": self.max_iter,
            "alpha": self.alpha,
            "seed": self.seed,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["spark"] = None
        return state

    def _fit(self, data: InteractionData) -> None:
        from pyspark.ml.recommendation import ALS as SparkMLlibALS

        if self.spark is None:
            raise ValueError("SparkALS needs a SparkSession to fit")
        weights = data.user_items.tocoo()
        ratings = self.spark.createDataFrame(
            pd.DataFrame(
                {
                    "user": weights.row.astype(np.int32),
                    "item": weights.col.astype(np.int32),
                    "weight": weights.data.astype(np.float32),
                }
            )
        )
        fitted = SparkMLlibALS(
            rank=self.rank,
            maxIter=self.max_iter,
            regParam=self.reg_param,
            alpha=self.alpha,
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="weight",
            seed=self.seed,
            coldStartStrategy="drop",
        ).fit(ratings)
        self._model = AlternatingLeastSquares(factors=self.rank, num_threads=1)
        self._model.user_factors = _factor_array(fitted.userFactors.toPandas(), data.n_users, self.rank)
        self._model.item_factors = _factor_array(fitted.itemFactors.toPandas(), data.n_items, self.rank)


def _factor_array(factors: pd.DataFrame, n_rows: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as a dense array; ids Spark never saw stay zero."""
    out = np.zeros((n_rows, rank), dtype=np.float32)
    if len(factors):
        out[factors["id"].to_numpy()] = np.vstack(factors["features"].to_numpy()).astype(np.float32)
    return out
