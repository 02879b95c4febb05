"""Deterministic event ids: replaying the same source yields the same ids.

An id is the 128-bit BLAKE2b digest, in hex, of the event's source identity written as
`source|visitor_id|ts|event|item_id|transaction_id|ordinal` (null ids written as empty text).
`ordinal` is the event's position in its source (a RetailRocket line number, the generator's
event counter), so two events that agree on every field, such as a double click within one
millisecond, still get different ids. Any language can recompute an id from that recipe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_DIGEST_BYTES = 16
IDENTITY_FIELDS = ("visitor_id", "ts", "event", "item_id", "transaction_id")


def event_id(
    *,
    source: str,
    visitor_id: int,
    ts: int,
    event: str,
    item_id: int | None,
    transaction_id: int | None,
    ordinal: int,
) -> str:
    """The id of one event."""
    parts = (source, visitor_id, ts, event, item_id, transaction_id, ordinal)  # IDENTITY_FIELDS order
    identity = "|".join("" if part is None else str(part) for part in parts)
    return hashlib.blake2b(identity.encode(), digest_size=_DIGEST_BYTES).hexdigest()


def event_ids(columns: Mapping[str, Any], *, source: str, ordinal: Any) -> list[str]:
    """The ids of many events; `columns` maps each identity field to a column (numpy, pandas or
    Arrow; the ids may hold nulls) and may hold other columns too."""
    text = pa.large_string()
    parts = [*(columns[name] for name in IDENTITY_FIELDS), ordinal]
    as_text = [pc.fill_null(pc.cast(_arrow(part), text), pa.scalar("", text)) for part in parts]
    joined = pc.binary_join_element_wise(pa.scalar(source, text), *as_text, pa.scalar("|", text))
    identities = joined.cast(pa.large_binary()).to_pylist()
    # Hashing is the one per-event Python step; BLAKE2b in C keeps it near a million ids a second.
    blake2b = hashlib.blake2b
    return [blake2b(identity, digest_size=_DIGEST_BYTES).hexdigest() for identity in identities]


def _arrow(column: Any) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column if isinstance(column, pa.Array) else pa.array(column)
