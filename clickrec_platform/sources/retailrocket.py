"""Streaming reader for the Kaggle RetailRocket files (DESIGN.md, "RetailRocket input").

Each reader walks its file in chunks of lines, so the 20M-row item property log is never in
memory whole, and accounts for every row in a `RejectLedger`: a malformed row is rejected with
its line number, raw text and reason, never dropped silently and never fatal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clickrec_platform.events.contract import SCHEMA_VERSION, VALIDATION_RULES, event_frame
from clickrec_platform.events.ids import event_ids
from clickrec_platform.events.validation import RejectReasons, flag_invalid_rows
from clickrec_platform.sources.csv_lines import (
    LineChunk,
    ParsedIntegers,
    parse_floats,
    parse_integers,
    read_line_chunks,
    split_fields,
)
from clickrec_platform.sources.rejects import RejectLedger

SOURCE = "retailrocket"

EVENTS_FILE = "events.csv"
ITEM_PROPERTIES_FILES = ("item_properties_part1.csv", "item_properties_part2.csv")
CATEGORY_TREE_FILE = "category_tree.csv"

EVENTS_HEADER = ("timestamp", "visitorid", "event", "itemid", "transactionid")
ITEM_PROPERTIES_HEADER = ("timestamp", "itemid", "property", "value")
CATEGORY_TREE_HEADER = ("categoryid", "parentid")

# The only properties in clear text; every other property name and value is hashed.
CATEGORY_PROPERTY = "categoryid"
AVAILABLE_PROPERTY = "available"
# Hashed, but widely taken to be the price; its values look like "n15360.000".
PRICE_PROPERTY = "790"
# Hashed values write numbers as "n" + the number; anything else in them is an opaque token.
_HASHED_NUMBER = r"^n-?[0-9]+(\.[0-9]+)?$"

DEFAULT_CHUNK_ROWS = 1_000_000
_WHOLE_FILE = sys.maxsize


def read_events(
    path: str | Path,
    ledger: RejectLedger,
    *,
    source: str = SOURCE,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Contract-shaped event frames from an `events.csv`, one per chunk of lines.

    `event_id` hashes each row with its line number, so re-reading the file gives the same ids.
    Rejected: lines without exactly five fields, a timestamp or visitor id that is missing or
    not an integer, an item or transaction id that is not an integer, and rows breaking a
    contract rule (`VALIDATION_RULES`): unknown event, negative id, timestamp not in
    milliseconds, no item, a transaction without a transaction id or anything else with one.
    """
    path = Path(path)
    for chunk in read_line_chunks(path, EVENTS_HEADER, chunk_rows):
        reasons = RejectReasons(len(chunk.lines))
        ts_text, visitor_text, event_text, item_text, transaction_text = _fields(
            chunk, EVENTS_HEADER, reasons
        )
        ts = _integers(ts_text, reasons, "ts")
        visitor = _integers(visitor_text, reasons, "visitor_id")
        reasons.flag(_is_empty(event_text), "missing_field:event")
        # An empty item or transaction id is a null; whether it may be null is a contract rule.
        item = _integers(item_text, reasons, "item_id", required=False)
        transaction = _integers(transaction_text, reasons, "transaction_id", required=False)
        n_rows = len(chunk.lines)
        columns = {
            "ts": ts.values,
            "visitor_id": visitor.values,
            "event": event_text,
            "item_id": item.nullable(),
            "transaction_id": transaction.nullable(),
            "source": pa.repeat(pa.scalar(source, pa.large_string()), n_rows),
            "schema_version": np.full(n_rows, SCHEMA_VERSION),
        }
        columns["event_id"] = event_ids(columns, source=source, ordinal=chunk.line_numbers)
        frame = event_frame(columns)
        flag_invalid_rows(frame, reasons)
        ledger.record(path.name, chunk, reasons)
        yield frame[reasons.accepted].reset_index(drop=True)


def read_item_properties(
    paths: Iterable[str | Path],
    ledger: RejectLedger,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The property change log as tidy frames: item_id, ts, property, value_text, value_number.

    `value_number` is the number in an `n`-encoded value (`n15360.000` is 15360.0) and the
    integer of a `categoryid` or `available` value; NaN for anything else. A value may hold
    commas, so only lines with fewer than four fields are malformed. Also rejected: a missing or
    non-integer timestamp or item id, an empty property or value, a timestamp not in
    milliseconds, a negative item id, a `categoryid` that is not a non-negative integer and an
    `available` that is not 0 or 1.
    """
    for path in map(Path, paths):
        for chunk in read_line_chunks(path, ITEM_PROPERTIES_HEADER, chunk_rows):
            reasons = RejectReasons(len(chunk.lines))
            ts_text, item_text, property_text, value_text = _fields(
                chunk, ITEM_PROPERTIES_HEADER, reasons, last_takes_rest=True
            )
            ts = _integers(ts_text, reasons, "ts")
            item = _integers(item_text, reasons, "item_id")
            reasons.flag(_is_empty(property_text), "missing_field:property")
            reasons.flag(_is_empty(value_text), "missing_field:value")
            reasons.flag(_outside_ts_range(ts.values), "ts_out_of_range")
            reasons.flag(item.values < 0, "negative_id:item_id")

            prop = property_text.to_numpy(zero_copy_only=False)
            is_category, is_available = prop == CATEGORY_PROPERTY, prop == AVAILABLE_PROPERTY
            clear = parse_integers(value_text)
            reasons.flag(is_category & ~(clear.present & (clear.values >= 0)), "bad_value:categoryid")
            reasons.flag(
                is_available & ~(clear.present & np.isin(clear.values, (0, 1))), "bad_value:available"
            )
            number = np.where(
                is_category | is_available,
                clear.values,
                parse_floats(value_text, _HASHED_NUMBER, prefix_length=1),
            )

            ledger.record(path.name, chunk, reasons)
            keep = reasons.accepted
            yield pd.DataFrame(
                {
                    "item_id": item.values[keep],
                    "ts": ts.values[keep],
                    "property": prop[keep],
                    "value_text": value_text.to_numpy(zero_copy_only=False)[keep],
                    "value_number": number[keep].astype(np.float64),
                }
            )


def read_category_tree(path: str | Path, ledger: RejectLedger) -> pd.DataFrame:
    """The category tree as category_id and parent_id (null for a root).

    The file is small (about 1,700 rows), so it is read in one piece: a category id seen again
    is then rejected as `duplicate_category` wherever it appears. Also rejected: other than two
    fields, a missing or non-integer category id, a non-integer parent id, negative ids, and a
    category that is its own parent.
    """
    path = Path(path)
    trees = [pd.DataFrame({"category_id": pd.Series(dtype="int64"), "parent_id": pd.Series(dtype="Int64")})]
    for chunk in read_line_chunks(path, CATEGORY_TREE_HEADER, _WHOLE_FILE):
        reasons = RejectReasons(len(chunk.lines))
        category_text, parent_text = _fields(chunk, CATEGORY_TREE_HEADER, reasons)
        category = _integers(category_text, reasons, "category_id")
        parent = _integers(parent_text, reasons, "parent_id", required=False)
        reasons.flag(category.values < 0, "negative_id:category_id")
        reasons.flag(parent.values < 0, "negative_id:parent_id")
        reasons.flag(parent.present & (parent.values == category.values), "self_parent")
        seen_before = np.zeros(len(chunk.lines), dtype=bool)
        seen_before[reasons.accepted] = pd.Series(category.values[reasons.accepted]).duplicated().to_numpy()
        reasons.flag(seen_before, "duplicate_category")
        ledger.record(path.name, chunk, reasons)
        keep = reasons.accepted
        trees.append(
            pd.DataFrame({"category_id": category.values[keep], "parent_id": parent.nullable()[keep]})
        )
    return pd.concat(trees, ignore_index=True)


def _fields(
    chunk: LineChunk, header: tuple[str, ...], reasons: RejectReasons, *, last_takes_rest: bool = False
) -> list[pa.Array]:
    reasons.flag(chunk.empty, "empty_line")
    well_formed, fields = split_fields(chunk.lines, len(header), last_takes_rest=last_takes_rest)
    reasons.flag(~well_formed, "wrong_column_count")
    return fields


def _integers(text: pa.Array, reasons: RejectReasons, name: str, *, required: bool = True) -> ParsedIntegers:
    parsed = parse_integers(text)
    if required:
        reasons.flag(parsed.empty, f"missing_field:{name}")
    reasons.flag(parsed.malformed, f"bad_type:{name}")
    return parsed


def _is_empty(text: pa.Array) -> np.ndarray:
    return pc.equal(text, "").to_numpy(zero_copy_only=False)


def _outside_ts_range(ts: np.ndarray) -> np.ndarray:
    return (ts < VALIDATION_RULES.ts_min_ms) | (ts >= VALIDATION_RULES.ts_max_ms)
