"""One event to and from its Kafka form: key = visitor id in decimal, value = compact JSON."""

from __future__ import annotations

from typing import Any

import orjson

from clickrec_platform.events.contract import (
    FIELDS,
    INT64_MAX,
    INT64_MIN,
    SCHEMA_VERSION,
    VALIDATION_RULES,
    Event,
)
from clickrec_platform.events.validation import check_event, unknown_event_reason


class InvalidEvent(ValueError):
    """A message that is not a valid event; `reason` is a short machine-usable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(event: Event) -> bytes:
    """The event's JSON value, fields in contract order."""
    return orjson.dumps(event)


def kafka_key(visitor_id: int) -> bytes:
    """Keying by visitor keeps each visitor's events in order on one partition."""
    return str(visitor_id).encode()


def decode(value: bytes | str) -> Event:
    """Parse and validate one message value; raises `InvalidEvent` saying why it is not an event.

    A nullable field may be left out (it reads as null, as producers in other languages write
    events); a required one may not. When a message breaks several rules, the reason is the first
    in this precedence, the one a producer's developer has to fix first:

    1. `malformed_json`, `not_object`: the value is not a JSON object at all;
    2. `unsupported_schema_version`: another version of the contract, judged by none of this one's rules;
    3. `unknown_event:<e>`: an event type this contract does not define (its fields are unknown too);
    4. per field, in contract order: `missing_field:<f>` (required and absent), `null_field:<f>`,
       `bad_type:<f>`, `out_of_range:<f>` (beyond int64);
    5. the value rules of `check_event`, in `ValidationRules`' order.

    Unknown keys are ignored, so that a producer may add a field before every consumer knows it.
    """
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidEvent("malformed_json") from None
    if not isinstance(document, dict):
        raise InvalidEvent("not_object")
    # A newer schema may have other fields; judging it by this version's fields would mislead.
    version = document.get("schema_version")
    if type(version) is int and version != SCHEMA_VERSION:
        raise InvalidEvent("unsupported_schema_version")
    kind = document.get("event")
    if type(kind) is str and kind not in VALIDATION_RULES.event_types:
        raise InvalidEvent(unknown_event_reason(kind))
    values: dict[str, Any] = {}
    for spec in FIELDS:
        field_value = document.get(spec.name)
        if field_value is None:
            if not spec.nullable:
                raise InvalidEvent(f"{'null' if spec.name in document else 'missing'}_field:{spec.name}")
        elif type(field_value) is not spec.python_type:  # exact: JSON true is a bool, not an id
            raise InvalidEvent(f"bad_type:{spec.name}")
        elif type(field_value) is int and not INT64_MIN <= field_value <= INT64_MAX:  # (its type is the spec's)
            raise InvalidEvent(f"out_of_range:{spec.name}")
        values[spec.name] = field_value
    event = Event(**values)
    reason = check_event(event)
    if reason is not None:
        raise InvalidEvent(reason)
    return event
