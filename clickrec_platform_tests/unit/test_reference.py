"""Reference data as pure functions: the category hierarchy and point-in-time item versions."""

from __future__ import annotations

import pandas as pd

from clickrec_platform.reference.categories import CYCLE, UNKNOWN_PARENT, category_hierarchy
from clickrec_platform.reference.items import BEGINNING, item_versions, items_as_of


def _tree(rows: list[tuple[int, int | None]]) -> pd.DataFrame:
    return pd.DataFrame({"category_id": [c for c, _ in rows],
                         "parent_id": pd.array([p for _, p in rows], dtype="Int64")})


def test_category_hierarchy_gives_root_depth_path_and_leaves():
    tree = category_hierarchy(_tree([(10, None), (20, 10), (30, 20), (40, 10), (50, None)]))
    by_id = tree.set_index("category_id")
    assert by_id["root_id"].tolist() == [10, 10, 10, 10, 50]
    assert by_id["depth"].tolist() == [0, 1, 2, 1, 0]
    assert by_id.loc[30, "path"] == "10/20/30"
    assert by_id["is_leaf"].tolist() == [False, False, True, True, True]
    assert by_id["problem"].isna().all() and by_id["problem"].dtype == "string"


def test_category_hierarchy_names_cycles_and_unknown_parents_instead_of_looping():
    tree = category_hierarchy(_tree([(1, None), (2, 3), (3, 2), (4, 2), (5, 99), (6, 5)])).set_index("category_id")
    assert tree.loc[[2, 3, 4], "problem"].tolist() == [CYCLE] * 3
    assert tree.loc[[5, 6], "problem"].tolist() == [UNKNOWN_PARENT] * 2
    assert pd.isna(tree.loc[1, "problem"]) and tree.loc[1, "depth"] == 0
    assert tree.loc[[2, 3, 4, 5, 6], "root_id"].isna().all()


def _log(rows: list[tuple[int, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item_id", "ts", "property", "value_number"])


def test_item_versions_follow_the_change_log_in_time():
    day = 86_400_000
    log = _log([
        (7, 1 * day, "categoryid", 3), (7, 1 * day, "790", 100.0), (7, 1 * day, "available", 1),
        (7, 2 * day, "790", 100.0),  # a snapshot that changes nothing starts no version
        (7, 3 * day, "790", 80.0),  # a price drop
        (7, 5 * day, "categoryid", 4), (7, 5 * day, "888", 1.0),  # a hashed property is ignored
        (8, 4 * day, "available", 0),
    ])
    versions = item_versions(log)
    seven = versions[versions["item_id"] == 7].reset_index(drop=True)
    assert seven["price"].tolist() == [100.0, 80.0, 80.0]
    assert seven["category_id"].tolist() == [3, 3, 4]
    assert seven["available"].tolist() == [1, 1, 1]
    assert seven["valid_from"].tolist() == [BEGINNING, pd.Timestamp(3 * day, unit="ms"),
                                            pd.Timestamp(5 * day, unit="ms")]
    assert seven["valid_to"].iloc[0] == pd.Timestamp(3 * day, unit="ms") and pd.isna(seven["valid_to"].iloc[2])
    assert seven["is_current"].tolist() == [False, False, True]
    eight = versions[versions["item_id"] == 8].iloc[0]
    assert eight["available"] == 0 and pd.isna(eight["category_id"]) and eight["is_current"]

    # Point in time: on day 4 item 7 cost 80 in category 3, not its latest category 4.
    on_day_4 = items_as_of(versions, pd.Timestamp(4 * day, unit="ms")).set_index("item_id")
    assert on_day_4.loc[7, "price"] == 80.0 and on_day_4.loc[7, "category_id"] == 3
    assert items_as_of(versions, pd.Timestamp(6 * day, unit="ms")).set_index("item_id").loc[7, "category_id"] == 4


def test_item_versions_take_the_later_of_two_values_at_one_instant():
    versions = item_versions(_log([(1, 1000, "790", 5.0), (1, 1000, "790", 6.0)]))
    assert versions["price"].tolist() == [6.0]
