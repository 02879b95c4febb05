"""Bootstrap resamples as draw counts, drawn once and shared by every model scored on the same units.

A resample of n units (visitors, sessions) drawn with replacement is a row of counts (how often each
unit was drawn), so a resampled mean of per-unit values is one matrix product. Every model of a
training is scored on the same units with the same seed, which is what makes their intervals paired;
it also means their resamples are the same rows. Drawing them (the random numbers and the counting)
costs several times the products, so the counts are kept, in a small byte-bounded cache, as the
narrowest unsigned integers that hold them, and each consumer multiplies chunks of them as float64.

The draws are exactly those the evaluators made before the cache: `default_rng(seed)`, chunks of
at most ~20M draws, each chunk `integers(0, n, size=(rows, n))`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

DRAWS_PER_CHUNK = 20_000_000  # bounds the memory of one chunk of draws (160 MB of int64)
CACHE_BYTES = 1 << 30  # counts kept across models; least recently used go first

_cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
_lock = threading.Lock()


def chunk_rows(n_units: int, n_boot: int) -> int:
    """Resamples per chunk of draws."""
    return max(1, min(n_boot, DRAWS_PER_CHUNK // n_units))


def resample_counts(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) read-only counts: row b holds how often each unit was drawn in resample b."""
    if n_units <= 0:
        raise ValueError("no units to resample")
    key = (n_units, n_boot, seed)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    counts = _draw_counts(n_units, n_boot, seed)
    with _lock:
        _cache[key] = counts
        _cache.move_to_end(key)
        while len(_cache) > 1 and sum(value.nbytes for value in _cache.values()) > CACHE_BYTES:
            _cache.popitem(last=False)
    return counts


def resampled_sums(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Per resample, the sum of `values` (one per unit, or units x columns) over the drawn units:
    (n_boot,) or (n_boot, columns), in float64."""
    values = np.asarray(values, dtype=np.float64)
    counts = resample_counts(len(values), n_boot, seed)
    out = np.empty((n_boot, *values.shape[1:]))
    # One BLAS thread: a product split over threads, or run beside another thread's, may round its
    # last bits differently, and two models' intervals must come from the same arithmetic.
    with threadpool_limits(1, "blas"):
        for first, block in _blocks(counts, len(values)):
            out[first : first + len(block)] = block.astype(np.float64) @ values
    return out


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _blocks(counts: np.ndarray, n_units: int) -> Iterator[tuple[int, np.ndarray]]:
    rows = chunk_rows(n_units, len(counts))
    for first in range(0, len(counts), rows):
        yield first, counts[first : first + rows]


def _draw_counts(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = chunk_rows(n_units, n_boot)
    counts = np.empty((n_boot, n_units), dtype=np.uint8)
    for first in range(0, n_boot, rows):
        size = min(rows, n_boot - first)
        draws = rng.integers(0, n_units, size=(size, n_units))
        draws += np.arange(size, dtype=np.int64)[:, None] * n_units
        chunk = np.bincount(draws.ravel(), minlength=size * n_units).reshape(size, n_units)
        if chunk.max() > np.iinfo(counts.dtype).max:  # never seen in practice: about 10 at most
            counts = counts.astype(np.uint32)
        counts[first : first + size] = chunk
    counts.setflags(write=False)
    return counts
