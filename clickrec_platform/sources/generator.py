"""Synthetic clickstream: RetailRocket-shaped files, or contract-shaped event batches to stream.

Seeded and reproducible: a config always yields the same output. Work goes in chunks of about
`chunk_events` events, each from its own random stream, so memory stays bounded at any scale.
Sessions are numbered in time order, so chunks come out (nearly) in event-time order too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from clickrec_platform.events.contract import EVENT_TYPES, SCHEMA_VERSION, event_frame
from clickrec_platform.events.ids import event_ids
from clickrec_platform.sources.retailrocket import CATEGORY_TREE_FILE, EVENTS_FILE, ITEM_PROPERTIES_FILES
from clickrec_platform.sources.synthetic.config import GeneratorConfig, Promotion
from clickrec_platform.sources.synthetic.files import (
    EventsCsv,
    write_category_tree,
    write_ground_truth,
    write_item_properties,
)
from clickrec_platform.sources.synthetic.sessions import NO_ID, EventColumns, session_events
from clickrec_platform.sources.synthetic.traffic import hourly_weights, session_starts_ms
from clickrec_platform.sources.synthetic.world import Sampler, World, build_world

__all__ = [
    "GROUND_TRUTH_DIR",
    "SOURCE",
    "GenerationSummary",
    "GeneratorConfig",
    "Promotion",
    "generate_events",
    "synthetic_world",
    "write_catalogue_files",
    "write_retailrocket_files",
]

SOURCE = "synthetic"
GROUND_TRUTH_DIR = "ground_truth"

# Independent random streams, so that e.g. a change in the catalogue leaves traffic timing alone.
_WORLD, _TRAFFIC, _SESSIONS, _PROPERTIES = range(4)


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    events_by_type: dict[str, int]  # every generated event, written to events.csv or not
    rows_written: dict[str, int]  # per file, relative to out_dir
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


def synthetic_world(config: GeneratorConfig) -> World:
    """The categories, catalogue and visitors (with planted tastes) that `config` generates from."""
    return build_world(config, _rng(config, _WORLD))


def generate_events(config: GeneratorConfig) -> Iterator[pd.DataFrame]:
    """Contract-shaped event frames of every kind (likes and searches too), each in time order.

    `event_id` hashes each event with its position in the run, so a replay repeats the ids.
    """
    world = synthetic_world(config)
    seen = 0
    for columns in _event_columns(config, world):
        yield _contract_frame(config, world, columns, first_ordinal=seen)
        seen += len(columns)


def write_retailrocket_files(
    config: GeneratorConfig, out_dir: str | Path, *, progress: bool = True
) -> GenerationSummary:
    """Write `events.csv`, `item_properties_part1.csv`/`_part2.csv`, `category_tree.csv` and the
    ground truth (`ground_truth/*.parquet`) into `out_dir`.

    `events.csv` holds RetailRocket's event kinds only (view, addtocart, transaction): the format
    has no column for a search query and the real data has no likes. `generate_events` has all.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    world = synthetic_world(config)
    rows_written = _write_catalogue(config, world, out_dir)
    events_by_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    with (
        EventsCsv(out_dir / EVENTS_FILE) as events_csv,
        tqdm(total=config.events, unit="event", unit_scale=True, disable=not progress) as bar,
    ):
        for columns in _event_columns(config, world):
            events_csv.write(columns)
            events_by_type += np.bincount(columns.event, minlength=len(EVENT_TYPES))
            bar.update(len(columns))
        bar.total = bar.n  # the count asked for was only a target
    rows_written[EVENTS_FILE] = events_csv.rows
    return GenerationSummary(
        out_dir=out_dir,
        events_by_type=dict(zip(EVENT_TYPES, events_by_type.tolist(), strict=True)),
        rows_written=rows_written,
        seconds=time.perf_counter() - started,
    )


def write_catalogue_files(config: GeneratorConfig, out_dir: str | Path) -> dict[str, int]:
    """The world's `category_tree.csv`, item property files and ground truth, without events.csv:
    the reference data for events that `generate_events` streams (rows written per file)."""
    return _write_catalogue(config, synthetic_world(config), Path(out_dir))


def _write_catalogue(config: GeneratorConfig, world: World, out_dir: Path) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_written = {CATEGORY_TREE_FILE: write_category_tree(world.categories, out_dir / CATEGORY_TREE_FILE)}
    part_paths = (out_dir / ITEM_PROPERTIES_FILES[0], out_dir / ITEM_PROPERTIES_FILES[1])
    part_rows = write_item_properties(config, world.items, part_paths, _rng(config, _PROPERTIES))
    rows_written.update(zip(ITEM_PROPERTIES_FILES, part_rows, strict=True))
    truth_rows = write_ground_truth(world, out_dir / GROUND_TRUTH_DIR)
    rows_written.update({f"{GROUND_TRUTH_DIR}/{name}": rows for name, rows in truth_rows.items()})
    return rows_written


def _event_columns(config: GeneratorConfig, world: World) -> Iterator[EventColumns]:
    weights = hourly_weights(config.start_date, config.days, config.promotions)
    sessions_per_hour = _rng(config, _TRAFFIC).multinomial(config.n_sessions, weights / weights.sum())
    sessions_before_hour_end = np.cumsum(sessions_per_hour)
    sampler = Sampler(world)
    for chunk, first in enumerate(range(0, config.n_sessions, config.sessions_per_chunk)):
        rng = _rng(config, _SESSIONS, chunk)
        sessions = np.arange(first, min(first + config.sessions_per_chunk, config.n_sessions))
        start_ms = session_starts_ms(rng, config.start_ms, sessions_before_hour_end, sessions)
        yield session_events(config, sampler, rng, sessions, start_ms)


def _contract_frame(
    config: GeneratorConfig, world: World, events: EventColumns, first_ordinal: int
) -> pd.DataFrame:
    n = len(events)
    is_search = events.query_category != NO_ID
    query = np.full(n, None, dtype=object)
    query[is_search] = world.categories.name[events.query_category[is_search]]
    text = pa.large_string()
    session_number = pc.cast(pa.array(events.session), text)
    columns = {
        "ts": events.ts,
        "visitor_id": events.visitor_id,
        "event": pc.take(pa.array(EVENT_TYPES, text), events.event),
        "item_id": pd.arrays.IntegerArray(events.item_id, events.item_id == NO_ID),
        "transaction_id": pd.arrays.IntegerArray(events.transaction_id, events.transaction_id == NO_ID),
        "session_id": pc.binary_join_element_wise(
            pa.scalar(f"{config.seed}-", text), session_number, pa.scalar("", text)
        ),
        "query": query,
        "source": pa.repeat(pa.scalar(SOURCE, text), n),
        "schema_version": np.full(n, SCHEMA_VERSION),
    }
    ordinal = np.arange(first_ordinal, first_ordinal + n)
    columns["event_id"] = event_ids(columns, source=SOURCE, ordinal=ordinal)
    return event_frame(columns)


def _rng(config: GeneratorConfig, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, *keys])
