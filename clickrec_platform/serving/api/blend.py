"""How `/recommendations` mixes the champion model's list with what the visitor just did.

Two ranked sources are fused by reciprocal rank (each item scores ``weight / (RANK_OFFSET + rank)``
per list it appears in, summed):

- the model's list (batch, published from the lake): rank r scores ``MODEL_WEIGHT / (RANK_OFFSET + r)``;
- the session: the items similar to each of the visitor's most recent items (live, from
  ``user_recent_items``, which the stream job updates within seconds of an event). An item ranked r
  among the neighbours of the visitor's p-th most recent item scores
  ``SESSION_WEIGHT * SESSION_DECAY**(p-1) / (RANK_OFFSET + r)`` (session-kNN with recency decay),
  summed over the recent items it is similar to.

The session weighs more than the model: it is minutes old where the model is hours old, and what a
visitor looks at now is the best single predictor of what they look at next. Items in both lists
add up, so agreement rises to the top. Reciprocal ranks need no calibration between the models'
scores, which are on different scales.

When the personal candidates fill fewer than ``k`` places (an unknown visitor, or one whose items
were all excluded as seen), the list is topped up from trending items, then popular ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RANK_OFFSET = 5.0
MODEL_WEIGHT = 1.0
SESSION_WEIGHT = 1.5
SESSION_DECAY = 0.7
SESSION_SEEDS = 5  # most recent items whose neighbours are used
_SEED_WEIGHTS = [SESSION_WEIGHT * SESSION_DECAY**position for position in range(SESSION_SEEDS)]
_SOURCES = {(True, False): "model", (False, True): "session", (True, True): "model+session"}


@dataclass(frozen=True, slots=True)
class Provenance:
    model_name: str | None
    model_version: str | None
    run_id: str | None


@dataclass(frozen=True, slots=True)
class ModelRow:
    item_id: int
    rank: int
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class SimilarRow:
    item_id: int  # the neighbour
    seed_position: int  # 1 = the visitor's most recent item
    rank: int  # rank among that item's neighbours
    provenance: Provenance | None  # None when the session model was dropped while the request ran


@dataclass(frozen=True, slots=True)
class FallbackRow:
    item_id: int
    source: str  # "trending" or "popular"
    provenance: Provenance | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: int
    score: float
    source: str  # "model", "session", "model+session", "trending", "popular"


@dataclass(frozen=True, slots=True)
class Blend:
    items: list[Recommendation]
    source: str  # "blended", "model", "session", "trending", "popular", "none"
    provenance: Provenance | None


def blend(model: Sequence[ModelRow], similar: Sequence[SimilarRow], seen: Iterable[int], k: int,
          exclude_seen: bool = True) -> Blend:
    """The top ``k`` of the fused model and session lists (``seen``: the visitor's recent items,
    newest first; excluded when ``exclude_seen``). Fewer than ``k`` when the sources run short."""
    excluded = set(seen) if exclude_seen else set()
    scores: dict[int, float] = {}
    from_model: set[int] = set()
    from_session: set[int] = set()
    for row in model:
        if row.item_id not in excluded:
            scores[row.item_id] = scores.get(row.item_id, 0.0) + MODEL_WEIGHT / (RANK_OFFSET + row.rank)
            from_model.add(row.item_id)
    for neighbour in similar:
        if neighbour.item_id not in excluded and neighbour.seed_position <= SESSION_SEEDS:
            weight = _SEED_WEIGHTS[neighbour.seed_position - 1]
            scores[neighbour.item_id] = scores.get(neighbour.item_id, 0.0) + weight / (RANK_OFFSET + neighbour.rank)
            from_session.add(neighbour.item_id)
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
    items = [Recommendation(item, round(score, 6), _SOURCES[(item in from_model, item in from_session)])
             for item, score in ranked]
    used_model = any(item.source != "session" for item in items)
    used_session = any(item.source != "model" for item in items)
    source = ("blended" if used_model and used_session else "model" if used_model
              else "session" if used_session else "none")
    provenance = model[0].provenance if used_model else similar[0].provenance if used_session else None
    return Blend(items, source, provenance)


def top_up(result: Blend, fallback: Sequence[FallbackRow], seen: Iterable[int], k: int,
           exclude_seen: bool = True) -> Blend:
    """Fill the places ``result`` left empty from ``fallback`` (trending first, then popular), skipping
    items already listed and, when ``exclude_seen``, seen ones. Fallback items score below every
    personal one, in their order."""
    if len(result.items) >= k:
        return result
    taken = {item.item_id for item in result.items} | (set(seen) if exclude_seen else set())
    items = list(result.items)
    added: list[FallbackRow] = []
    for row in fallback:
        if len(items) >= k:
            break
        if row.item_id in taken:
            continue
        taken.add(row.item_id)
        added.append(row)
        items.append(Recommendation(row.item_id, 0.0, row.source))
    if result.source != "none" or not added:
        return Blend(items, result.source, result.provenance)
    first = added[0]
    return Blend(items, first.source, first.provenance)
