"""The synthetic world written as RetailRocket's files, plus the ground truth behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from clickrec_platform.events.contract import EVENT_TYPES
from clickrec_platform.sources.retailrocket import (
    AVAILABLE_PROPERTY,
    CATEGORY_PROPERTY,
    CATEGORY_TREE_HEADER,
    EVENTS_HEADER,
    ITEM_PROPERTIES_HEADER,
    PRICE_PROPERTY,
)
from clickrec_platform.sources.synthetic.config import GeneratorConfig
from clickrec_platform.sources.synthetic.sessions import ADDTOCART, NO_ID, TRANSACTION, VIEW, EventColumns
from clickrec_platform.sources.synthetic.world import Catalogue, CategoryTree, World

# RetailRocket hashes every property name but two; a made-up hash would pass for a real property.
BRAND_PROPERTY = "brand"
# Only the event kinds RetailRocket has: its files cannot carry a search query, and have no likes.
RETAILROCKET_EVENTS = (VIEW, ADDTOCART, TRANSACTION)

_CSV_OPTIONS = pcsv.WriteOptions(include_header=False, quoting_style="none")
_WEEK_MS = 7 * 24 * 3_600_000
_WEEKLY_AVAILABILITY_FLIP = 0.1
_WEEKLY_REPRICE = 0.05


class EventsCsv:
    """`events.csv`, written chunk by chunk: RetailRocket's columns and event kinds only."""

    def __init__(self, path: Path) -> None:
        self._file = _open_csv(path, EVENTS_HEADER)
        self._writer: pcsv.CSVWriter | None = None
        self.rows = 0

    def write(self, events: EventColumns) -> None:
        events = events.take(np.flatnonzero(np.isin(events.event, RETAILROCKET_EVENTS)))
        table = pa.table(
            {
                "timestamp": events.ts,
                "visitorid": events.visitor_id,
                "event": pa.DictionaryArray.from_arrays(events.event, EVENT_TYPES),
                "itemid": events.item_id,
                "transactionid": pa.array(events.transaction_id, mask=events.transaction_id == NO_ID),
            }
        )
        if self._writer is None:
            self._writer = pcsv.CSVWriter(self._file, table.schema, write_options=_CSV_OPTIONS)
        self._writer.write_table(table)
        self.rows += len(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._file.close()

    def __enter__(self) -> EventsCsv:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_category_tree(categories: CategoryTree, path: Path) -> int:
    parent = pa.array(categories.parent, mask=categories.parent < 0)
    table = pa.table({"categoryid": np.arange(len(categories.parent)), "parentid": parent})
    with _open_csv(path, CATEGORY_TREE_HEADER) as file:
        pcsv.write_csv(table, file, _CSV_OPTIONS)
    return len(table)


def write_item_properties(
    config: GeneratorConfig, items: Catalogue, paths: tuple[Path, Path], rng: np.random.Generator
) -> tuple[int, int]:
    """The catalogue's change log, split by item id over RetailRocket's two part files."""
    half = len(items.category) // 2
    rows = [0, 0]
    with (
        _open_csv(paths[0], ITEM_PROPERTIES_HEADER) as first,
        _open_csv(paths[1], ITEM_PROPERTIES_HEADER) as second,
    ):
        for table in _property_log(config, items, rng):
            in_first = pc.less(table["itemid"], half)
            for part, (file, rows_in) in enumerate(((first, in_first), (second, pc.invert(in_first)))):
                selected = table.filter(rows_in)
                pcsv.write_csv(selected, file, _CSV_OPTIONS)
                rows[part] += len(selected)
    return rows[0], rows[1]


def write_ground_truth(world: World, directory: Path) -> dict[str, int]:
    """What the events were generated from, as parquet, for tests that models recover it."""
    directory.mkdir(parents=True, exist_ok=True)
    categories, items, visitors = world.categories, world.items, world.visitors
    n_visitors, n_tastes = visitors.tastes.shape
    tastes = pd.DataFrame(
        {
            "visitor_id": np.repeat(np.arange(n_visitors), n_tastes),
            "category_id": visitors.tastes.ravel(),
            # The expected share of the visitor's views made in the category because of this taste.
            "affinity": np.tile(visitors.taste_share, n_visitors),
        }
    )
    # A visitor may draw one category twice; it is then one taste twice as strong.
    tastes = tastes.groupby(["visitor_id", "category_id"], as_index=False, sort=True)["affinity"].sum()
    frames = {
        "visitor_tastes": tastes,
        "visitors": pd.DataFrame({"visitor_id": np.arange(n_visitors), "activity": visitors.activity}),
        "items": pd.DataFrame(
            {
                "item_id": np.arange(len(items.category)),
                "category_id": items.category,
                "root_category_id": categories.root[items.category],
                "popularity": items.popularity,
                "price": items.price,
                "brand": items.brand,
                "available": items.available,
            }
        ),
        "categories": pd.DataFrame(
            {
                "category_id": np.arange(len(categories.parent)),
                "parent_id": pd.array(
                    # numpy's types leave out None, which numpy takes as an object array's element
                    np.where(categories.parent < 0, None, categories.parent),  # type: ignore[call-overload]
                    dtype="Int64",
                ),
                "level": categories.level,
                "name": categories.name.astype(str),
            }
        ),
    }
    for name, frame in frames.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / f"{name}.parquet")
    return {f"{name}.parquet": len(frame) for name, frame in frames.items()}


def _property_log(config: GeneratorConfig, items: Catalogue, rng: np.random.Generator) -> Iterator[pa.Table]:
    """Every property of every item at the window's start, then weekly availability and price changes."""
    item_ids = np.arange(len(items.category))
    yield _properties(config.start_ms, item_ids, CATEGORY_PROPERTY, items.category)
    yield _properties(config.start_ms, item_ids, AVAILABLE_PROPERTY, items.available.astype(np.int64))
    yield _properties(config.start_ms, item_ids, PRICE_PROPERTY, items.price, hashed_number=True)
    yield _properties(config.start_ms, item_ids, BRAND_PROPERTY, items.brand)
    available, price = items.available.copy(), items.price.copy()
    for week in range(1, (config.days - 1) // 7 + 1):
        ts = config.start_ms + week * _WEEK_MS
        flipped = np.flatnonzero(rng.random(len(item_ids)) < _WEEKLY_AVAILABILITY_FLIP)
        available[flipped] = ~available[flipped]
        yield _properties(ts, flipped, AVAILABLE_PROPERTY, available[flipped].astype(np.int64))
        repriced = np.flatnonzero(rng.random(len(item_ids)) < _WEEKLY_REPRICE)
        new_price = np.round(price[repriced] * rng.uniform(0.8, 1.2, len(repriced)))
        price[repriced] = np.maximum(1, new_price).astype(np.int64)
        yield _properties(ts, repriced, PRICE_PROPERTY, price[repriced], hashed_number=True)


def _properties(
    ts: int, item_ids: np.ndarray, name: str, values: np.ndarray, *, hashed_number: bool = False
) -> pa.Table:
    text = pc.cast(pa.array(values), pa.string())
    if hashed_number:  # RetailRocket writes numbers in hashed values as "n15360.000"
        text = pc.binary_join_element_wise("n", text, ".000", "")
    return pa.table(
        {
            "timestamp": np.full(len(item_ids), ts, dtype=np.int64),
            "itemid": item_ids,
            "property": pa.repeat(pa.scalar(name), len(item_ids)),
            "value": text,
        }
    )


def _open_csv(path: Path, header: tuple[str, ...]) -> BinaryIO:
    """A new CSV file with RetailRocket's unquoted header written; Arrow would quote the names."""
    file = path.open("wb")
    file.write((",".join(header) + "\n").encode())
    return file
