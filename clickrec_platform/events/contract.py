"""The clickstream event contract, schema_version 1.

`Event` is the one definition of the event's fields. `FIELDS`, the pandas column types, the
Spark schema, the JSON codec and the batch encoder are all derived from it, so adding or changing
a field here changes every consumer at once. The rules a valid event obeys are data
(`VALIDATION_RULES`) so the Spark stream job can apply the same rules as Python does.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1

EVENT_TYPES: tuple[str, ...] = ("view", "addtocart", "transaction", "like", "search")

# How strongly an event says "this visitor wants this item"; search names no item, so has none.
INTERACTION_WEIGHTS: Mapping[str, int] = MappingProxyType(
    {"view": 1, "addtocart": 3, "like": 4, "transaction": 5}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One clickstream event as it travels on the `clickstream` Kafka topic."""

    event_id: str
    ts: int  # event time, epoch milliseconds (UTC)
    visitor_id: int
    event: str
    item_id: int | None = None
    transaction_id: int | None = None
    session_id: str | None = None
    query: str | None = None
    source: str
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One contract field, as every representation (JSON, pandas, Arrow, Spark) needs to see it."""

    name: str
    python_type: type  # int or str
    nullable: bool

    @property
    def spark_type_name(self) -> str:
        return _SPARK_TYPE_NAMES[self.python_type]

    @property
    def pandas_dtype(self) -> str:
        if self.python_type is str:
            # Arrow-backed: no Python object per value, and zero-copy to Arrow for the encoder.
            return "string[pyarrow]"
        # pandas' plain int64 cannot hold a null; its nullable twin can.
        return "Int64" if self.nullable else "int64"


_SPARK_TYPE_NAMES = {int: "long", str: "string"}


def _field_spec(name: str, annotation: Any) -> FieldSpec:
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    non_null = [member for member in members if member is not type(None)]
    if len(non_null) != 1 or non_null[0] not in _SPARK_TYPE_NAMES:
        raise TypeError(f"contract field {name!r} has unsupported type {annotation!r}")
    return FieldSpec(name, non_null[0], nullable=len(non_null) < len(members))


_HINTS = typing.get_type_hints(Event)
FIELDS: tuple[FieldSpec, ...] = tuple(_field_spec(f.name, _HINTS[f.name]) for f in dataclasses.fields(Event))
FIELD_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIELDS)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _epoch_ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ValidationRules:
    """What a valid event satisfies beyond its field types; shared with the Spark stream job.

    A message that breaks several rules gets one reason, the first in this precedence, chosen so
    that a producer's developer first sees what makes the rest moot:

    1. `malformed_json`, `not_object`: not a JSON object (the decoders' own checks);
    2. `unsupported_schema_version`: another contract version; none of this one's rules apply;
    3. `unknown_event:<e>`: a type this contract does not define, so which fields it needs is unknown;
    4. field by field, in contract order: `missing_field:<f>` (a required field absent; a nullable
       one may be absent and reads as null), `null_field:<f>`, `bad_type:<f>`, `out_of_range:<f>`;
    5. the value rules below, in this order: `empty_field:<f>`, `negative_id:<f>`,
       `ts_out_of_range`, `item_required`, `transaction_required`, `unexpected_transaction_id`,
       `query_required`, `unexpected_query`.

    `codec.decode`, `validation.check_event`/`invalid_reasons` and the Spark parser all follow it
    (`test_contract.py`, `test_spark_parse.py`).
    """

    event_types: tuple[str, ...]
    # Ids are non-negative rather than positive: RetailRocket numbers visitors and transactions from 0.
    non_negative_fields: tuple[str, ...]
    non_empty_fields: tuple[str, ...]
    # Anything outside 2000..2100 is almost surely seconds or microseconds mistaken for milliseconds.
    ts_min_ms: int
    ts_max_ms: int
    events_without_item: frozenset[str]  # the only events whose item_id may be null
    events_with_transaction: frozenset[str]  # transaction_id is required for, and only for, these
    events_with_query: frozenset[str]  # query is required for, and only for, these


VALIDATION_RULES = ValidationRules(
    event_types=EVENT_TYPES,
    non_negative_fields=("visitor_id", "item_id", "transaction_id"),
    non_empty_fields=("event_id", "source"),
    ts_min_ms=_epoch_ms(2000),
    ts_max_ms=_epoch_ms(2100),
    events_without_item=frozenset({"search"}),
    events_with_transaction=frozenset({"transaction"}),
    events_with_query=frozenset({"search"}),
)


def spark_schema() -> Any:
    """The event as a `pyspark.sql.types.StructType`; imports pyspark only when called."""
    from pyspark.sql import types as spark_types

    by_name = {"long": spark_types.LongType(), "string": spark_types.StringType()}
    return spark_types.StructType(
        [spark_types.StructField(spec.name, by_name[spec.spark_type_name], spec.nullable) for spec in FIELDS]
    )


def event_frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame in contract column order and dtypes; absent nullable columns are all null."""
    n_rows = len(next(iter(columns.values()))) if columns else 0
    data = {}
    for spec in FIELDS:
        if spec.name in columns:
            values = columns[spec.name]
        elif spec.nullable:
            values = np.full(n_rows, None, dtype=object)
        else:
            raise KeyError(f"event frame needs column {spec.name!r}")
        data[spec.name] = pd.Series(values, dtype=spec.pandas_dtype, copy=False).reset_index(drop=True)
    return pd.DataFrame(data)


def frame_to_events(frame: pd.DataFrame) -> list[Event]:
    """Rows of a contract frame as `Event`s, pandas' missing values turned back into None."""
    columns = [frame[name].astype(object).where(frame[name].notna(), None).tolist() for name in FIELD_NAMES]
    return [Event(**dict(zip(FIELD_NAMES, row, strict=True))) for row in zip(*columns, strict=True)]
