"""Floors and yardsticks for the session models: popularity, and `recent_item_knn`.

`Popularity` is session-rec's `algorithms/baselines/pop.py`: training events per item, the same
list for every prefix. `RecentItemKNN` puts `recommend.models.SessionKNN` (item-item cosine over
visitors' histories, summed over the last few items) under this interface, so the issue's
comparison runs on the same prefixes: its item similarities come from a visitor x item matrix of
the training sessions (visitor = the real visitor), and it is asked with the session prefix
through `SessionKNN.recommend_from_items`, which never recommends an item of the prefix back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clickrec_platform.recommend.session.base import NO_ITEM, SessionRecommender
from clickrec_platform.recommend.session.protocol import NextItemCases, Sessions


@dataclass(eq=False)
class Popularity(SessionRecommender):
    name = "popularity"

    def _fit(self, sessions: Sessions) -> None:
        self.counts = np.bincount(sessions.items, minlength=sessions.n_items).astype(np.float64)
        self.ranking = np.lexsort((np.arange(sessions.n_items), -self.counts))

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.n_items), self.counts

    def recommend_many(self, cases: NextItemCases, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        top = self.ranking[:k][self.counts[self.ranking[:k]] > 0]
        items = np.full((len(cases), k), NO_ITEM, dtype=np.int64)
        scores = np.full((len(cases), k), np.nan)
        items[:, : len(top)] = top
        scores[:, : len(top)] = self.counts[top]
        return items, scores


@dataclass(eq=False)
class RecentItemKNN(SessionRecommender):
    """The user-level candidate `recent_item_knn` (`recommend.models.SessionKNN`, once called
    `session_knn`) on session prefixes."""

    name = "recent_item_knn"

    session_items: int = 5
    recency_decay: float = 0.7
    neighbours: int = 100

    def _fit(self, sessions: Sessions) -> None:
        # Imported here: implicit and the interaction code are heavy and only this adapter needs them.
        from clickrec_platform.recommend.data import InteractionData
        from clickrec_platform.recommend.models import SessionKNN

        events = sessions.to_frame()
        pairs = events.groupby(["visitor_id", "item_index"], as_index=False).agg(
            weight=("ts", "size"), first_ts=("ts", "min"), last_ts=("ts", "max")
        )
        splits = pd.DataFrame(
            {
                "visitor_id": pairs["visitor_id"],
                "item_id": pairs["item_index"],  # the model's item ids are our indices
                "split": "train",
                "weight": pairs["weight"].astype(np.float64),
                "first_ts": pd.to_datetime(pairs["first_ts"], unit="ms", utc=True),
                "last_ts": pd.to_datetime(pairs["last_ts"], unit="ms", utc=True),
            }
        )
        self.model = SessionKNN(self.session_items, self.recency_decay, self.neighbours)
        self.model.fit(InteractionData.from_splits(splits))

    def recommend(
        self, items: Sequence[int] | np.ndarray, timestamps: Sequence[int] | np.ndarray | None = None,
        k: int = 20,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `recommend_many` ranks: popular items (NaN score) top up a short list."""
        ids, scores = self.model.recommend_from_items([list(items)], k=k)
        keep = ids[0] != NO_ITEM
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float64)

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.recommend(items, k=self.n_items)
        return ids, scores

    def recommend_many(self, cases: NextItemCases, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        prefixes = [cases.sessions.items[start:end].tolist() for start, end in zip(cases.starts, cases.ends, strict=True)]
        ids, scores = self.model.recommend_from_items(prefixes, k=k)
        # Its lists are topped up with popular items (NaN score); they count, as they would in use.
        return ids.astype(np.int64), scores.astype(np.float64)
