"""Where produced events come from: the generator, RetailRocket files, or live generated traffic."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from clickrec_platform.producer.pacing import HOUR_MS, LivePacer
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.sources.rejects import RejectLedger
from clickrec_platform.sources.retailrocket import EVENTS_FILE, read_events
from clickrec_platform.sources.synthetic.traffic import hourly_weights


def retailrocket_frames(input_path: Path, ledger: RejectLedger) -> Iterator[pd.DataFrame]:
    """Events from a RetailRocket ``events.csv`` (or the folder holding it), rejects into ``ledger``."""
    path = input_path / EVENTS_FILE if input_path.is_dir() else input_path
    if not path.is_file():
        raise FileNotFoundError(f"No RetailRocket events file at {path}")
    yield from read_events(path, ledger)


def live_config(base: GeneratorConfig, events_per_second: float, days: int, now: datetime | None = None
                ) -> GeneratorConfig:
    """A generator config for traffic from today on, averaging ``events_per_second`` over each day
    (the hourly, weekday and promotion patterns shape it around that average)."""
    now = now or datetime.now(UTC)
    # The world (visitors, items) keeps the size `base` gives it; left to scale with the live
    # event count, days of traffic would build millions of visitors before the first event.
    return dataclasses.replace(
        base, start_date=now.date(), days=days,
        events=max(1, round(events_per_second * 86_400 * days)),
        visitors=base.visitors or max(1, base.events // 10), items=base.items or max(1, base.events // 20),
    )


def live_frames(config: GeneratorConfig, now_ms: int | None = None) -> Iterator[pd.DataFrame]:
    """Generated events from ``now_ms`` on (those of the day that have passed are skipped)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    for frame in generate_events(config):
        frame = frame[frame["ts"] >= now_ms]
        if not frame.empty:
            yield frame.reset_index(drop=True)


def live_pacer(config: GeneratorConfig, now_ms: int) -> LivePacer:
    """Paces ``live_frames(config, now_ms)`` in wall-clock time; its target for each hour is the share
    of the window's events the generator puts in that hour (the daily curve, weekends, promotions)."""
    weights = hourly_weights(config.start_date, config.days, config.promotions)
    return LivePacer(origin_ms=now_ms, window_start_ms=config.start_ms,
                     hourly_rates=config.events * weights / weights.sum() / (HOUR_MS / 1000))


def parse_date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None
