"""Session-based nearest neighbours: SKNN, V-SKNN and STAN on one core (`neighbours`).

- SKNN: Jannach & Ludewig, "When recurrent neural networks meet the neighborhood for session-based
  recommendation", RecSys 2017. Cosine over binary item sets, sum of neighbour similarities.
- V-SKNN: Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", UMUAI 2018.
  The current session as a vector whose items are weighted by position (recent heavier), each
  neighbour's contribution decayed by how far back the most recent item it shares lies, and an
  optional IDF boost of the recommended item.
- STAN: Garg et al., "Sequence and time aware neighborhood for session-based recommendations",
  SIGIR 2019. lambda_spw: position decay in the current session; lambda_snh: recency of the
  neighbour session (days); lambda_inh: distance of the item from the shared item in the neighbour.

Defaults are those of session-rec's classes (rn5l/session-rec `algorithms/knn/`), where `k` has
none (its docstring says 100). Two deliberate departures from that code, both in V-SKNN's
"linear" weights: session-rec gives position weight 0 to every item past the 10th of the session
(`if i <= 10`, i counted from the start) and negative weights to steps > 10; we use
max(0, 1 - 0.1 * steps back), the decay the paper describes. Sessions of > 10 items are rare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clickrec_platform.recommend.session.base import SessionRecommender, last_positions
from clickrec_platform.recommend.session.neighbours import NeighbourIndex, sum_by_item
from clickrec_platform.recommend.session.protocol import MS_PER_DAY, Sessions

# Weight of the item at 1-based position p of a current session of length n (V-SKNN `weighting`).
POSITION_WEIGHTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "same": lambda p, n: np.ones(len(p)),
    "div": lambda p, n: p / n,
    "linear": lambda p, n: np.maximum(0.0, 1.0 - 0.1 * (n - p)),
    "log": lambda p, n: 1.0 / np.log10(n - p + 1.7),
    "quadratic": lambda p, n: (p / n) ** 2,
}
# Decay of a neighbour whose most recent shared item is `steps` back, 1 = the last item
# (V-SKNN `weighting_score`).
STEP_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": lambda steps: np.ones(len(steps)),
    "div": lambda steps: 1.0 / steps,
    "linear": lambda steps: np.maximum(0.0, 1.0 - 0.1 * steps),
    "log": lambda steps: 1.0 / np.log10(steps + 1.7),
    "quadratic": lambda steps: 1.0 / steps**2,
}


@dataclass(eq=False)
class _NeighbourModel(SessionRecommender):
    k: int = 100
    sample_size: int = 1000

    def __post_init__(self) -> None:
        if self.k < 1 or self.sample_size < 0:
            raise ValueError("k must be >= 1 and sample_size >= 0 (0: every candidate)")

    def _fit(self, sessions: Sessions) -> None:
        self.index = NeighbourIndex(sessions)


@dataclass(eq=False)
class SKNN(_NeighbourModel):
    """Session-kNN: sim(s, n) = |s ∩ n| / sqrt(|s| |n|) over distinct items (or Jaccard).

    session-rec's `cosine` divides by sqrt(|n|) and multiplies by sqrt(|s|) (operator precedence);
    that scales every score of one query alike, so the ranking is the true cosine's.
    """

    name = "sknn"

    similarity: str = "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.similarity not in ("cosine", "jaccard"):
            raise ValueError("similarity must be 'cosine' or 'jaccard'")

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        query = np.unique(items)
        candidates = self.index.candidates(query, self.sample_size)
        shared = candidates.sum_per_candidate(np.ones(len(candidates.pair_candidate)))
        sizes = self.index.n_distinct[candidates.sessions]
        if self.similarity == "cosine":
            similarity = shared / np.sqrt(len(query) * sizes)
        else:
            similarity = shared / (len(query) + sizes - shared)
        nearest = self.index.nearest(candidates, similarity, self.k)
        neighbour_items, owner, _ = self.index.neighbour_items(candidates.sessions[nearest])
        return sum_by_item(neighbour_items, similarity[nearest][owner])


@dataclass(eq=False)
class VSKNN(_NeighbourModel):
    """Vector session-kNN: position-weighted current session, step-decayed neighbours, IDF boost.

    `similarity="vec"`: sum of the shared items' position weights / distinct items of the session;
    `"cosine"`: that sum / (norm of the weight vector * sqrt(|n|)). `idf_weighting` w multiplies
    an item's score by 1 + w * log(sessions / events of the item); 0 turns it off.
    """

    name = "vsknn"

    similarity: str = "vec"
    weighting: str = "div"
    weighting_score: str = "div"
    idf_weighting: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.similarity not in ("vec", "cosine"):
            raise ValueError("similarity must be 'vec' or 'cosine'")
        if self.weighting not in POSITION_WEIGHTS or self.weighting_score not in STEP_WEIGHTS:
            raise ValueError(f"weighting and weighting_score must be among {sorted(POSITION_WEIGHTS)}")
        self.idf_weighting = float(self.idf_weighting)

    def _fit(self, sessions: Sessions) -> None:
        super()._fit(sessions)
        events_per_item = np.bincount(sessions.items, minlength=sessions.n_items)
        with np.errstate(divide="ignore"):
            self.idf = np.where(events_per_item > 0, np.log(len(sessions) / np.maximum(events_per_item, 1)), 0.0)

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        query, position = last_positions(items)
        weight = POSITION_WEIGHTS[self.weighting](position.astype(np.float64), len(items))
        candidates = self.index.candidates(query, self.sample_size)
        shared = candidates.sum_per_candidate(weight[candidates.pair_query])
        if self.similarity == "vec":
            similarity = shared / len(query)
        else:
            similarity = shared / (np.sqrt((weight**2).sum()) * np.sqrt(self.index.n_distinct[candidates.sessions]))
        nearest = self.index.nearest(candidates, similarity, self.k)
        latest_shared = candidates.max_per_candidate(position[candidates.pair_query])[nearest]
        decay = STEP_WEIGHTS[self.weighting_score]((len(items) - latest_shared + 1).astype(np.float64))
        neighbour_items, owner, _ = self.index.neighbour_items(candidates.sessions[nearest])
        contribution = (similarity[nearest] * decay)[owner]
        if self.idf_weighting:
            contribution = contribution * (1.0 + self.idf_weighting * self.idf[neighbour_items])
        return sum_by_item(neighbour_items, contribution)


@dataclass(eq=False)
class STAN(_NeighbourModel):
    """Sequence and Time Aware Neighbourhood.

    Current item at position p of n weighs exp((p - n) / lambda_spw); similarity is the weighted
    cosine times exp(-(now - end of neighbour) / lambda_snh days); an item at position q of a
    neighbour whose last shared item sits at q* scores similarity * exp(-|q - q*| / lambda_inh).
    A lambda of None switches its decay off; "now" is the prefix's last timestamp (session-rec
    passes the time of the event being predicted: minutes apart, against lambda_snh in days).
    """

    name = "stan"

    sample_size: int = 5000
    lambda_spw: float | None = 1.02
    lambda_snh: float | None = 5.0
    lambda_inh: float | None = 2.05

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_spw", "lambda_snh", "lambda_inh"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None")

    def _score(self, items: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        query, position = last_positions(items)
        if self.lambda_spw is None:
            weight = np.ones(len(query))
        else:
            weight = np.exp((position - len(items)) / self.lambda_spw)
        candidates = self.index.candidates(query, self.sample_size)
        shared = candidates.sum_per_candidate(weight[candidates.pair_query])
        similarity = shared / (np.sqrt((weight**2).sum()) * np.sqrt(self.index.n_distinct[candidates.sessions]))
        if self.lambda_snh is not None:
            now = self.train_end_ms if timestamps is None or len(timestamps) == 0 else int(timestamps[-1])
            age = now - self.index.end_ms[candidates.sessions]
            similarity = similarity * np.exp(-age / (self.lambda_snh * MS_PER_DAY))
        nearest = self.index.nearest(candidates, similarity, self.k)
        neighbour_items, owner, item_position = self.index.neighbour_items(candidates.sessions[nearest])
        contribution = similarity[nearest][owner]
        if self.lambda_inh is not None:
            shared_position = candidates.max_per_candidate(candidates.pair_position)[nearest]
            distance = np.abs(item_position - shared_position[owner])
            contribution = contribution * np.exp(-distance / self.lambda_inh)
        return sum_by_item(neighbour_items, contribution)
