"""The neighbour-session core that SKNN, V-SKNN and STAN share.

All three do the same three steps (session-rec `algorithms/knn/sknn.py`, `vsknn.py`, `stan.py`):
1. candidates: the training sessions that contain any item of the current session, of which only
   the `sample_size` most recent (by their last event) are kept;
2. neighbours: the `k` candidates most similar to the current session;
3. scores: each item of a neighbour gets the neighbour's similarity, times model-specific decays.

Here training sessions are renumbered by the time of their last event (rank 0 = oldest), so "most
recent" is "highest rank", and two sparse indexes serve every query: item -> sessions (ranks
ascending) and session -> distinct items, each entry with the 1-based position of the item's last
occurrence in the session (where session-rec's STAN reads positions). A query gathers slices of
these arrays with numpy; nothing loops in Python over sessions or items.

Ties: session-rec sorts neighbours by similarity with Python's stable sort over a `set`, so equal
similarities fall in hash order; we keep the more recent session, a reproducible choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clickrec_platform.recommend.session.base import gather_slices
from clickrec_platform.recommend.session.protocol import Sessions


@dataclass(frozen=True)
class Candidates:
    """Candidate sessions of one query and the (candidate, query item) pairs they share."""

    sessions: np.ndarray  # session ranks, ascending (oldest first)
    pair_candidate: np.ndarray  # index into `sessions`, one per shared (session, query item) pair
    pair_query: np.ndarray  # index into the query's distinct items
    pair_position: np.ndarray  # 1-based last position of that shared item in the candidate session

    def __len__(self) -> int:
        return len(self.sessions)

    def sum_per_candidate(self, pair_values: np.ndarray) -> np.ndarray:
        return np.bincount(self.pair_candidate, weights=pair_values, minlength=len(self.sessions))

    def max_per_candidate(self, pair_values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.sessions), dtype=np.asarray(pair_values).dtype)
        np.maximum.at(out, self.pair_candidate, pair_values)
        return out


class NeighbourIndex:
    """Training sessions indexed for neighbour queries (see the module docstring)."""

    def __init__(self, sessions: Sessions) -> None:
        n = len(sessions)
        end_ms = sessions.end_ms
        by_recency = np.argsort(end_ms, kind="stable")
        rank_of_session = np.empty(n, dtype=np.int64)
        rank_of_session[by_recency] = np.arange(n)
        self.end_ms = end_ms[by_recency]
        self.n_sessions = n
        self.n_items = sessions.n_items

        rank = rank_of_session[sessions.session_of_event]
        position = np.arange(len(sessions.items)) - np.repeat(sessions.offsets[:-1], sessions.lengths) + 1
        item = sessions.items
        order = np.lexsort((position, item, rank))
        rank, item, position = rank[order], item[order], position[order]
        # The last row of each (session, item) run carries the item's last position.
        last = np.r_[(rank[1:] != rank[:-1]) | (item[1:] != item[:-1]), True]
        rank, item, position = rank[last], item[last], position[last]

        self.session_indptr = np.r_[0, np.cumsum(np.bincount(rank, minlength=n))].astype(np.int64)
        self.session_items = item
        self.session_positions = position
        self.n_distinct = np.diff(self.session_indptr)

        by_item = np.lexsort((rank, item))
        self.item_indptr = np.r_[0, np.cumsum(np.bincount(item, minlength=self.n_items))].astype(np.int64)
        self.item_sessions = rank[by_item]
        self.item_positions = position[by_item]

    def candidates(self, query_items: np.ndarray, sample_size: int) -> Candidates:
        """Sessions sharing an item with `query_items` (distinct, in range), the `sample_size`
        most recent of them (all when 0)."""
        flat, owner = gather_slices(self.item_indptr, query_items)
        ranks = self.item_sessions[flat]
        sessions, candidate = np.unique(ranks, return_inverse=True)
        positions = self.item_positions[flat]
        if 0 < sample_size < len(sessions):
            cut = len(sessions) - sample_size
            keep = candidate >= cut
            sessions, candidate = sessions[cut:], candidate[keep] - cut
            owner, positions = owner[keep], positions[keep]
        return Candidates(sessions, candidate, owner, positions)

    def nearest(self, candidates: Candidates, similarity: np.ndarray, k: int) -> np.ndarray:
        """Indices into `candidates` of the k most similar with similarity > 0, most similar
        first, the more recent first among equals."""
        newest_first = np.arange(len(candidates) - 1, -1, -1)
        order = newest_first[np.argsort(-similarity[newest_first], kind="stable")]
        order = order[similarity[order] > 0]
        return order[:k]

    def neighbour_items(self, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct items of the given session ranks, concatenated: (item, owner, position),
        owner indexing `sessions`, position the item's 1-based last position in its session."""
        flat, owner = gather_slices(self.session_indptr, sessions)
        return self.session_items[flat], owner, self.session_positions[flat]


def sum_by_item(items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items and the sum of their weights."""
    distinct, inverse = np.unique(items, return_inverse=True)
    return distinct, np.bincount(inverse, weights=weights, minlength=len(distinct))
