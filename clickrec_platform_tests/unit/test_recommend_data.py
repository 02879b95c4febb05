"""From events to splits, and from splits to the matrix, id maps and truth the models use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.data import InteractionData, splits_from_events

DAY_MS = 86_400_000
T0 = 1_430_697_600_000  # 2015-05-04 00:00 UTC


def events_frame(rows: list[tuple[int, int, str, int | None]]) -> pd.DataFrame:
    """(day, visitor, event, item) rows as contract-shaped columns."""
    return pd.DataFrame(
        {
            "ts": [T0 + int(day * DAY_MS) for day, *_ in rows],
            "visitor_id": [visitor for _, visitor, *_ in rows],
            "event": pd.array([event for *_, event, _ in rows], dtype="string[pyarrow]"),
            "item_id": pd.array([item for *_, item in rows], dtype="Int64"),
        }
    )


def splits_frame(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """(split, visitor, item, weight, day) rows in the `gold.training_splits` shape."""
    bounds = {"train": (0, 10), "validation": (10, 12), "test": (12, 14)}
    stamp = pd.Timestamp("2015-05-04", tz="UTC")
    return pd.DataFrame(
        {
            "visitor_id": np.array([r[1] for r in rows], dtype=np.int64),
            "item_id": np.array([r[2] for r in rows], dtype=np.int64),
            "split": [r[0] for r in rows],
            "weight": np.array([r[3] for r in rows], dtype=np.float64),
            "events": np.ones(len(rows), dtype=np.int64),
            "transactions": np.zeros(len(rows), dtype=np.int64),
            "first_ts": [stamp + pd.Timedelta(days=r[4]) for r in rows],
            "last_ts": [stamp + pd.Timedelta(days=r[4]) for r in rows],
            "split_start": [stamp + pd.Timedelta(days=bounds[r[0]][0]) for r in rows],
            "split_end": [stamp + pd.Timedelta(days=bounds[r[0]][1]) for r in rows],
        }
    )


# Visitors 1, 2 in training; 3 only later (cold-start); item 99 only later (unreachable).
SPLITS = splits_frame(
    [
        ("train", 1, 10, 1.0, 1),
        ("train", 1, 11, 5.0, 9),
        ("train", 2, 11, 3.0, 2),
        ("train", 2, 12, 1.0, 8),
        ("validation", 1, 12, 1.0, 10.5),
        ("validation", 1, 10, 1.0, 10.5),  # already seen in train
        ("validation", 2, 99, 4.0, 11),
        ("validation", 3, 11, 1.0, 11),
        ("test", 1, 13, 1.0, 13),
        ("test", 2, 10, 1.0, 13),
    ]
)


def test_splits_are_chronological_by_event_count_and_weights_add_up():
    rows: list[tuple[int, int, str, int | None]] = [(day, 1, "view", 100 + day) for day in range(20)]
    rows += [(3, 1, "addtocart", 103), (3, 1, "transaction", 103), (4, 2, "search", None), (4, 2, "like", 5)]
    splits = splits_from_events(events_frame(rows))

    by_split = splits.groupby("split")["events"].sum()
    assert by_split.to_dict() == {"train": 16, "validation": 3, "test": 4}  # 23 interactions, 70/15/15
    train_end = splits.loc[splits["split"] == "train", "last_ts"].max()
    assert train_end < splits.loc[splits["split"] == "validation", "first_ts"].min()
    pair = splits[(splits["visitor_id"] == 1) & (splits["item_id"] == 103)].iloc[0]
    assert (pair["weight"], pair["events"], pair["transactions"]) == (1 + 3 + 5, 3, 1)
    assert splits.loc[splits["visitor_id"] == 2, "weight"].tolist() == [4.0]  # like counts, search ignored
    assert str(splits["first_ts"].dtype) == "datetime64[ns, UTC]"
    train = splits[splits["split"] == "train"]
    assert (train["split_start"] <= train["first_ts"]).all() and (train["last_ts"] < train["split_end"]).all()


def test_splits_accept_an_iterable_of_frames_like_the_generator_yields():
    frame = events_frame([(day, day % 3, "view", day % 5) for day in range(30)])
    whole = splits_from_events(frame)
    chunked = splits_from_events(iter([frame.iloc[:11], frame.iloc[11:]]))

    pd.testing.assert_frame_equal(whole, chunked)


def test_fractions_are_validated():
    with pytest.raises(ValueError, match="sum to 1"):
        splits_from_events(events_frame([(0, 1, "view", 1)] * 5), fractions=(0.5, 0.2, 0.2))


def test_matrix_is_users_by_items_float32_with_id_maps():
    data = InteractionData.from_splits(SPLITS)

    assert data.user_items.shape == (2, 3)  # visitors 1, 2 x items 10, 11, 12
    assert data.user_items.dtype == np.float32
    assert data.user_ids.tolist() == [1, 2] and data.item_ids.tolist() == [10, 11, 12]
    assert data.user_items.toarray().tolist() == [[1.0, 5.0, 0.0], [0.0, 3.0, 1.0]]
    assert data.user_index([2, 3, 1]).tolist() == [1, -1, 0]
    assert data.item_index([12, 99]).tolist() == [2, -1]


def test_truth_keeps_cold_visitors_and_items_no_model_could_know():
    data = InteractionData.from_splits(SPLITS)
    truth = data.ground_truth("validation")

    assert truth.visitor_ids.tolist() == [1, 2, 3]
    assert truth.is_cold.tolist() == [False, False, True]
    assert truth.n_relevant.tolist() == [2, 1, 1]
    assert truth.relevant[1].indices.tolist() == [3]  # item 99: a column past the catalogue
    assert truth.unreachable_share == pytest.approx(1 / 4)
    assert data.ground_truth("validation", min_weight=3).visitor_ids.tolist() == [2]


def test_truth_of_new_items_drops_items_seen_in_training():
    data = InteractionData.from_splits(SPLITS)
    truth = data.ground_truth("validation").without_items_seen_in(data.user_items)

    assert truth.visitor_ids.tolist() == [1, 2, 3]
    assert truth.relevant[0].indices.tolist() == [2]  # item 12 stays, item 10 was seen
    only_seen = splits_frame(
        [("train", 1, 10, 1.0, 1), ("validation", 1, 10, 1.0, 11), ("validation", 2, 10, 1.0, 11)]
    )
    data = InteractionData.from_splits(only_seen)
    assert data.ground_truth().without_items_seen_in(data.user_items).visitor_ids.tolist() == [2]


def test_training_split_cannot_be_scored():
    with pytest.raises(ValueError, match="part of training"):
        InteractionData.from_splits(SPLITS).ground_truth("train")


def test_train_plus_validation_merges_pairs_for_the_final_fit():
    data = InteractionData.from_splits(SPLITS, train_splits=("train", "validation"))

    assert data.user_ids.tolist() == [1, 2, 3]
    assert data.item_ids.tolist() == [10, 11, 12, 99]
    assert data.user_items[0, 0] == pytest.approx(2.0)  # 1 in train + 1 in validation
    assert data.train_end == pd.Timestamp("2015-05-16", tz="UTC")
    assert data.ground_truth("test").visitor_ids.tolist() == [1, 2]


def test_time_decay_halves_weight_per_half_life_before_the_end_of_training():
    data = InteractionData.from_splits(SPLITS, half_life_days=1.0)

    # Training ends on day 10: day-9 weight 5 is one half-life old, day-1 weight 1 nine.
    assert data.user_items[0, 1] == pytest.approx(5 * 0.5)
    assert data.user_items[0, 0] == pytest.approx(0.5**9)
    undecayed = InteractionData.from_splits(SPLITS)
    assert undecayed.user_items[0, 1] == 5.0


def test_naive_timestamps_are_taken_as_utc():
    naive = SPLITS.copy()
    for column in ("first_ts", "last_ts", "split_start", "split_end"):
        naive[column] = naive[column].dt.tz_localize(None)
    a = InteractionData.from_splits(naive, half_life_days=2.0)
    b = InteractionData.from_splits(SPLITS, half_life_days=2.0)

    assert (a.user_items != b.user_items).nnz == 0
    assert a.split_dates() == b.split_dates()
    assert a.split_dates()["train_end"] == "2015-05-14T00:00:00+00:00"


def test_item_metadata_widens_the_catalogue_and_records_categories():
    items = pd.DataFrame({"item_id": [10, 11, 12, 50], "category_id": [7, 7, 8, 9]})
    data = InteractionData.from_splits(SPLITS, items=items)

    assert data.item_ids.tolist() == [10, 11, 12, 50]
    assert data.item_categories is not None and data.item_categories.tolist() == [7, 7, 8, 9]
    assert data.user_items.shape == (2, 4)


def test_the_evaluation_truth_is_built_once_per_split_and_is_the_new_items_truth():
    data = InteractionData.from_splits(SPLITS)
    truth = data.evaluation_truth("validation")

    expected = data.ground_truth("validation").without_items_seen_in(data.user_items)
    assert truth.visitor_ids.tolist() == expected.visitor_ids.tolist()
    assert (truth.relevant != expected.relevant).nnz == 0
    assert data.evaluation_truth("validation") is truth
    assert data.evaluation_truth("validation", new_items_only=False).n_relevant.tolist() == [2, 1, 1]
    assert data.evaluation_truth("validation", min_weight=3).visitor_ids.tolist() == [2]
    assert data.evaluation_truth("test") is not truth
