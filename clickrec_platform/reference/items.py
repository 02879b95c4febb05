"""The item catalogue as versions in time (slowly changing dimension, type 2), from the change log.

RetailRocket's item properties are a log of (timestamp, item, property, value) snapshots. A feature
of an event must use the item as it was at the event's time, not as it ended up: `item_versions`
turns the log into one row per period during which an item's category, price and availability
held, and `items_as_of` picks the version valid at an instant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clickrec_platform.sources.retailrocket import AVAILABLE_PROPERTY, CATEGORY_PROPERTY, PRICE_PROPERTY

# The log's first snapshot of an item describes it as it already was: that version holds from the
# beginning of time, so events before the first snapshot still see the item (as RetailRocket's
# first snapshots come a week after its first events). `recorded_at` keeps the snapshot's time.
BEGINNING = pd.Timestamp(0, unit="ms")

CATALOGUE_PROPERTIES = {CATEGORY_PROPERTY: "category_id", PRICE_PROPERTY: "price", AVAILABLE_PROPERTY: "available"}
VERSION_COLUMNS = ("item_id", "valid_from", "valid_to", "recorded_at", "category_id", "price", "available",
                   "is_current")


def item_versions(properties: pd.DataFrame) -> pd.DataFrame:
    """One row per item and period: item_id, valid_from, valid_to (exclusive; NaT while current),
    recorded_at, category_id, price, available, is_current.

    `properties` holds item_id, ts (epoch ms), property and value_number, as
    `sources.retailrocket.read_item_properties` yields them. Only category, price and availability
    matter here; a snapshot that changes none of them starts no new version. Two values of one
    property at the same instant: the later row in the log wins.
    """
    wanted = properties[properties["property"].isin(list(CATALOGUE_PROPERTIES))]
    if wanted.empty:
        return _empty()
    state = (wanted.assign(column=wanted["property"].map(CATALOGUE_PROPERTIES))
             .groupby(["item_id", "ts", "column"], sort=False)["value_number"].last()
             .unstack("column")
             .reindex(columns=list(CATALOGUE_PROPERTIES.values()))
             .sort_index())
    # A snapshot names only some properties: the others keep their last value.
    state = state.groupby(level="item_id").ffill()
    item_ids = state.index.get_level_values("item_id").to_numpy()
    values = state.to_numpy()
    same_item = np.r_[False, item_ids[1:] == item_ids[:-1]]
    unchanged = same_item & np.r_[False, _rows_equal(values[1:], values[:-1])]
    state = state[~unchanged].reset_index()

    next_same_item = np.r_[state["item_id"].to_numpy()[1:] == state["item_id"].to_numpy()[:-1], False]
    recorded = pd.to_datetime(state["ts"], unit="ms")
    first = ~np.r_[False, state["item_id"].to_numpy()[1:] == state["item_id"].to_numpy()[:-1]]
    valid_from = recorded.where(~first, BEGINNING)
    valid_to = recorded.shift(-1).where(next_same_item)
    return pd.DataFrame({
        "item_id": state["item_id"].astype("int64"),
        "valid_from": valid_from,
        "valid_to": valid_to,
        "recorded_at": recorded,
        "category_id": pd.array(state["category_id"].round(), dtype="Int64"),
        "price": state["price"].astype("float64"),
        "available": pd.array(state["available"].round(), dtype="Int8"),
        "is_current": ~next_same_item,
    })


def items_as_of(versions: pd.DataFrame, instant: pd.Timestamp) -> pd.DataFrame:
    """Each item's version valid at `instant` (items first recorded later are absent)."""
    valid = (versions["valid_from"] <= instant) & (versions["valid_to"].isna() | (versions["valid_to"] > instant))
    return versions[valid].reset_index(drop=True)


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": pd.Series(dtype="int64"), "valid_from": pd.Series(dtype="datetime64[ns]"),
        "valid_to": pd.Series(dtype="datetime64[ns]"), "recorded_at": pd.Series(dtype="datetime64[ns]"),
        "category_id": pd.Series(dtype="Int64"), "price": pd.Series(dtype="float64"),
        "available": pd.Series(dtype="Int8"), "is_current": pd.Series(dtype="bool"),
    })
