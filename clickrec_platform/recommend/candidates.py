"""The candidate models a training run fits: names → constructors, from settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clickrec_platform.recommend.models import (
    ALS,
    BPR,
    ItemKNN,
    MostPopular,
    PureSVD,
    RandomRecommender,
    Recommender,
    SessionKNN,
)

BASELINE = "most_popular"  # the floor every model must clear
CONTROL = "random"  # must score near zero: a check on the evaluation itself

_CONSTRUCTORS: dict[str, Callable[..., Recommender]] = {
    "most_popular": MostPopular,
    "random": RandomRecommender,
    "item_knn_cosine": lambda **p: ItemKNN(**{"similarity": "cosine", **p}),
    "item_knn_bm25": lambda **p: ItemKNN(**{"similarity": "bm25", **p}),
    "als": ALS,
    "bpr": BPR,
    "pure_svd": PureSVD,
    "recent_item_knn": SessionKNN,
}
# Names a registered champion may still carry: its configuration is rebuilt under the new name.
RENAMED = {"session_knn": "recent_item_knn"}
CANDIDATES = tuple(_CONSTRUCTORS)
# The candidates that take `num_threads` (1 by default: implicit's own threads fight BLAS on 2 cores).
_THREADED = frozenset({"item_knn_cosine", "item_knn_bm25", "als", "bpr", "recent_item_knn"})


def build_model(name: str, params: Mapping[str, Any] | None = None, threads: int = 1) -> Recommender:
    """A fresh, unfitted model of candidate `name` with `params` (as logged: strings are parsed)."""
    name = RENAMED.get(name, name)
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown model {name!r}; candidates: {', '.join(CANDIDATES)}")
    kwargs = {key: parse_param(value) for key, value in (params or {}).items()}
    if threads != 1 and name in _THREADED:
        kwargs["num_threads"] = threads
    return _CONSTRUCTORS[name](**kwargs)


def parse_param(value: Any) -> Any:
    """Params come back from MLflow as strings: '64' → 64, '0.05' → 0.05, 'None' → None."""
    if not isinstance(value, str):
        return value
    if value == "None":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
