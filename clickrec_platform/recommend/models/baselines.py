"""The floor and the control: recent popularity, and random lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clickrec_platform.recommend.data import InteractionData
from clickrec_platform.recommend.models.base import (
    DEFAULT_POPULARITY_WINDOW_DAYS,
    Recommender,
    popularity_ranking,
)
from clickrec_platform.recommend.ranking import first_allowed, left_pack, pairs_in


@dataclass(eq=False)
class MostPopular(Recommender):
    """The floor: the items most visitors touched recently, the same list for everyone."""

    name = "most_popular"

    window_days: float | None = DEFAULT_POPULARITY_WINDOW_DAYS


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


@dataclass(eq=False)
class RandomRecommender(Recommender):
    """The control: k random unseen items. Anything scoring near it has learnt nothing."""

    name = "random"
    fills_with_popular = False

    random_state: int = 0


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
