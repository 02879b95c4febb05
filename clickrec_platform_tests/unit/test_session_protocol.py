"""The session protocol on frames small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.session.protocol import (
    MS_PER_DAY,
    MS_PER_MINUTE,
    SessionProtocol,
    Sessions,
    build_sessions,
    filter_sessions,
    next_item_cases,
    sessionize,
)

MIN = MS_PER_MINUTE


def _events(rows: list[tuple]) -> pd.DataFrame:
    """rows: (visitor_id, session_id, ts, event, item_id)."""
    return pd.DataFrame(rows, columns=["visitor_id", "session_id", "ts", "event", "item_id"])


def test_sessions_split_at_gap_and_at_session_id_change_but_not_at_null_ids() -> None:
    events = _events(
        [
            (1, None, 0, "view", 10),
            (1, None, 29 * MIN, "view", 11),  # 29 min later: same session
            (1, None, 60 * MIN, "view", 12),  # 31 min later: new session
            (2, "x", 0, "view", 10),
            (2, "y", 1 * MIN, "view", 11),  # id changes: new session
            (2, None, 2 * MIN, "view", 12),  # null after "y": no split on the id
            (3, "z", 0, "view", 10),  # new visitor: new session
        ]
    )
    assert sessionize(events, gap_minutes=30).tolist() == [0, 0, 1, 2, 3, 3, 4]


def test_sessionize_orders_each_visitor_by_time_whatever_the_row_order() -> None:
    events = _events([(1, None, 100 * MIN, "view", 1), (1, None, 0, "view", 2), (1, None, 10 * MIN, "view", 3)])
    assert sessionize(events, gap_minutes=30).tolist() == [1, 0, 0]


def test_filters_run_once_each_in_session_rec_order() -> None:
    # Item 7 has 5 events, one in a session of length 1: once that session goes (step 1) it has
    # 4 and goes too (step 2), which leaves session 2 too short (step 3). Item 8 has 5 events at
    # step 2 and stays, though step 3 then removes one of them: no iteration to a fixed point.
    session = np.array([0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5])
    item = np.array([8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 9])
    keep = filter_sessions(session, item, min_item_support=5, min_session_length=2)
    assert keep.tolist() == [True] * 4 + [False] * 7


def test_item_support_counts_events_not_sessions() -> None:
    session = np.array([0, 0, 0, 1, 1, 2, 2])
    item = np.array([1, 1, 1, 1, 2, 1, 1])
    keep = filter_sessions(session, item, min_item_support=4, min_session_length=2)
    # item 1: 6 events in 3 sessions; item 2: 1 event, so session 1 shrinks to 1 event and goes.
    assert keep.tolist() == [True, True, True, False, False, True, True]


def _split_frame() -> pd.DataFrame:
    """Sessions of one visitor each, a day apart; the last event is on day 10."""
    day = MS_PER_DAY
    rows = []
    for visitor in range(5):  # days 0..4: train sessions, items 1, 2 (5 events each)
        rows += [(visitor, None, visitor * day, "view", 1), (visitor, None, visitor * day + MIN, "view", 2)]
    rows += [(10, None, 7 * day, "view", 1), (10, None, 7 * day + MIN, "view", 3)]  # validation
    rows += [(11, None, 7 * day + 2 * MIN, "addtocart", 3)]  # not a view: ignored
    # Test: starts before the cut but ends after it, so it is test (by its last event).
    test_from = int(8.5 * day)
    rows += [(20, None, test_from - 10 * MIN, "view", 2), (20, None, test_from + MIN, "view", 1)]
    # Test: item 3 is known only through validation, item 2 from train.
    rows += [(21, None, 10 * day - 2 * MIN, "view", 3), (21, None, 10 * day - MIN, "view", 2)]
    rows += [(21, None, 10 * day, "view", 1)]
    return _events(rows)


def test_time_split_by_last_event_with_unknown_items_removed() -> None:
    # item 3 has 2 view events only: support 2 keeps it with min_item_support=2 ...
    protocol = SessionProtocol(min_item_support=2, test_days=1.5, validation_days=2.5, gap_minutes=60)
    data = build_sessions(_split_frame(), protocol)
    assert data.test_from_ms == int(8.5 * MS_PER_DAY)
    assert len(data.train) == 5 and len(data.validation_full) == 1 and len(data.test) == 2
    ids = data.item_ids
    assert ids.tolist() == [1, 2, 3]  # the items of train + validation
    assert ids[data.test.session(0)[0]].tolist() == [2, 1]
    assert ids[data.test.session(1)[0]].tolist() == [3, 2, 1]
    # Validation is evaluated against train only: item 3 goes, leaving 1 event: dropped.
    assert len(data.validation) == 0
    assert len(data.train_full) == 6 and data.summary()["test_predictions"] == 1 + 2


def test_test_items_unknown_to_training_are_removed_then_short_sessions_dropped() -> None:
    # Item 3 passes the support filter (3 events) but only test sessions hold it.
    day = MS_PER_DAY
    rows = [(v, None, v * day + m * MIN, "view", i) for v in range(4) for m, i in enumerate((1, 2))]
    rows += [(9, None, 9 * day, "view", 3), (9, None, 9 * day + MIN, "view", 3)]  # item 3 only in test
    rows += [(8, None, 9 * day + 2 * MIN, "view", 3), (8, None, 9 * day + 3 * MIN, "view", 1)]
    data = build_sessions(_events(rows), SessionProtocol(min_item_support=2, test_days=1, validation_days=0))
    assert data.item_ids.tolist() == [1, 2]
    assert len(data.test) == 0  # session 9 emptied, session 8 left with one event


def test_prefix_expansion_counts_every_prefix() -> None:
    sessions = Sessions.from_lists([[5, 6], [7, 8, 9], [1, 2, 3, 4]])
    cases = next_item_cases(sessions)
    assert len(cases) == 1 + 2 + 3
    assert cases.session.tolist() == [0, 1, 1, 2, 2, 2]
    assert cases.targets.tolist() == [6, 8, 9, 2, 3, 4]
    assert [cases.prefix(c)[0].tolist() for c in (0, 2, 5)] == [[5], [7, 8], [1, 2, 3]]


def test_build_sessions_keeps_only_the_configured_event_types() -> None:
    kinds = ["view", "addtocart", "view", "view", "addtocart", "view"]
    rows = [(1, None, m * MIN, kind, 1) for m, kind in enumerate(kinds)]
    rows += [(2, None, 5 * MS_PER_DAY + m * MIN, "view", 1) for m in range(2)]  # the test session
    protocol = SessionProtocol(min_item_support=1, test_days=1, validation_days=0)
    assert len(build_sessions(_events(rows), protocol).train.items) == 4
    with_carts = SessionProtocol(event_types=("view", "addtocart"), min_item_support=1, test_days=1, validation_days=0)
    assert len(build_sessions(_events(rows), with_carts).train.items) == 6


def test_protocol_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SessionProtocol(gap_minutes=0)
    with pytest.raises(ValueError):
        SessionProtocol(event_types=())


def test_session_ids_can_be_ignored_as_session_rec_has_none() -> None:
    events = _events([(1, "x", 0, "view", 1), (1, "y", MIN, "view", 2)])
    assert sessionize(events, 30, split_on_session_id=False).tolist() == [0, 0]
    assert sessionize(events, 30).tolist() == [0, 1]
