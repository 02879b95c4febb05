"""Ranking metrics at k, per user, with bootstrap confidence intervals over users.

Definitions (binary relevance; `rel` = the user's relevant items, `hit_j` = 1 when the item at
rank j (1-based) is relevant; ranks past the list's end, marked -1, are never hits):

- precision@k = sum_{j<=k} hit_j / k  (k, not the list length: a short list is penalised)
- recall@k    = sum_{j<=k} hit_j / |rel|  (the `recommenders` library's convention, so a user
                with more relevant items than k cannot reach 1)
- hitrate@k   = 1 if any hit_j, j<=k, else 0
- mrr@k       = 1 / (rank of the first hit), 0 when no hit within k
- ndcg@k      = DCG@k / IDCG@k, DCG@k = sum_{j<=k} hit_j / log2(j + 1),
                IDCG@k = sum_{j<=min(k,|rel|)} 1 / log2(j + 1)
- map@k       = sum_{j<=k} precision@j * hit_j / min(k, |rel|)
- coverage@k  = distinct items in all top-k lists / catalogue size (a model-level number)

A user with no relevant item has every metric undefined (NaN): there is nothing to find, so
such a user says nothing about the ranking. The evaluator never scores them.
Recommendation lists are assumed free of duplicates, as every model here returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from clickrec_platform.recommend.resampling import resampled_sums

METRICS: tuple[str, ...] = ("recall", "precision", "ndcg", "map", "hitrate", "mrr")
NO_ITEM = -1  # pads a recommendation list that is shorter than k
DEFAULT_METRIC = "ndcg@20"  # what model selection and promotion compare


def metric_name(metric: str, k: int) -> str:
    return f"{metric}@{k}"


def relevance_from_lists(relevant: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Relevant item lists as the boolean users x items matrix the metrics take."""
    rows = np.repeat(np.arange(len(relevant)), [len(items) for items in relevant])
    columns = np.fromiter((item for items in relevant for item in items), dtype=np.int64, count=len(rows))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, columns)), shape=(len(relevant), n_items))
    matrix.sum_duplicates()
    return matrix


def hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """hits[u, j]: whether the item ranked j+1 for user u is relevant to u."""
    recommended = np.asarray(recommended, dtype=np.int64)
    if recommended.ndim != 2 or recommended.shape[0] != relevant.shape[0]:
        raise ValueError("recommended must be (users, k) with one row per row of relevant")
    relevant = relevant.tocsr()
    if not relevant.has_sorted_indices:
        relevant = relevant.sorted_indices()
    width = np.int64(relevant.shape[1])
    # Row-major CSR with sorted columns gives (row, column) keys already in ascending order.
    relevant_keys = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    relevant_keys = relevant_keys * width + relevant.indices
    if len(relevant_keys) == 0:
        return np.zeros(recommended.shape, dtype=bool)
    keys = np.arange(recommended.shape[0], dtype=np.int64)[:, None] * width + recommended
    position = np.minimum(np.searchsorted(relevant_keys, keys), len(relevant_keys) - 1)
    return (recommended >= 0) & (relevant_keys[position] == keys)


def _undefined_where_empty(values: npt.ArrayLike, n_relevant: np.ndarray) -> np.ndarray:
    return np.where(n_relevant > 0, values, np.nan)


def precision_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _undefined_where_empty(hit[:, :k].sum(axis=1) / k, n_relevant)


def recall_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty(hit[:, :k].sum(axis=1) / n_relevant, n_relevant)


def hitrate_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _undefined_where_empty(hit[:, :k].any(axis=1).astype(np.float64), n_relevant)


def mrr_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hit[:, :k]
    first_rank = top.argmax(axis=1) + 1
    return _undefined_where_empty(np.where(top.any(axis=1), 1.0 / first_rank, 0.0), n_relevant)


def ndcg_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hit[:, :k]
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    ideal_discount = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
    ideal = ideal_discount[np.minimum(n_relevant, k)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty((top * discount).sum(axis=1) / ideal, n_relevant)


def map_at_k(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hit[:, :k]
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty(
            (precision_at_rank * top).sum(axis=1) / np.minimum(n_relevant, k), n_relevant
        )


_PER_USER = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "hitrate": hitrate_at_k,
    "mrr": mrr_at_k,
}


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int] = (10, 20)
) -> dict[str, np.ndarray]:
    """Every metric at every k, per user: {"recall@10": array(users), ...}."""
    if max(ks) > np.asarray(recommended).shape[1]:
        raise ValueError(f"lists of {np.asarray(recommended).shape[1]} cannot be scored at k={max(ks)}")
    hit = hits(recommended, relevant)
    n_relevant = np.diff(relevant.tocsr().indptr)
    return {metric_name(metric, k): _PER_USER[metric](hit, n_relevant, k) for k in ks for metric in METRICS}


def catalogue_coverage(recommended: np.ndarray, n_catalogue_items: int, k: int | None = None) -> float:
    """Distinct items recommended in the top k (all ranks by default) / catalogue size."""
    top = np.asarray(recommended)[:, :k] if k is not None else np.asarray(recommended)
    return float(len(np.unique(top[top >= 0])) / n_catalogue_items) if n_catalogue_items else 0.0


@dataclass(frozen=True)
class ConfidenceInterval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def bootstrap_ci(
    per_user_values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> ConfidenceInterval:
    """The mean over users with a percentile bootstrap (1 - alpha) interval, users resampled."""
    return bootstrap_cis({"value": per_user_values}, n_boot=n_boot, alpha=alpha, seed=seed)["value"]


def bootstrap_cis(
    per_user: Mapping[str, np.ndarray], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, ConfidenceInterval]:
    """`bootstrap_ci` for several metrics of the same users, from the same resamples.

    Sharing resamples is cheaper, and with the same seed and users it makes the intervals of
    two models paired rather than independent.
    """
    names = list(per_user)
    values = np.column_stack([np.asarray(per_user[name], dtype=np.float64) for name in names])
    if not np.isfinite(values).all():
        raise ValueError("per-user values must be finite; drop users with no relevant items first")
    n_users = values.shape[0]
    if n_users == 0:
        return {name: ConfidenceInterval(np.nan, np.nan, np.nan) for name in names}
    means = _bootstrap_means(values, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    mean = values.mean(axis=0)
    return {
        name: ConfidenceInterval(float(mean[i]), float(low[i]), float(high[i]))
        for i, name in enumerate(names)
    }


def paired_difference(
    challenger: np.ndarray, reference: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> ConfidenceInterval:
    """challenger - reference, two models' per-user values on the same users (same order), with a
    percentile interval from resampling the users once for both: above 0 means better beyond noise."""
    challenger, reference = np.asarray(challenger, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if challenger.shape != reference.shape:
        raise ValueError("a paired comparison needs both models' values for the same users")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    return bootstrap_ci(challenger - reference, n_boot=n_boot, alpha=1 - confidence, seed=seed)


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, metrics) means of users drawn with replacement (the draws `resampling` shares)."""
    return resampled_sums(values, n_boot, seed) / values.shape[0]
