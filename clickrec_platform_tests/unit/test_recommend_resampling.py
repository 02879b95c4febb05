"""Shared bootstrap draws: the cached counts are the draws the evaluators made one chunk at a time
before they were shared, so every interval stays what it was; the cache is bounded."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec_platform.recommend import resampling
from clickrec_platform.recommend.metrics import bootstrap_cis
from clickrec_platform.recommend.resampling import resample_counts, resampled_sums


def _counts_drawn_per_chunk(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """The draws as `metrics._bootstrap_means` made them before the cache (its code, kept as the reference)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 20_000_000 // n_units))
    out = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_units, size=(size, n_units))
        offsets = np.arange(size, dtype=np.int64)[:, None] * n_units
        out.append(np.bincount((draws + offsets).ravel(), minlength=size * n_units).reshape(size, n_units))
    return np.concatenate(out)


@pytest.fixture(autouse=True)
def empty_cache():
    resampling.clear_cache()
    yield
    resampling.clear_cache()


@pytest.mark.parametrize(("n_units", "n_boot"), [(1, 5), (13, 200), (30_001, 1000)])  # the last spans 2 chunks
def test_counts_are_the_draws_made_chunk_by_chunk(n_units, n_boot):
    counts = resample_counts(n_units, n_boot, seed=7)

    assert np.array_equal(counts, _counts_drawn_per_chunk(n_units, n_boot, seed=7))
    assert (counts.sum(axis=1) == n_units).all()  # each resample draws n units
    assert counts.dtype == np.uint8 and not counts.flags.writeable


def test_the_same_units_and_seed_reuse_one_draw_and_a_new_seed_draws_anew():
    first = resample_counts(500, 100, seed=0)

    assert resample_counts(500, 100, seed=0) is first
    assert not np.array_equal(resample_counts(500, 100, seed=1), first)


def test_intervals_are_those_of_the_products_with_the_reference_draws():
    values = np.random.default_rng(3).random((2_000, 3))
    reference = _counts_drawn_per_chunk(2_000, 400, seed=0) @ values / 2_000

    assert np.array_equal(resampled_sums(values, 400, seed=0) / 2_000, reference)
    cis = bootstrap_cis({"a": values[:, 0], "b": values[:, 1]}, n_boot=400, seed=0)
    low, high = np.quantile(reference[:, 0], [0.025, 0.975])
    assert (cis["a"].low, cis["a"].high) == (low, high)


def test_the_cache_drops_the_least_recently_used_beyond_its_budget(monkeypatch):
    monkeypatch.setattr(resampling, "CACHE_BYTES", 2 * 100 * 1_000)  # room for two of these
    a = resample_counts(1_000, 100, seed=0)
    b = resample_counts(1_000, 100, seed=1)
    assert resample_counts(1_000, 100, seed=0) is a  # a is now the most recent
    resample_counts(1_000, 100, seed=2)  # evicts b, the least recently used

    assert resample_counts(1_000, 100, seed=0) is a
    again = resample_counts(1_000, 100, seed=1)
    assert again is not b and np.array_equal(again, b)
