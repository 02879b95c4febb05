"""The event contract: its fields, JSON codec, batch encoder, ids, validation and Spark schema."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from clickrec_platform.events import (
    FIELD_NAMES,
    FIELDS,
    INTERACTION_WEIGHTS,
    Event,
    InvalidEvent,
    check_event,
    decode,
    encode,
    encode_batch,
    event_frame,
    event_id,
    event_ids,
    frame_to_events,
    invalid_reasons,
    kafka_key,
    spark_schema,
)


def make_event(**changes: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": "3f2a",
        "ts": 1433221332117,
        "visitor_id": 257597,
        "event": "view",
        "item_id": 355908,
        "source": "retailrocket",
    }
    return Event(**{**fields, **changes})


VALID_EVENTS = [
    make_event(),
    make_event(event="addtocart", visitor_id=0, item_id=0),
    make_event(event="transaction", transaction_id=14418, session_id="s-1"),
    make_event(event="like", source="synthetic"),
    make_event(
        event="search", item_id=None, query='red "shoes" \\ \n\t\x00 é 😀 \u2028\x7f', session_id="42-7"
    ),
]


def as_frame(events: list[Event]) -> pd.DataFrame:
    return event_frame({name: [getattr(event, name) for event in events] for name in FIELD_NAMES})


def test_fields_are_those_of_the_design_contract() -> None:
    assert FIELD_NAMES == (
        "event_id",
        "ts",
        "visitor_id",
        "event",
        "item_id",
        "transaction_id",
        "session_id",
        "query",
        "source",
        "schema_version",
    )
    assert {spec.name for spec in FIELDS if spec.nullable} == {
        "item_id",
        "transaction_id",
        "session_id",
        "query",
    }
    assert {spec.name for spec in FIELDS if spec.python_type is int} == {
        "ts",
        "visitor_id",
        "item_id",
        "transaction_id",
        "schema_version",
    }
    assert make_event().schema_version == 1


def test_interaction_weights_are_the_design_weights() -> None:
    assert dict(INTERACTION_WEIGHTS) == {"view": 1, "addtocart": 3, "like": 4, "transaction": 5}


@pytest.mark.parametrize("event", VALID_EVENTS, ids=lambda event: event.event)
def test_decode_inverts_encode(event: Event) -> None:
    assert decode(encode(event)) == event


def test_encoded_value_is_compact_json_in_contract_order() -> None:
    value = encode(make_event())
    assert list(orjson.loads(value)) == list(FIELD_NAMES)
    assert b" " not in value


def test_kafka_key_is_the_visitor_id_in_decimal() -> None:
    assert kafka_key(257597) == b"257597"
    assert kafka_key(0) == b"0"


def with_changes(**changes: object) -> bytes:
    document = orjson.loads(encode(make_event()))
    return orjson.dumps({**document, **changes})


def without(*names: str, **changes: object) -> bytes:
    document = {**orjson.loads(encode(make_event())), **changes}
    return orjson.dumps({key: value for key, value in document.items() if key not in names})


REJECTED = [
    (b'{"event_id": "3f2a", ', "malformed_json"),
    (b"[1, 2]", "not_object"),
    (without("source"), "missing_field:source"),
    (without("visitor_id", "source"), "missing_field:visitor_id"),  # the first in contract order
    (without("item_id"), "item_required"),  # absent reads as null; the rule says why that is wrong
    # Precedence: what makes the rest moot comes first.
    (without("visitor_id", "query", event="teleport"), "unknown_event:teleport"),
    (with_changes(event="teleport", visitor_id=None, ts="x"), "unknown_event:teleport"),
    (with_changes(schema_version=2, event="teleport"), "unsupported_schema_version"),
    (without("source", event=7), "bad_type:event"),
    (with_changes(visitor_id=None), "null_field:visitor_id"),
    (with_changes(visitor_id="257597"), "bad_type:visitor_id"),
    (with_changes(item_id=True), "bad_type:item_id"),
    (with_changes(ts=1433221332117.0), "bad_type:ts"),
    (with_changes(item_id=2**63), "out_of_range:item_id"),
    (with_changes(schema_version=2, item_id="renamed"), "unsupported_schema_version"),
    (with_changes(event_id=""), "empty_field:event_id"),
    (with_changes(event="foo"), "unknown_event:foo"),
    (with_changes(item_id=-1), "negative_id:item_id"),
    (with_changes(visitor_id=-3), "negative_id:visitor_id"),
    (with_changes(ts=1433221332), "ts_out_of_range"),
    (with_changes(item_id=None), "item_required"),
    (with_changes(event="transaction"), "transaction_required"),
    (with_changes(transaction_id=14418), "unexpected_transaction_id"),
    (with_changes(event="search", item_id=None), "query_required"),
    (with_changes(query="shoes"), "unexpected_query"),
]


@pytest.mark.parametrize(("value", "reason"), REJECTED, ids=[reason for _, reason in REJECTED])
def test_decode_rejects_with_a_reason_code(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(value)
    assert caught.value.reason == reason


@pytest.mark.parametrize("absent", [("query",), ("transaction_id",), ("session_id",),
                                    ("query", "transaction_id", "session_id")])
def test_decode_reads_absent_nullable_fields_as_null(absent: tuple[str, ...]) -> None:
    assert decode(without(*absent)) == make_event()
    search = make_event(event="search", item_id=None, query="shoes")
    document = {k: v for k, v in orjson.loads(encode(search)).items() if k not in ("item_id", *absent)}
    if "query" in absent:
        document["query"] = "shoes"
    assert decode(orjson.dumps(document)) == search


def test_decode_ignores_fields_it_does_not_know() -> None:
    assert decode(with_changes(referrer="newsletter")) == make_event()


def test_frame_validation_gives_the_reasons_single_events_get() -> None:
    events = [
        *VALID_EVENTS,
        make_event(event="foo"),
        make_event(item_id=-1),
        make_event(ts=5),
        make_event(item_id=None),
        make_event(event="transaction"),
        make_event(transaction_id=1),
        make_event(event="search", item_id=None),
        make_event(event="search", item_id=None, query=""),
        make_event(query="x"),
        make_event(source=""),
        make_event(schema_version=2),
        make_event(event="foo", item_id=-1),  # breaks two rules: the first in order wins
        make_event(event="foo", source=None),  # an unknown type comes before a null field
        make_event(event="foo", schema_version=2),  # another version comes before everything
    ]
    expected = [None] * len(VALID_EVENTS) + [
        "unknown_event:foo",
        "negative_id:item_id",
        "ts_out_of_range",
        "item_required",
        "transaction_required",
        "unexpected_transaction_id",
        "query_required",
        "query_required",
        "unexpected_query",
        "empty_field:source",
        "unsupported_schema_version",
        "unknown_event:foo",
        "unknown_event:foo",
        "unsupported_schema_version",
    ]
    assert [check_event(event) for event in events] == expected
    assert invalid_reasons(as_frame(events)).tolist() == expected


def test_event_frame_round_trips_events() -> None:
    frame = as_frame(VALID_EVENTS)
    assert list(frame.dtypes) == [pd.api.types.pandas_dtype(spec.pandas_dtype) for spec in FIELDS]
    assert frame_to_events(frame) == VALID_EVENTS


def test_batch_encoding_is_byte_identical_to_encoding_one_by_one() -> None:
    keys, values = encode_batch(as_frame(VALID_EVENTS))
    assert values == [encode(event) for event in VALID_EVENTS]
    assert keys == [kafka_key(event.visitor_id) for event in VALID_EVENTS]


def test_batch_encoding_takes_arrow_tables_and_plain_columns() -> None:
    columns = {name: [getattr(event, name) for event in VALID_EVENTS] for name in FIELD_NAMES}
    expected = encode_batch(as_frame(VALID_EVENTS))
    assert encode_batch(pa.table(columns)) == expected
    assert encode_batch(columns) == expected


def test_batch_encoding_refuses_what_is_not_the_contract() -> None:
    frame = as_frame(VALID_EVENTS)
    with pytest.raises(KeyError, match="query"):
        encode_batch(frame.drop(columns="query"))
    with pytest.raises(ValueError, match="event_id"):
        encode_batch(frame.assign(event_id=[None, "a", "b", "c", "d"]))


def test_event_ids_are_deterministic_unique_and_agree_with_the_scalar_form() -> None:
    events = VALID_EVENTS + VALID_EVENTS[:1]  # the same event twice, at another position
    frame = as_frame(events)
    ordinal = np.arange(2, 2 + len(events))
    ids = event_ids(frame, source="retailrocket", ordinal=ordinal)
    assert ids == event_ids(frame, source="retailrocket", ordinal=ordinal)
    assert len(set(ids)) == len(events)
    assert ids == [
        event_id(
            source="retailrocket",
            visitor_id=event.visitor_id,
            ts=event.ts,
            event=event.event,
            item_id=event.item_id,
            transaction_id=event.transaction_id,
            ordinal=int(position),
        )
        for event, position in zip(events, ordinal, strict=True)
    ]
    assert all(len(one_id) == 32 and int(one_id, 16) >= 0 for one_id in ids)


IDENTITY: dict[str, Any] = {
    "source": "retailrocket",
    "visitor_id": 257597,
    "ts": 1433221332117,
    "event": "view",
    "item_id": 355908,
    "transaction_id": None,
    "ordinal": 7,
}


@pytest.mark.parametrize(
    "change",
    [
        {"source": "synthetic"},
        {"visitor_id": 257598},
        {"ts": 1433221332118},
        {"event": "like"},
        {"item_id": 355909},
        {"item_id": None},
        {"transaction_id": 0},
        {"ordinal": 8},
    ],
    ids=lambda change: next(iter(change)),
)
def test_event_id_changes_with_every_part_of_the_identity(change: dict[str, Any]) -> None:
    assert event_id(**IDENTITY) != event_id(**{**IDENTITY, **change})


def test_spark_schema_is_built_from_the_contract_fields() -> None:
    from pyspark.sql import types

    schema = spark_schema()
    assert schema.fieldNames() == list(FIELD_NAMES)
    assert schema["visitor_id"].dataType == types.LongType()
    assert schema["event_id"].dataType == types.StringType()
    for field, spec in zip(schema.fields, FIELDS, strict=True):
        assert field.dataType == (types.LongType() if spec.python_type is int else types.StringType())
        assert field.nullable == spec.nullable
