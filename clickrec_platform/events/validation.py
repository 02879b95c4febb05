"""The contract's validation rules, applied to one event or to a whole frame.

Both functions read `VALIDATION_RULES` and test rules in the same order, so a row gets the same
reason code whichever path checks it (the unit tests hold them to that). The order is the
contract's precedence of reasons (`ValidationRules`): another schema version, then an unknown event
type, then a null required field, then the value rules; a message's JSON shape comes before all of
them (`codec.decode`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clickrec_platform.events.contract import FIELDS, SCHEMA_VERSION, VALIDATION_RULES, Event

_RULES = VALIDATION_RULES
# Reason codes echo an unknown event name; a cap keeps a hostile value from bloating them.
ECHO_CHARS = 32


def check_event(event: Event) -> str | None:
    """The reason code of the first rule `event` breaks, or None when it is valid."""
    if event.schema_version is not None and event.schema_version != SCHEMA_VERSION:
        return "unsupported_schema_version"
    if event.event is not None and event.event not in _RULES.event_types:
        return unknown_event_reason(event.event)
    for spec in FIELDS:
        if not spec.nullable and getattr(event, spec.name) is None:
            return f"null_field:{spec.name}"
    for name in _RULES.non_empty_fields:
        if getattr(event, name) == "":
            return f"empty_field:{name}"
    for name in _RULES.non_negative_fields:
        value = getattr(event, name)
        if value is not None and value < 0:
            return f"negative_id:{name}"
    if not _RULES.ts_min_ms <= event.ts < _RULES.ts_max_ms:
        return "ts_out_of_range"
    if event.item_id is None and event.event not in _RULES.events_without_item:
        return "item_required"
    wants_transaction = event.event in _RULES.events_with_transaction
    if wants_transaction and event.transaction_id is None:
        return "transaction_required"
    if not wants_transaction and event.transaction_id is not None:
        return "unexpected_transaction_id"
    wants_query = event.event in _RULES.events_with_query
    if wants_query and not event.query:
        return "query_required"
    if not wants_query and event.query is not None:
        return "unexpected_query"
    return None


def unknown_event_reason(event: str) -> str:
    return f"unknown_event:{event[:ECHO_CHARS]}"


class RejectReasons:
    """Per-row reject reasons, filled rule by rule; a row keeps the first reason it gets."""

    def __init__(self, n_rows: int) -> None:
        self.values = np.full(n_rows, None, dtype=object)
        self.accepted = np.ones(n_rows, dtype=bool)

    def flag(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        """Give `reason` (one code, or one per row) to the still-accepted rows in `mask`."""
        hit = np.asarray(mask, dtype=bool) & self.accepted
        if hit.any():
            self.values[hit] = reason if isinstance(reason, str) else np.asarray(reason, dtype=object)[hit]
            self.accepted &= ~hit


def flag_invalid_rows(frame: pd.DataFrame, reasons: RejectReasons) -> None:
    """Add the contract rules' reasons for the rows of a contract frame to `reasons`."""
    reasons.flag(_values(frame["schema_version"] != SCHEMA_VERSION), "unsupported_schema_version")
    event = frame["event"]
    unknown = ~event.isin(_RULES.event_types).to_numpy() & ~_is_null(event)
    if unknown.any():
        reasons.flag(unknown, ("unknown_event:" + event.astype(str).str.slice(0, ECHO_CHARS)).to_numpy())
    for spec in FIELDS:
        if not spec.nullable:
            reasons.flag(_is_null(frame[spec.name]), f"null_field:{spec.name}")
    for name in _RULES.non_empty_fields:
        reasons.flag(_values(frame[name] == ""), f"empty_field:{name}")
    for name in _RULES.non_negative_fields:
        reasons.flag(_values(frame[name] < 0), f"negative_id:{name}")
    ts = frame["ts"]
    reasons.flag(_values((ts < _RULES.ts_min_ms) | (ts >= _RULES.ts_max_ms)), "ts_out_of_range")
    may_lack_item = event.isin(_RULES.events_without_item).to_numpy()
    reasons.flag(_is_null(frame["item_id"]) & ~may_lack_item, "item_required")
    wants_transaction = event.isin(_RULES.events_with_transaction).to_numpy()
    has_transaction = ~_is_null(frame["transaction_id"])
    reasons.flag(wants_transaction & ~has_transaction, "transaction_required")
    reasons.flag(~wants_transaction & has_transaction, "unexpected_transaction_id")
    wants_query = event.isin(_RULES.events_with_query).to_numpy()
    query = frame["query"]
    has_query = ~_is_null(query)
    reasons.flag(wants_query & ~(has_query & _values(query != "")), "query_required")
    reasons.flag(~wants_query & has_query, "unexpected_query")


def invalid_reasons(frame: pd.DataFrame) -> np.ndarray:
    """Per row of a contract frame, the reason code of the first broken rule, or None."""
    reasons = RejectReasons(len(frame))
    flag_invalid_rows(frame, reasons)
    return reasons.values


def _is_null(column: pd.Series) -> np.ndarray:
    return column.isna().to_numpy()


def _values(comparison: pd.Series) -> np.ndarray:
    # Comparisons on nullable columns yield <NA> for null rows; a null never breaks these rules.
    return comparison.to_numpy(dtype=bool, na_value=False)
