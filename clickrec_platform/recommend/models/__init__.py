"""Recommenders behind one small interface, all working in `InteractionData`'s index space.

Every model answers every visitor: rows of -1 (visitors unseen in training) get the popularity
fallback, and a list the model cannot fill (an item-kNN user whose items have no neighbours)
is topped up from the same fallback, so lists always hold k items when the catalogue allows.
Filled-in entries carry a NaN score: the model did not rank them.

The interface, the popularity fallback and implicit's base are in `base`; one module per family:
`baselines` (popularity, random), `neighbourhood` (item-kNN, recent-item kNN), `factorisation`
(ALS, BPR, PureSVD), `distributed` (Spark MLlib ALS). Every name is importable from here, which
is also where pickled models registered before the split look their classes up.
"""

from clickrec_platform.recommend.models.base import (
    DEFAULT_BATCH_USERS,
    DEFAULT_POPULARITY_WINDOW_DAYS,
    Recommender,
    popularity_ranking,
)
from clickrec_platform.recommend.models.baselines import MostPopular, RandomRecommender
from clickrec_platform.recommend.models.distributed import SparkALS
from clickrec_platform.recommend.models.factorisation import ALS, BPR, PureSVD
from clickrec_platform.recommend.models.neighbourhood import ItemKNN, SessionKNN, _item_knn_top

__all__ = [
    "ALS",
    "BPR",
    "DEFAULT_BATCH_USERS",
    "DEFAULT_POPULARITY_WINDOW_DAYS",
    "ItemKNN",
    "MostPopular",
    "PureSVD",
    "RandomRecommender",
    "Recommender",
    "SessionKNN",
    "SparkALS",
    "_item_knn_top",
    "popularity_ranking",
]
