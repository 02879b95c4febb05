"""Neighbourhood models: item-kNN over what a visitor touched, and recent-item neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

from clickrec_platform.recommend.data import InteractionData, lookup_index
from clickrec_platform.recommend.metrics import NO_ITEM
from clickrec_platform.recommend.models.base import Recommender, _ImplicitModel, _quiet_implicit_conversions
from clickrec_platform.recommend.ranking import empty_lists, top_k_sparse, top_up


@dataclass(eq=False)
class ItemKNN(_ImplicitModel):
    """Items scored by their similarity to what the visitor touched, K neighbours per item."""

    name = "item_knn"
    min_informative_score = 0.0
    SIMILARITIES: ClassVar[tuple[str, ...]] = ("cosine", "bm25")

    similarity: str = "cosine"
    neighbours: int = 100
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.similarity not in self.SIMILARITIES:
            raise ValueError(f"similarity must be one of {self.SIMILARITIES}, not {self.similarity!r}")


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


@dataclass(eq=False)
class SessionKNN(Recommender):
    """Recent-item neighbours (the candidate `recent_item_knn`; it was called `session_knn`, but it
    never looks at neighbour sessions): score = sum over a visitor's last few items of item-item
    cosine similarity, the most recent counting most (weight recency_decay ** steps back)."""

    name = "recent_item_knn"

    session_items: int = 5
    recency_decay: float = 0.7
    neighbours: int = 100
    num_threads: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.recency_decay <= 1:
            raise ValueError("recency_decay must be in (0, 1]")


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
