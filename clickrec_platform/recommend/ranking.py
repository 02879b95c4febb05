"""Top-k selection shared by the models: vectorised over a batch of users, never per user.

Lists are left-packed: valid item indices first, `NO_ITEM` (-1) padding after, scores NaN where
padded. Exclusions (items already seen, items already listed) are sparse users x items matrices
whose nonzero entries mark what may not be recommended.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from clickrec_platform.recommend.metrics import NO_ITEM

# Dense candidate blocks (rows x candidates) are cut to about this many cells (160 MB of int64).
_BLOCK_CELLS = 20_000_000


def empty_lists(n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_users, k), NO_ITEM, dtype=np.int64), np.full((n_users, k), np.nan, dtype=np.float32)


def pairs_in(matrix: sp.csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Whether each (rows[i], columns[i]) is a stored entry of `matrix`; any shapes, broadcast."""
    rows, columns = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64))
    matrix = matrix.tocsr()
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    width = np.int64(matrix.shape[1])
    stored = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * width
    stored += matrix.indices
    if len(stored) == 0:
        return np.zeros(rows.shape, dtype=bool)
    keys = rows * width + columns
    position = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
    return (columns >= 0) & (stored[position] == keys)


def listed_items(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """The items already in each list, as an exclusion matrix."""
    rows, columns = np.nonzero(items >= 0)
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, items[rows, columns])), shape=(items.shape[0], n_items)
    )


def left_pack(items: np.ndarray, scores: np.ndarray, invalid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop invalid entries and close the gaps, keeping each list's order."""
    order = np.argsort(invalid, axis=1, kind="stable")
    items = np.take_along_axis(np.where(invalid, NO_ITEM, items), order, axis=1)
    scores = np.take_along_axis(np.where(invalid, np.nan, scores).astype(np.float32), order, axis=1)
    return items.astype(np.int64), scores


def first_allowed(ranking: np.ndarray, k: int, excluded: sp.csr_matrix) -> np.ndarray:
    """Per row of `excluded`, the first k items of one global `ranking` not excluded there.

    Only the first k + (most exclusions in a row) ranked items can be needed, so that prefix is
    all that is ever compared.
    """
    n_rows = excluded.shape[0]
    out = np.full((n_rows, k), NO_ITEM, dtype=np.int64)
    if n_rows == 0 or len(ranking) == 0:
        return out
    excluded = excluded.tocsr()
    most_excluded = int(np.diff(excluded.indptr).max())
    depth = min(len(ranking), k + most_excluded)
    candidates = np.asarray(ranking[:depth], dtype=np.int64)
    block = max(1, _BLOCK_CELLS // depth)
    for start in range(0, n_rows, block):
        rows = np.arange(start, min(start + block, n_rows))
        allowed = ~pairs_in(excluded, rows[:, None], candidates[None, :])
        row, column = np.nonzero(allowed)
        rank = np.cumsum(allowed, axis=1)[row, column] - 1
        keep = rank < k
        out[rows[row[keep]], rank[keep]] = candidates[column[keep]]
    return out


def top_k_sparse(
    scores: sp.csr_matrix, k: int, excluded: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k highest stored positive scores, skipping excluded items."""
    scores = scores.tocoo()
    keep = scores.data > 0
    if excluded is not None:
        keep &= ~pairs_in(excluded, scores.row, scores.col)
    row, column, value = scores.row[keep], scores.col[keep], scores.data[keep]
    order = np.lexsort((column, -value, row))  # by row, best first, ties by item index
    row, column, value = row[order], column[order], value[order]
    row_start = np.searchsorted(row, np.arange(scores.shape[0]))
    rank = np.arange(len(row)) - row_start[row]
    within = rank < k
    items, out_scores = empty_lists(scores.shape[0], k)
    items[row[within], rank[within]] = column[within]
    out_scores[row[within], rank[within]] = value[within]
    return items, out_scores


def top_up(items: np.ndarray, ranking: np.ndarray, excluded: sp.csr_matrix | None = None) -> np.ndarray:
    """Fill each left-packed list's empty tail from a global `ranking`, skipping items already
    listed and those in `excluded` (rows as in `items`)."""
    items = items.copy()
    k = items.shape[1]
    short = np.flatnonzero(items[:, -1] < 0)
    if len(short) == 0:
        return items
    n_items = len(ranking)
    blocked = listed_items(items[short], n_items)
    if excluded is not None:
        blocked = (blocked + excluded[short].astype(bool)).tocsr()
    fill = first_allowed(ranking, k, blocked)
    have = (items[short] >= 0).sum(axis=1, keepdims=True)
    slot = np.arange(k)[None, :]
    from_fill = np.take_along_axis(fill, np.clip(slot - have, 0, k - 1), axis=1)
    items[short] = np.where(slot >= have, from_fill, items[short])
    return items
