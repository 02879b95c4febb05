"""The clickstream event contract and its encodings (see `contract` for the one definition)."""

from clickrec_platform.events.batch import encode_batch
from clickrec_platform.events.codec import InvalidEvent, decode, encode, kafka_key
from clickrec_platform.events.contract import (
    EVENT_TYPES,
    FIELD_NAMES,
    FIELDS,
    INTERACTION_WEIGHTS,
    SCHEMA_VERSION,
    VALIDATION_RULES,
    Event,
    FieldSpec,
    ValidationRules,
    event_frame,
    frame_to_events,
    spark_schema,
)
from clickrec_platform.events.ids import event_id, event_ids
from clickrec_platform.events.validation import RejectReasons, check_event, flag_invalid_rows, invalid_reasons

__all__ = [
    "EVENT_TYPES",
    "FIELDS",
    "FIELD_NAMES",
    "INTERACTION_WEIGHTS",
    "SCHEMA_VERSION",
    "VALIDATION_RULES",
    "Event",
    "FieldSpec",
    "InvalidEvent",
    "RejectReasons",
    "ValidationRules",
    "check_event",
    "decode",
    "encode",
    "encode_batch",
    "event_frame",
    "event_id",
    "event_ids",
    "flag_invalid_rows",
    "frame_to_events",
    "invalid_reasons",
    "kafka_key",
    "spark_schema",
]
