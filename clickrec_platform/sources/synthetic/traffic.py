"""When synthetic visitors come: hour-of-day and weekday/weekend profiles, and promotions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np

from clickrec_platform.sources.synthetic.config import Promotion

# Relative traffic by UTC hour, from 0.1x at 3 am to 10x at 8 pm (DESIGN.md).
WEEKDAY_HOURLY = np.array(
    [1.2, 0.6, 0.25, 0.1, 0.12, 0.3, 0.8, 1.5, 2.2, 2.6, 2.8, 3.0,
     3.6, 3.3, 3.0, 3.0, 3.4, 4.5, 6.0, 8.0, 10.0, 8.5, 5.0, 2.5]
)  # fmt: skip
# Weekends start later and shop through the middle of the day.
WEEKEND_HOURLY = np.array(
    [2.0, 1.2, 0.5, 0.15, 0.1, 0.15, 0.3, 0.6, 1.2, 2.5, 4.5, 6.0,
     6.5, 6.0, 5.5, 5.5, 6.0, 6.5, 7.0, 8.0, 9.0, 8.0, 5.5, 3.5]
)  # fmt: skip

HOUR_MS = 3_600_000


def hourly_weights(start_date: date, days: int, promotions: Iterable[Promotion]) -> np.ndarray:
    """Relative traffic of each hour of the window, `days * 24` of them, promotions applied."""
    hours = np.arange(days * 24)
    hour_of_day = hours % 24
    weekday = (start_date.weekday() + hours // 24) % 7  # Monday is 0
    weights = np.where(weekday >= 5, WEEKEND_HOURLY[hour_of_day], WEEKDAY_HOURLY[hour_of_day])
    for promotion in promotions:
        first = promotion.day * 24 + promotion.start_hour
        weights[first : first + promotion.hours] *= promotion.multiplier
    return weights


def session_starts_ms(
    rng: np.random.Generator, window_start_ms: int, sessions_before_hour_end: np.ndarray, sessions: np.ndarray
) -> np.ndarray:
    """Start times of the numbered `sessions`, given the running count of sessions by hour's end.

    Numbering sessions in hour order lets any chunk of session numbers find its hours alone.
    """
    hour = np.searchsorted(sessions_before_hour_end, sessions, side="right")
    return window_start_ms + hour * HOUR_MS + rng.integers(0, HOUR_MS, len(sessions))
