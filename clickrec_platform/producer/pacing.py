"""When each event is due, in seconds after the producer started.

Every mode reduces to one array of due times per batch, so the produce loop is the same for all:
send every event that is due, sleep until the next one is.

- ``fast``: everything is due at once.
- ``rate``: event *n* is due at ``n / events_per_second``.
- ``replay``: keeps the gaps of event time, compressed by ``speedup`` (3600: an hour a second).
  ``speedup=1`` with events stamped from now on is live traffic in wall-clock time (``LivePacer``).

Each pacer also says what rate it currently aims at, for the producer's metrics (None: no target).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HOUR_MS = 3_600_000


class Pacer:
    def due_seconds(self, ts_ms: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def target_events_per_second(self, now_ms: int) -> float | None:
        """The rate this pacer aims at, at wall-clock time ``now_ms``; None when it has none."""
        return None


class FastPacer(Pacer):
    def due_seconds(self, ts_ms: np.ndarray) -> np.ndarray:
        return np.zeros(len(ts_ms))


@dataclass
class RatePacer(Pacer):
    events_per_second: float
    _scheduled: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.events_per_second <= 0:
            raise ValueError("rate must be positive")

    def due_seconds(self, ts_ms: np.ndarray) -> np.ndarray:
        positions = np.arange(self._scheduled, self._scheduled + len(ts_ms))
        self._scheduled += len(ts_ms)
        return positions / self.events_per_second

    def target_events_per_second(self, now_ms: int) -> float | None:
        return self.events_per_second


@dataclass
class ReplayPacer(Pacer):
    """Event time, sped up. The first event seen sets time zero (unless ``origin_ms`` is given)."""

    speedup: float
    origin_ms: int | None = None

    def __post_init__(self) -> None:
        if self.speedup <= 0:
            raise ValueError("speedup must be positive")

    def due_seconds(self, ts_ms: np.ndarray) -> np.ndarray:
        if self.origin_ms is None and len(ts_ms):
            self.origin_ms = int(ts_ms[0])
        # Events that are earlier than the origin (slightly out of order) are due at once.
        return np.maximum(ts_ms - (self.origin_ms or 0), 0) / 1000.0 / self.speedup


@dataclass
class LivePacer(ReplayPacer):
    """Live generated traffic: event time is wall-clock time (speedup 1, from ``origin_ms``), and the
    target is the generator's rate for the hour: ``hourly_rates[h]`` events/s in the h-th hour after
    ``window_start_ms``."""

    speedup: float = 1.0
    window_start_ms: int = 0
    hourly_rates: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def target_events_per_second(self, now_ms: int) -> float:
        hour = (now_ms - self.window_start_ms) // HOUR_MS
        return float(self.hourly_rates[hour]) if 0 <= hour < len(self.hourly_rates) else 0.0


def due_slices(due: np.ndarray, elapsed_s: float, start: int) -> int:
    """The end of the run of events, from ``start``, that are due by ``elapsed_s`` (``due`` sorted)."""
    return max(start, int(np.searchsorted(due, elapsed_s, side="right")))
