"""Pacing and the produce loop's scheduling, on a simulated clock with a recording sink."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.events.batch import encode_batch
from clickrec_platform.producer.kafka_sink import KafkaEventSink
from clickrec_platform.producer.pacing import FastPacer, Pacer, RatePacer, ReplayPacer, due_slices
from clickrec_platform.producer.run import ProduceSummary, produce_frames
from clickrec_platform.sources.generator import GeneratorConfig, generate_events


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class RecordingSink:
    topic = "t"
    dead_letter_path = Path("/nonexistent")
    delivery_timeout_s: float  # unset: produce_frames takes its default, unless a test sets it

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock, self.accepted, self.failed_by_reason = clock, 0, Counter[str]()
        self.sent: list[tuple[float, bytes]] = []
        self.flushed: bool | float = False

    @property
    def failed(self) -> int:
        return 0

    def send(self, keys, values, event_types=None) -> None:
        self.sent += [(self.clock.now, value) for value in values]
        self.accepted += len(values)

    def flush(self, timeout_s: float) -> int:
        self.flushed = timeout_s
        return 0

    def close(self) -> None: ...


def _produce(frames: Iterable[pd.DataFrame], sink: RecordingSink, pacer: Pacer, **options: Any) -> ProduceSummary:
    """``produce_frames`` into the recording sink, which stands in for the Kafka one."""
    return produce_frames(frames, cast(KafkaEventSink, sink), pacer, **options)


def test_rate_pacer_spaces_events_evenly_across_batches():
    pacer = RatePacer(events_per_second=4)
    assert pacer.due_seconds(np.zeros(3)).tolist() == [0.0, 0.25, 0.5]
    assert pacer.due_seconds(np.zeros(2)).tolist() == [0.75, 1.0]
    with pytest.raises(ValueError):
        RatePacer(0)


def test_replay_pacer_compresses_event_time_and_sends_late_comers_at_once():
    pacer = ReplayPacer(speedup=3600)
    hour = 3_600_000
    assert pacer.due_seconds(np.array([10 * hour, 11 * hour, 13 * hour])).tolist() == [0.0, 1.0, 3.0]
    assert pacer.due_seconds(np.array([9 * hour])).tolist() == [0.0]  # before the origin


def test_each_pacer_says_what_rate_it_aims_at():
    from datetime import date

    from clickrec_platform.producer.sources import live_config, live_pacer

    assert FastPacer().target_events_per_second(0) is None
    assert ReplayPacer(speedup=60).target_events_per_second(0) is None
    assert RatePacer(250).target_events_per_second(0) == 250

    traffic = live_config(GeneratorConfig(events=10_000), 20.0, days=7,
                          now=datetime(2026, 11, 23, 9, 30, tzinfo=UTC))  # a Monday
    assert traffic.start_date == date(2026, 11, 23)
    pacer = live_pacer(traffic, now_ms=traffic.start_ms)
    hourly = [pacer.target_events_per_second(traffic.start_ms + h * 3_600_000 + 1) for h in range(7 * 24)]
    assert np.mean(hourly) == pytest.approx(20.0)  # the average asked for, over the window
    assert hourly[3] < 1 < 40 < hourly[20]  # 3 am is quiet, 8 pm busy (weekday curve: 0.1x … 10x)
    assert 2 * 24 + 12 <= np.argmax(hourly) < 2 * 24 + 16  # the promotion: day 2, 4 hours from 12:00, 20x
    assert pacer.target_events_per_second(traffic.start_ms + 7 * 24 * 3_600_000) == 0.0  # after the window


@pytest.mark.parametrize(("elapsed", "start", "expected"), [(0.0, 0, 1), (1.5, 0, 3), (9, 2, 5), (0.0, 3, 3)])
def test_due_slices(elapsed, start, expected):
    assert due_slices(np.array([0.0, 1.0, 1.5, 2.0, 3.0]), elapsed, start) == expected


def _frames(events=3_000):
    return list(generate_events(GeneratorConfig(events=events, seed=3, days=2, chunk_events=1_000)))


def test_replay_sends_every_event_no_earlier_than_its_due_time():
    frames, clock = _frames(), SimulatedClock()
    sink = RecordingSink(clock)
    summary = _produce(frames, sink, ReplayPacer(speedup=86_400), progress=False, clock=clock,
                       sleep=clock.sleep)
    ts = np.concatenate([f["ts"].to_numpy() for f in frames])
    assert summary.accepted == len(ts) and sink.flushed
    # Two days at 86,400x take two simulated seconds, give or take the last event's place in the day.
    assert 1.0 < clock.now <= 2.2
    sent_at = {value: at for at, value in sink.sent}
    for frame in frames:
        _keys, values = encode_batch(frame)
        due = (frame["ts"].to_numpy() - ts[0]) / 1000 / 86_400
        assert all(sent_at[v] >= d - 1e-9 for v, d in zip(values, np.maximum(due, 0), strict=True))


def test_fast_mode_never_sleeps_and_limit_caps_the_count():
    clock = SimulatedClock()
    sink = RecordingSink(clock)
    summary = _produce(_frames(), sink, FastPacer(), limit=1_234, progress=False, clock=clock,
                       sleep=clock.sleep)
    assert summary.accepted == 1_234 == len(sink.sent)
    assert clock.now == 0.0


def test_a_stop_request_ends_the_run_and_still_flushes():
    clock, stop = SimulatedClock(), threading.Event()
    sink = RecordingSink(clock)

    def sleep_then_stop(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= 1.0:
            stop.set()

    summary = _produce(_frames(), sink, RatePacer(100), progress=False, clock=clock,
                       sleep=sleep_then_stop, stop=stop)
    assert summary.stopped_early and sink.flushed
    assert 90 <= summary.accepted <= 110  # about one simulated second at 100 events/s


def test_the_final_flush_outlasts_the_delivery_timeout():
    """A broker down at the end of a run gets as long to come back as any message may wait (message.timeout.ms),
    so the flush never purges what librdkafka would still deliver."""
    clock = SimulatedClock()
    sink = RecordingSink(clock)
    sink.delivery_timeout_s = 120.0
    _produce(_frames(), sink, FastPacer(), limit=10, progress=False, clock=clock, sleep=clock.sleep)
    assert sink.flushed > 120.0
    _produce(_frames(), sink, FastPacer(), limit=10, progress=False, clock=clock, sleep=clock.sleep,
             flush_timeout_s=3)
    assert sink.flushed == 3
