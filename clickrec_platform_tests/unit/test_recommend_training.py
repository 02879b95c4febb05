"""`train_candidates` without a tracking server (logging stubbed): each candidate is scored on
validation and, refitted on train + validation, once on test; the half-life setting reaches the
models' weights; evaluations carry the per-visitor values the paired gate resamples."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec_platform.recommend import training
from clickrec_platform.recommend.data import splits_from_events
from clickrec_platform.recommend.evaluate import paired_user_difference
from clickrec_platform.recommend.tracking import LoggedRun
from clickrec_platform.sources.generator import GeneratorConfig, generate_events


@pytest.fixture(scope="module")
def splits():
    return splits_from_events(generate_events(GeneratorConfig(seed=6, events=30_000)))


@pytest.fixture
def no_tracking(monkeypatch):
    logged = []

    def log_model_run(experiment, model, evaluation, **kwargs):
        logged.append((evaluation, kwargs["test_evaluation"]))
        return LoggedRun("run", "0", "uri", None, None)

    monkeypatch.setattr(training, "log_model_run", log_model_run)
    return logged


def _train(splits, tmp_path, names, half_life_days=None):
    return training.train_candidates(
        splits, None, names, training_id="t", experiment="e", registered_model="m", tracking_uri="unused",
        data_versions={}, artifacts_dir=tmp_path, half_life_days=half_life_days, progress=lambda _: None)


def test_every_candidate_is_scored_once_on_test_after_a_refit_and_logged_with_it(splits, tmp_path, no_tracking):
    result = _train(splits, tmp_path, ["most_popular", "item_knn_bm25"])

    assert len(no_tracking) == 2
    for candidate, (_validation, test) in zip(result.candidates, no_tracking, strict=True):
        assert candidate.evaluation.split == "validation" and test.split == "test"
        assert test is candidate.test_evaluation and test.model == candidate.name
        assert {"test_ndcg_at_20", "test_recall_at_20_ci_low"} <= set(test.flat("test"))
        assert len(candidate.evaluation.per_user["ndcg@20"]) == len(candidate.evaluation.visitor_ids)


def test_the_half_life_changes_the_weights_the_models_learn_from(splits, tmp_path, no_tracking):
    plain = _train(splits, tmp_path, ["item_knn_bm25"]).candidates[0].model
    decayed = _train(splits, tmp_path, ["item_knn_bm25"], half_life_days=1.0).candidates[0].model

    visitors = np.arange(200)
    plain_lists, _ = plain.recommend(visitors, k=10)
    decayed_lists, _ = decayed.recommend(visitors, k=10)
    assert (plain_lists != decayed_lists).any(axis=1).mean() > 0.1  # many visitors' lists move


def test_paired_user_difference_of_a_model_with_itself_is_zero_and_needs_the_same_visitors(
        splits, tmp_path, no_tracking):
    candidates = _train(splits, tmp_path, ["most_popular", "item_knn_bm25"]).candidates
    same = paired_user_difference(candidates[1].evaluation, candidates[1].evaluation, "ndcg@20", n_boot=100)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_user_difference(candidates[1].evaluation, candidates[0].evaluation, "ndcg@20", n_boot=200)
    assert better.mean == pytest.approx(candidates[1].metrics["ndcg@20"] - candidates[0].metrics["ndcg@20"])
    assert better.low < better.mean < better.high


def test_fits_side_by_side_give_the_single_thread_scores(splits, tmp_path, no_tracking):
    names = ["most_popular", "random", "item_knn_bm25", "als"]
    grids = {"most_popular": {"window_days": [3.0, 7.0]}}
    one, two = (training.train_candidates(
        splits, None, names, training_id="t", experiment="e", registered_model="m", tracking_uri="unused",
        data_versions={}, artifacts_dir=tmp_path / str(threads), grids=grids, threads=threads,
        progress=lambda _: None).candidates for threads in (1, 2))

    for a, b in zip(one, two, strict=True):
        assert a.name == b.name and a.model.params == b.model.params
        for mine, theirs in ((a.evaluation, b.evaluation), (a.test_evaluation, b.test_evaluation)):
            assert mine is not None and theirs is not None
            assert mine.flat("x").keys() == theirs.flat("x").keys()
            assert all(np.array_equal(mine.per_user[m], theirs.per_user[m]) for m in mine.per_user)
            assert {k: v for k, v in mine.flat("x").items() if "seconds" not in k} == \
                {k: v for k, v in theirs.flat("x").items() if "seconds" not in k}
