"""The speed layer's pure parts: decoding a batch of Kafka records, and which live windows events touch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import pyarrow as pa
from confluent_kafka import Message

from clickrec_platform.events.codec import encode
from clickrec_platform.events.contract import Event
from clickrec_platform.serving.live_tables import TouchedLiveWindows, live_window_slides
from clickrec_platform.speed.consumer import decode_batch, since_last_seek


@dataclass
class FakeMessage:
    """The three things ``decode_batch`` asks of a confluent-kafka Message."""

    _partition: int
    _offset: int
    _value: bytes | None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 4, 10, 0, tzinfo=UTC) + timedelta(minutes=minute, seconds=second)


def view(event_id: str, visitor: int, item: int | None, when: datetime, event: str = "view") -> bytes:
    return encode(Event(event_id=event_id, ts=int(when.timestamp() * 1000), visitor_id=visitor, event=event,
                        item_id=item, session_id="s", query="q" if event == "search" else None, source="test"))


def test_a_batch_keeps_valid_events_as_arrow_and_counts_the_rest_per_partition_and_reason():
    messages = [FakeMessage(0, 10, view("a", 1, 5, at(1))), FakeMessage(1, 3, b"not json"),
                FakeMessage(0, 11, view("b", 2, None, at(2), event="search")), FakeMessage(1, 4, None),
                FakeMessage(1, 5, view("c", 3, 7, at(3))), FakeMessage(0, 12, view("d", 4, None, at(4)))]
    batch = decode_batch(cast("list[Message]", messages))
    assert batch.events.column_names == ["event_id", "ts", "visitor_id", "event", "item_id", "session_id", "source"]
    assert batch.events.column("event_id").to_pylist() == ["a", "b", "c"]
    assert batch.events.column("ts").to_pylist() == [at(1), at(2), at(3)]
    assert batch.events.column("item_id").to_pylist() == [5, None, 7]
    # An empty value (a tombstone) is a malformed record like any other; "d" is a view without its item.
    assert dict(batch.rejected) == {"malformed_json": 2, "item_required": 1}
    assert batch.first_offsets == {0: 10, 1: 3} and batch.next_offsets == {0: 13, 1: 6}
    assert dict(batch.valid_by_partition) == {0: 2, 1: 1} and dict(batch.rejected_by_partition) == {0: 1, 1: 2}
    assert batch.records == 6


def test_a_batch_of_only_bad_records_has_an_empty_table_of_the_right_shape():
    batch = decode_batch(cast("list[Message]", [FakeMessage(2, 0, b"[1]")]))
    assert batch.events.num_rows == 0 and batch.events.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert dict(batch.rejected) == {"not_object": 1} and batch.next_offsets == {2: 1}


def test_events_touch_their_5_minute_window_and_the_two_trending_windows_that_hold_it():
    ts = pa.array([at(3), at(7, 30), at(7, 59)], pa.timestamp("ms", tz="UTC"))
    touched = TouchedLiveWindows.of(ts, horizon=at(-60))
    assert sorted(touched.stats) == [at(0), at(5)]
    # A trending window is 10 minutes long and slides by 5: 09:55 and 10:00 hold 10:03; 10:00 and 10:05 hold 10:07.
    assert sorted(touched.trending) == [at(-5), at(0), at(5)]


def test_windows_starting_before_the_horizon_are_left_out():
    ts = pa.array([at(3), at(12)], pa.timestamp("ms", tz="UTC"))
    touched = TouchedLiveWindows.of(ts, horizon=at(5))
    assert sorted(touched.stats) == [at(10)] and sorted(touched.trending) == [at(5), at(10)]
    assert not TouchedLiveWindows.of(pa.array([], pa.timestamp("ms", tz="UTC")), horizon=at(0))
    later = (touched | TouchedLiveWindows.of(pa.array([at(20)], pa.timestamp("ms", tz="UTC")), at(0))).since(at(10))
    assert sorted(later.stats) == [at(10), at(20)] and sorted(later.trending) == [at(10), at(15), at(20)]


def test_the_slides_between_two_times_include_both_ends():
    assert live_window_slides(at(3), at(12)) == [at(0), at(5), at(10)]
    assert live_window_slides(at(5), at(5)) == [at(5)]


def test_records_a_seek_back_superseded_are_counted_once():
    """A rebalance inside one poll sought partition 1 back: what it delivered before the seek goes; the other
    partitions keep theirs."""
    first = [FakeMessage(1, offset, b"") for offset in (500, 501, 502)] + [FakeMessage(2, 70, b"")]
    again = [FakeMessage(1, offset, b"") for offset in (480, 481, 500, 501, 502, 503)]
    kept = since_last_seek(cast(list[Message], first + again + [FakeMessage(2, 71, b"")]))
    assert [(m.partition(), m.offset()) for m in kept] == [(2, 70), *[(1, o) for o in (480, 481, 500, 501, 502, 503)],
                                                           (2, 71)]
    batch = decode_batch(kept)
    assert batch.first_offsets == {2: 70, 1: 480} and batch.next_offsets == {2: 72, 1: 504}
    assert sum(batch.rejected.values()) == 8  # each record once (empty values are rejected, and counted)
