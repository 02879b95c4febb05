"""The session-based evaluation protocol of the literature, on contract-shaped events.

It follows session-rec's RetailRocket preprocessing (Ludewig, Latifi & Jannach, "Empirical analysis
of session-based recommendation algorithms", UMUAI 2021; `preprocessing/session_based/
preprocess_retailrocket.py`: `load_data`, `filter_data`, `split_data`) so that our numbers can be
put beside published ones:

1. **Sessions** are cut over *all* of a visitor's events in time order, after more than
   `gap_minutes` idle or at a change of `session_id` (where both events carry one; session-rec's
   data has no such id, so `split_on_session_id=False` reproduces it exactly); only then are the
   configured event types kept (session-rec cuts on every event, then keeps views).
2. **Filters**, in session-rec's order, one pass each (not iterated to a fixed point): drop
   sessions of length 1, then items with fewer than `min_item_support` events (events, not
   sessions), then sessions shorter than `min_session_length`.
3. **Time split** by each session's *last* event: sessions ending in the last `test_days` days
   (counted back from the last event) are test, those ending in the `validation_days` before that
   are validation, the rest train. Test events whose item is not in train + validation are removed
   and test sessions left shorter than 2 dropped; validation likewise against train.
4. **Next-item cases**: every prefix of every evaluated session (lengths 1..n-1) with the item
   that followed it (`next_item_cases`), as session-rec's `evaluate_sessions` iterates.

Items get indices 0..n_items-1 in one space shared by all three splits (the items of train +
validation, sorted by id), so a model fitted on train alone can be asked about validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000
# A prefix needs one item and a target: session-rec keeps test sessions of length >= 2.
MIN_EVALUATED_LENGTH = 2


@dataclass(frozen=True)
class SessionProtocol:
    """How events become train/validation/test sessions (defaults: the issue's protocol)."""

    event_types: tuple[str, ...] = ("view",)
    gap_minutes: float = 30.0
    # Also cut where `session_id` changes. RetailRocket's files carry no session id, so session-rec
    # (and the issue's reference figures, run on `clickrec generate`'s events.csv) cut on gaps only.
    split_on_session_id: bool = True
    min_session_length: int = 2
    min_item_support: int = 5
    test_days: float = 2.0
    validation_days: float = 2.0

    def __post_init__(self) -> None:
        if not self.event_types:
            raise ValueError("event_types must name at least one event type")
        if self.gap_minutes <= 0:
            raise ValueError("gap_minutes must be > 0")
        if self.min_session_length < 1 or self.min_item_support < 1:
            raise ValueError("min_session_length and min_item_support must be >= 1")
        if self.test_days <= 0 or self.validation_days < 0:
            raise ValueError("test_days must be > 0 and validation_days >= 0")


@dataclass(frozen=True)
class Sessions:
    """Sessions as flat arrays: session s holds `items[offsets[s]:offsets[s + 1]]`, oldest first."""

    items: np.ndarray  # int64 item indices
    timestamps: np.ndarray  # int64 epoch ms, one per item
    offsets: np.ndarray  # int64, len(sessions) + 1
    visitor_ids: np.ndarray  # int64, one per session
    session_keys: np.ndarray  # int64, one per session: its number in the sessionised events
    n_items: int  # size of the item index space, for dense score vectors

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def session_of_event(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), self.lengths)

    @property
    def end_ms(self) -> np.ndarray:
        """Each session's last timestamp (its time for recency sampling and the split)."""
        return self.timestamps[self.offsets[1:] - 1] if len(self) else np.zeros(0, dtype=np.int64)

    def session(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One session's items and timestamps."""
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.items[start:end], self.timestamps[start:end]

    def select(self, keep: np.ndarray) -> Sessions:
        """The sessions where boolean `keep` is true, in their order."""
        keep_event = np.repeat(keep, self.lengths)
        return replace(
            self,
            items=self.items[keep_event],
            timestamps=self.timestamps[keep_event],
            offsets=np.r_[0, np.cumsum(self.lengths[keep])].astype(np.int64),
            visitor_ids=self.visitor_ids[keep],
            session_keys=self.session_keys[keep],
        )

    def to_frame(self, item_ids: np.ndarray | None = None) -> pd.DataFrame:
        """One row per event (session_key, visitor_id, ts, item): for export and inspection."""
        session = self.session_of_event
        return pd.DataFrame(
            {
                "session_key": self.session_keys[session],
                "visitor_id": self.visitor_ids[session],
                "ts": self.timestamps,
                "item_index": self.items,
                **({"item_id": item_ids[self.items]} if item_ids is not None else {}),
            }
        )

    @classmethod
    def from_lists(
        cls,
        item_lists: Sequence[Sequence[int]],
        timestamp_lists: Sequence[Sequence[int]] | None = None,
        n_items: int | None = None,
    ) -> Sessions:
        """Small hand-written sessions (tests, examples); timestamps default to 1 s per event,
        each session starting where the last ended, so list order is time order."""
        lengths = np.array([len(items) for items in item_lists], dtype=np.int64)
        items = np.fromiter((i for items in item_lists for i in items), dtype=np.int64, count=int(lengths.sum()))
        if timestamp_lists is None:
            timestamps = np.arange(1, len(items) + 1, dtype=np.int64) * 1000
        else:
            timestamps = np.fromiter(
                (t for ts in timestamp_lists for t in ts), dtype=np.int64, count=int(lengths.sum())
            )
        return cls(
            items=items,
            timestamps=timestamps,
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            visitor_ids=np.arange(len(lengths), dtype=np.int64),
            session_keys=np.arange(len(lengths), dtype=np.int64),
            n_items=int(n_items if n_items is not None else (items.max() + 1 if len(items) else 0)),
        )


def concat_sessions(parts: Sequence[Sessions]) -> Sessions:
    """Sessions of several collections in one (same item space), in the order given."""
    if not parts or len({part.n_items for part in parts}) != 1:
        raise ValueError("need at least one collection, all in the same item space")
    lengths = np.concatenate([part.lengths for part in parts])
    return Sessions(
        items=np.concatenate([part.items for part in parts]),
        timestamps=np.concatenate([part.timestamps for part in parts]),
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        visitor_ids=np.concatenate([part.visitor_ids for part in parts]),
        session_keys=np.concatenate([part.session_keys for part in parts]),
        n_items=parts[0].n_items,
    )


@dataclass(frozen=True)
class SessionData:
    """The protocol's output: sessions per split in one item index space."""

    protocol: SessionProtocol
    item_ids: np.ndarray  # int64 original item id per index, sorted
    train: Sessions
    validation: Sessions
    test: Sessions
    # Validation sessions whole: `validation` drops items unknown to train, as evaluation must,
    # but a model refitted on train + validation learns from every event.
    validation_full: Sessions
    test_from_ms: int  # sessions ending at or after this are test
    validation_from_ms: int  # ... and at or after this (but before test_from_ms) validation

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def train_full(self) -> Sessions:
        """Train and validation together, validation with every event: what the final model is
        fitted on before the test (session-rec's `train_full`)."""
        return concat_sessions([self.train, self.validation_full])

    def summary(self) -> dict[str, int]:
        return {
            "items": self.n_items,
            "train_sessions": len(self.train),
            "train_events": len(self.train.items),
            "validation_sessions": len(self.validation),
            "train_full_sessions": len(self.train) + len(self.validation_full),
            "test_sessions": len(self.test),
            "test_events": len(self.test.items),
            "test_predictions": int((self.test.lengths - 1).sum()),
        }


def sessionize(events: pd.DataFrame, gap_minutes: float = 30.0, split_on_session_id: bool = True) -> np.ndarray:
    """A session number per event row (same order as `events`), numbered in (visitor, time) order.

    A new session starts at a new visitor, after more than `gap_minutes` without an event, or
    where `session_id` changes between two events that both carry one (if `split_on_session_id`).
    """
    visitor = events["visitor_id"].to_numpy(dtype=np.int64)
    ts = events["ts"].to_numpy(dtype=np.int64)
    order = np.lexsort((ts, visitor))  # stable: equal times keep their input order
    visitor, ts = visitor[order], ts[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (visitor[1:] != visitor[:-1]) | (np.diff(ts) > gap_minutes * MS_PER_MINUTE)
    if split_on_session_id and "session_id" in events.columns:
        codes, _ = pd.factorize(events["session_id"].to_numpy(dtype=object)[order])  # null -> -1
        both_known = (codes[1:] >= 0) & (codes[:-1] >= 0)
        new[1:] |= both_known & (codes[1:] != codes[:-1])
    numbers = np.empty(len(order), dtype=np.int64)
    numbers[order] = np.cumsum(new) - 1
    return numbers


def filter_sessions(
    session: np.ndarray, item: np.ndarray, min_item_support: int = 5, min_session_length: int = 2
) -> np.ndarray:
    """Which events survive session-rec's `filter_data`: sessions of length 1 out, then items
    with < `min_item_support` events, then sessions shorter than `min_session_length`."""
    keep = _group_sizes(session) > 1
    keep &= _group_sizes(item, keep) >= min_item_support
    keep &= _group_sizes(session, keep) >= min_session_length
    return keep


def _group_sizes(keys: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per row: how many rows where `where` holds share its key (0 for rows outside `where`)."""
    where = np.ones(len(keys), dtype=bool) if where is None else where
    _, inverse, counts = np.unique(keys[where], return_inverse=True, return_counts=True)
    per_row = np.zeros(len(keys), dtype=np.int64)
    per_row[where] = counts[inverse]
    return per_row


def build_sessions(events: pd.DataFrame, protocol: SessionProtocol | None = None) -> SessionData:
    """Contract-shaped events (visitor_id, session_id, ts, event, item_id) to `SessionData`."""
    protocol = protocol or SessionProtocol()
    missing = {"visitor_id", "ts", "event", "item_id"} - set(events.columns)
    if missing:
        raise ValueError(f"events lack column(s) {sorted(missing)}")
    number = sessionize(events, protocol.gap_minutes, protocol.split_on_session_id)
    kept_type = events["event"].astype(object).isin(protocol.event_types).to_numpy()
    kept_type &= events["item_id"].notna().to_numpy()
    frame = pd.DataFrame(
        {
            "session": number[kept_type],
            "visitor_id": events["visitor_id"].to_numpy(dtype=np.int64)[kept_type],
            "ts": events["ts"].to_numpy(dtype=np.int64)[kept_type],
            "item_id": events["item_id"].to_numpy(dtype=np.int64, na_value=-1)[kept_type],
        }
    )
    frame = frame.sort_values(["session", "ts"], kind="stable", ignore_index=True)
    keep = filter_sessions(
        frame["session"].to_numpy(), frame["item_id"].to_numpy(), protocol.min_item_support,
        protocol.min_session_length,
    )
    frame = frame.loc[keep].reset_index(drop=True)
    if frame.empty:
        raise ValueError("no session survives the protocol's filters")

    session = frame["session"].to_numpy()
    end_ms = frame.groupby("session", sort=False)["ts"].transform("max").to_numpy()
    test_from = int(frame["ts"].max() - protocol.test_days * MS_PER_DAY)
    validation_from = int(test_from - protocol.validation_days * MS_PER_DAY)
    is_test = end_ms >= test_from
    is_validation = ~is_test & (end_ms >= validation_from)
    is_train = ~is_test & ~is_validation

    item_ids = np.unique(frame["item_id"].to_numpy()[~is_test])
    train_items = np.unique(frame["item_id"].to_numpy()[is_train])
    item_id = frame["item_id"].to_numpy()
    known_to_train = np.isin(item_id, train_items)
    evaluated_test = is_test & np.isin(item_id, item_ids)
    evaluated_validation = is_validation & known_to_train

    def collect(rows: np.ndarray, min_length: int) -> Sessions:
        rows = rows & (_group_sizes(session, rows) >= min_length)
        return _to_sessions(frame.loc[rows], item_ids)

    return SessionData(
        protocol=protocol,
        item_ids=item_ids,
        train=collect(is_train, 1),
        validation=collect(evaluated_validation, MIN_EVALUATED_LENGTH),
        test=collect(evaluated_test, MIN_EVALUATED_LENGTH),
        validation_full=collect(is_validation, 1),
        test_from_ms=test_from,
        validation_from_ms=validation_from,
    )


def _to_sessions(frame: pd.DataFrame, item_ids: np.ndarray) -> Sessions:
    session = frame["session"].to_numpy()
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if len(session) else np.zeros(0, int)
    return Sessions(
        items=np.searchsorted(item_ids, frame["item_id"].to_numpy()).astype(np.int64),
        timestamps=frame["ts"].to_numpy(dtype=np.int64),
        offsets=np.r_[starts, len(session)].astype(np.int64),
        visitor_ids=frame["visitor_id"].to_numpy(dtype=np.int64)[starts],
        session_keys=session[starts].astype(np.int64),
        n_items=len(item_ids),
    )


@dataclass(frozen=True)
class NextItemCases:
    """Every prefix of every session with the item that followed it.

    Prefix c is `sessions.items[starts[c]:ends[c]]`; its target is `sessions.items[ends[c]]`.
    """

    sessions: Sessions
    session: np.ndarray  # which session each case comes from
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.session)

    @property
    def targets(self) -> np.ndarray:
        return self.sessions.items[self.ends]

    def take(self, cases: slice | np.ndarray) -> NextItemCases:
        """A subset of the cases (a slice or an index array), over the same sessions."""
        return replace(self, session=self.session[cases], starts=self.starts[cases], ends=self.ends[cases])

    def prefix(self, case: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.starts[case], self.ends[case]
        return self.sessions.items[start:end], self.sessions.timestamps[start:end]


def next_item_cases(sessions: Sessions) -> NextItemCases:
    """Prefix lengths 1..n-1 of each session of length n, session by session, shortest first."""
    per_session = np.maximum(sessions.lengths - 1, 0)
    session = np.repeat(np.arange(len(sessions)), per_session)
    first_case = np.r_[0, np.cumsum(per_session)][:-1]
    prefix_length = np.arange(len(session)) - np.repeat(first_case, per_session) + 1
    starts = sessions.offsets[:-1][session]
    return NextItemCases(sessions=sessions, session=session, starts=starts, ends=starts + prefix_length)
