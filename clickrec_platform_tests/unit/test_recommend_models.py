"""Models on generated data with planted tastes: the learners must find them, the controls not.

One small world (150k events, two weeks) is shared by the module; fits take about a second.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.data import InteractionData, splits_from_events
from clickrec_platform.recommend.evaluate import Evaluation, evaluate
from clickrec_platform.recommend.models import (
    ALS,
    BPR,
    ItemKNN,
    MostPopular,
    PureSVD,
    RandomRecommender,
    Recommender,
    SessionKNN,
    _item_knn_top,
)
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

WORLD = GeneratorConfig(seed=11, events=150_000, days=14)

MODELS = {
    "most_popular": lambda: MostPopular(),
    "random": lambda: RandomRecommender(random_state=3),
    "item_knn_cosine": lambda: ItemKNN("cosine"),
    "item_knn_bm25": lambda: ItemKNN("bm25"),
    "als": lambda: ALS(),
    "bpr": lambda: BPR(),
    "pure_svd": lambda: PureSVD(),
    "recent_item_knn": lambda: SessionKNN(),
}


@pytest.fixture(scope="module")
def splits() -> pd.DataFrame:
    return splits_from_events(generate_events(WORLD))


@pytest.fixture(scope="module")
def data(splits) -> InteractionData:
    return InteractionData.from_splits(splits)


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, Recommender]:
    return {label: make().fit(data) for label, make in MODELS.items()}


@pytest.fixture(scope="module")
def evaluations(fitted, data) -> dict[str, Evaluation]:
    return {label: evaluate(model, data, n_boot=300, label=label) for label, model in fitted.items()}


@pytest.mark.parametrize("learner", ["als", "item_knn_cosine", "item_knn_bm25", "pure_svd"])
def test_learners_clearly_beat_popularity_on_warm_visitors(evaluations, learner):
    learnt = evaluations[learner].ci("recall@20", "warm")
    popular = evaluations["most_popular"].ci("recall@20", "warm")

    assert learnt.mean > 1.5 * popular.mean, (learnt, popular)
    assert learnt.low > popular.high, (learnt, popular)  # not a fluke of which visitors were drawn


@pytest.mark.parametrize("learner", ["bpr", "recent_item_knn"])
def test_other_learners_beat_popularity_too(evaluations, learner):
    assert (
        evaluations[learner].ci("recall@20", "warm").low
        > evaluations["most_popular"].ci("recall@20", "warm").high
    )


def test_random_control_scores_near_zero(evaluations):
    random, popular = evaluations["random"], evaluations["most_popular"]

    assert random.value("recall@20") < 0.02
    assert random.value("recall@20") < 0.1 * popular.value("recall@20")
    assert random.value("ndcg@20") < 0.1 * popular.value("ndcg@20")
    assert random.coverage["coverage@20"] > 0.9  # everything, and nothing useful


def test_popularity_beats_chance(evaluations):
    assert evaluations["most_popular"].ci("recall@20").low > evaluations["random"].ci("recall@20").high


def test_cold_start_visitors_get_the_same_popularity_fallback_from_every_model(evaluations):
    cold = {
        label: e.ci("ndcg@20", "cold_start").mean for label, e in evaluations.items() if label != "random"
    }

    assert evaluations["als"].groups["cold_start"].users > 0
    assert len(set(np.round(list(cold.values()), 12))) == 1, cold


@pytest.mark.parametrize("label", [label for label in MODELS if label != "random"])
def test_lists_are_full_distinct_unseen_and_cold_rows_are_popular(fitted, data, label):
    model = fitted[label]
    users = np.r_[np.arange(0, data.n_users, 97), -1, -1]
    items, scores = model.recommend(users, k=20)

    assert items.shape == scores.shape == (len(users), 20)
    assert (items >= 0).all() and (items < data.n_items).all()
    assert all(len(set(row)) == 20 for row in items)
    for user, row in zip(users[:-2], items[:-2], strict=True):
        assert not set(row) & set(data.user_items[user].indices)
    assert items[-1].tolist() == items[-2].tolist() == model.popular[:20].tolist()


def test_random_lists_are_distinct_and_unseen(fitted, data):
    users = np.arange(0, data.n_users, 50)
    items, _ = fitted["random"].recommend(users, k=20)

    assert (items >= 0).all()
    assert all(len(set(row)) == 20 for row in items)
    assert not any(
        set(row) & set(data.user_items[user].indices) for user, row in zip(users, items, strict=True)
    )


def test_scores_rank_the_lists(fitted):
    _, scores = fitted["als"].recommend(np.arange(50), k=20)

    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_seen_items_may_come_back_when_asked(fitted, data):
    heavy = int(np.argmax(np.diff(data.user_items.indptr)))
    with_seen, _ = fitted["item_knn_cosine"].recommend([heavy], k=20, exclude_seen=False)

    assert set(with_seen[0]) & set(data.user_items[heavy].indices)


@pytest.mark.parametrize("label", ["most_popular", "item_knn_bm25", "als", "recent_item_knn"])
def test_batching_does_not_change_results(fitted, data, label):
    users = np.arange(min(data.n_users, 700))
    whole, _ = fitted[label].recommend(users, k=10, batch_size=10_000)
    batched, _ = fitted[label].recommend(users, k=10, batch_size=64)

    assert np.array_equal(whole, batched)


@pytest.mark.parametrize("label", ["item_knn_cosine", "als", "bpr", "pure_svd", "recent_item_knn"])
def test_similar_items_exclude_the_item_itself(fitted, label):
    query = np.array([0, 5, 17])
    items, scores = fitted[label].similar_items(query, k=5)

    assert items.shape == (3, 5)
    assert not (items == query[:, None]).any()
    valid = items >= 0
    assert valid[:, 0].all()
    assert np.isfinite(scores[valid]).all()


def test_models_without_item_similarity_say_so(fitted):
    with pytest.raises(NotImplementedError, match="most_popular"):
        fitted["most_popular"].similar_items([0])


def test_same_seed_same_model(data):
    a, _ = ALS(iterations=3).fit(data).recommend(np.arange(30), k=10)
    b, _ = ALS(iterations=3).fit(data).recommend(np.arange(30), k=10)

    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "label", [label for label in MODELS if label != "random"]
)  # random differs by design
def test_pickled_models_recommend_the_same(fitted, label):
    model = fitted[label]
    again = pickle.loads(pickle.dumps(model))

    assert np.array_equal(model.recommend(np.arange(40), k=10)[0], again.recommend(np.arange(40), k=10)[0])


def test_popularity_window_prefers_recent_favourites():
    stamp = pd.Timestamp("2015-05-04", tz="UTC")
    rows = [(visitor, 1, 1) for visitor in range(5)] + [(visitor, 2, 9) for visitor in range(5, 8)]
    splits = pd.DataFrame(
        {
            "visitor_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "split": "train",
            "weight": 1.0,
            "events": 1,
            "transactions": 0,
            "first_ts": [stamp + pd.Timedelta(days=r[2]) for r in rows],
            "last_ts": [stamp + pd.Timedelta(days=r[2]) for r in rows],
            "split_start": stamp,
            "split_end": stamp + pd.Timedelta(days=10),
        }
    )
    data = InteractionData.from_splits(splits)

    assert data.item_ids[MostPopular(window_days=None).fit(data).recommend([-1], k=1)[0][0, 0]] == 1
    assert data.item_ids[MostPopular(window_days=3).fit(data).recommend([-1], k=1)[0][0, 0]] == 2


def test_session_knn_follows_the_latest_items(fitted, data):
    model: SessionKNN = fitted["recent_item_knn"]
    first, second = data.item_ids[model.similarity.getnnz(axis=1).argsort()[-2:]]
    towards_second, _ = model.recommend_from_items([[first, second]], k=5)
    towards_first, _ = model.recommend_from_items([[second, first]], k=5)
    neighbours_of_second = set(data.item_ids[model.similar_items([data.item_index([second])[0]], k=5)[0][0]])

    assert towards_second.shape == (1, 5)
    assert not {first, second} & set(towards_second[0])  # the session is not recommended back
    assert set(towards_second[0]) != set(towards_first[0])
    assert len(set(towards_second[0]) & neighbours_of_second) >= len(
        set(towards_first[0]) & neighbours_of_second
    )


def test_session_knn_without_known_items_falls_back_to_popular(fitted, data):
    model: SessionKNN = fitted["recent_item_knn"]
    items, scores = model.recommend_from_items([[], [-12345]], k=5)

    expected = data.item_ids[model.popular[:5]].tolist()
    assert items.tolist() == [expected, expected]
    assert np.isnan(scores).all()  # filled, not scored by the model


@pytest.mark.parametrize("label", ["item_knn_cosine", "item_knn_bm25"])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_item_knn_fast_path_matches_implicit(fitted, data, label, exclude_seen):
    """The scorer fed each user's CSR slice gives implicit's own lists, ties and padding included."""
    model: ItemKNN = fitted[label]
    users = np.arange(0, data.n_users, 7)
    ids, scores = model._model.recommend(users, data.user_items[users], N=20, filter_already_liked_items=exclude_seen)
    fast_ids, fast_scores = _item_knn_top(model._model, data.user_items, users, 20, exclude_seen)

    assert np.array_equal(fast_ids, ids.astype(np.int64))
    assert np.array_equal(fast_scores, scores.astype(np.float32))
    # The comparison means something: lists with ties and with padding are among them.
    valid = scores > 0
    assert (np.diff(np.where(valid, scores, -1.0), axis=1) == 0).any() and (~valid).any()


def test_pure_svd_scores_are_the_visitors_row_projected_on_the_top_singular_vectors():
    """On a matrix of exact rank 3 the randomized SVD finds the exact subspace: the scores are
    r_u V Vt with V from numpy's full SVD, so an unseen item a visitor's twins liked ranks first."""
    rng = np.random.default_rng(5)
    weights = (rng.random((40, 3)) @ rng.random((3, 25)) * 4).round(2).astype(np.float32)
    weights[weights < 1.0] = 0.0  # sparse, and no longer of rank 3: the top 3 directions are kept
    rows = [(u, i, w) for (u, i), w in np.ndenumerate(weights) if w > 0]
    at = pd.Timestamp("2026-01-01", tz="UTC")
    data = InteractionData.from_splits(pd.DataFrame(
        [(u, i, "train", w, at, at) for u, i, w in rows] + [(0, 0, "validation", 1.0, at, at)],
        columns=["visitor_id", "item_id", "split", "weight", "first_ts", "last_ts"]))
    model = PureSVD(factors=3, n_iter=30).fit(data)

    dense = data.user_items.toarray()
    v = np.linalg.svd(dense, full_matrices=False)[2][:3].T
    expected = dense @ v @ v.T
    items, scores = model.recommend(np.arange(data.n_users), k=5, exclude_seen=False)
    assert np.allclose(scores, np.take_along_axis(expected, items, axis=1), atol=1e-3)
    assert np.array_equal(items[:, 0], expected.argmax(axis=1))
