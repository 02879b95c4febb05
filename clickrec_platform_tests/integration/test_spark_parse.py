"""The stream job's Spark parser gives every message the same verdict as the Python decoder."""

from __future__ import annotations

import orjson
import pytest

from clickrec_platform.events.codec import InvalidEvent, decode, encode
from clickrec_platform.events.contract import FIELD_NAMES, FIELDS, frame_to_events
from clickrec_platform.events.spark_parse import REASON, parse_events
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration


def _variants_of(good: dict) -> list[str]:
    """Messages breaking each rule in turn (and some that keep to them)."""
    def with_(**changes) -> str:
        return orjson.dumps({**good, **changes}).decode()

    def without(*names: str, **changes) -> str:
        return orjson.dumps({k: v for k, v in {**good, **changes}.items() if k not in names}).decode()

    nullable = [spec.name for spec in FIELDS if spec.nullable]

    return [
        "not json at all", "", "[1, 2, 3]", '"a string"', "42", "null", "{", '{"event_id": }',
        "{}", with_(schema_version=2), with_(schema_version="1"), with_(schema_version=None),
        *[without(name) for name in FIELD_NAMES],
        *[with_(**{name: None}) for name in FIELD_NAMES],
        with_(visitor_id="17"), with_(visitor_id=1.5), with_(visitor_id=True), with_(ts=1.7e12),
        with_(item_id="x"), with_(item_id=[1]), with_(event_id=5), with_(source={"a": 1}),
        with_(visitor_id=9_223_372_036_854_775_807),
        *[with_(visitor_id=123454321).replace("123454321", big)  # orjson will not write these
          for big in ("9223372036854775808", "-9223372036854775809", "123456789012345678901234")],
        with_(event_id=""), with_(source=""), with_(event="purchase"), with_(event="x" * 100),
        with_(event="VIEW"), with_(visitor_id=-1), with_(item_id=-3), with_(ts=1_000), with_(ts=4_200_000_000_000),
        with_(event="view", item_id=None), with_(event="search", item_id=None, query="shoes"),
        with_(event="search", item_id=None, query=""), with_(event="search", item_id=None, query=None),
        with_(event="transaction", transaction_id=None), with_(event="transaction", transaction_id=77),
        with_(event="view", transaction_id=77), with_(event="like", query="q"),
        with_(extra_field="ignored"), with_(session_id=None), with_(query='quote " and \\ backslash'),
        orjson.dumps({**good, "event": "like"}).decode(), "  " + with_(), with_(event="view\u00e9"),
        # Absent nullable fields read as null (valid, or the rule that needs them says so).
        without(*nullable), without("query"), without("transaction_id", "session_id"),
        without("item_id", "transaction_id", event="search", query="shoes"), without("query", event="search"),
        without("item_id"), without("query", "session_id", event="transaction", transaction_id=5),
        without("transaction_id", event="transaction"),
        # Several faults: one reason, by the contract's precedence.
        without("visitor_id", "query", event="teleport"), with_(event="teleport", visitor_id=None, ts="x"),
        without("event_id", "source", event="x" * 40), with_(schema_version=2, event="teleport"),
        without("source", event=7), without("event", "visitor_id"), with_(event="teleport", schema_version="1"),
        with_(event="", item_id=-1), with_(event=None, visitor_id=-1), without(*nullable, event="purchase"),
    ]


def _python_verdict(message: str) -> str | None:
    try:
        decode(message)
    except InvalidEvent as invalid:
        return invalid.reason
    return None


def test_spark_and_python_agree_on_every_message(spark):
    frame = next(generate_events(GeneratorConfig(events=400, seed=2, days=1)))
    events = frame_to_events(frame)
    good = orjson.loads(encode(next(e for e in events if e.event == "view")))
    messages = [encode(e).decode() for e in events] + _variants_of(good)

    rows = parse_events(spark.createDataFrame([(i, m) for i, m in enumerate(messages)], "n int, value string")
                        ).select("n", REASON, *FIELD_NAMES).orderBy("n").collect()

    assert len(rows) == len(messages)
    disagreements = [(messages[r.n], _python_verdict(messages[r.n]), r[REASON]) for r in rows
                     if _python_verdict(messages[r.n]) != r[REASON]]
    assert disagreements == []
    # Valid rows carry exactly the values the Python decoder reads.
    for row in rows:
        if row[REASON] is None:
            decoded = decode(messages[row.n])
            assert tuple(row[name] for name in FIELD_NAMES) == tuple(getattr(decoded, n) for n in FIELD_NAMES)
    assert sum(r[REASON] is None for r in rows) >= len(events)
