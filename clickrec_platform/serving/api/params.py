"""Parsing of query parameters that FastAPI's types do not cover."""

from __future__ import annotations

import re
from datetime import timedelta

_WINDOW = re.compile(r"^\s*(\d+)\s*(m|min|h|d)?\s*$", re.IGNORECASE)
_UNITS = {"m": 1, "min": 1, "h": 60, "d": 1440}
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)


def parse_window(text: str) -> timedelta:
    """A trending window: ``30m``, ``1h``, ``2d`` or a number of minutes, 1 minute … 7 days.

    ``ValueError`` with a message meant for the caller otherwise.
    """
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"window must look like 30m, 1h or 2d (or minutes as a number), got {text!r}")
    minutes = int(match.group(1)) * _UNITS[(match.group(2) or "m").lower()]
    window = timedelta(minutes=minutes)
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValueError(f"window must be between 1m and 7d, got {text!r}")
    return window
