"""Parsing of query parameters that FastAPI's types do not cover, with the patterns the OpenAPI
document states for them: a value matching the pattern is accepted, any other is refused (422)."""

from __future__ import annotations

import re
from datetime import timedelta

# A trending window, 1 minute … 7 days: minutes (1–10080, unit m, min or none), hours (1–168, h) or
# days (1–7, d), case-insensitive units, leading zeros allowed. The range is in the pattern itself,
# so that a client reading the document can tell every accepted value from every refused one.
_MINUTES = r"0*(?:[1-9][0-9]{0,3}|100[0-7][0-9]|10080)(?:[mM](?:[iI][nN])?)?"
_HOURS = r"0*(?:[1-9][0-9]?|1[0-5][0-9]|16[0-8])[hH]"
_DAYS = r"0*[1-7][dD]"
WINDOW_PATTERN = f"^(?:{_MINUTES}|{_HOURS}|{_DAYS})$"
_WINDOW = re.compile(r"^([0-9]+)(m|min|h|d)?$", re.IGNORECASE)
_UNITS = {"m": 1, "min": 1, "h": 60, "d": 1440}
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)


def parse_window(text: str) -> timedelta:
    """A trending window: ``30m``, ``1h``, ``2d`` or a number of minutes, 1 minute … 7 days (exactly
    the strings ``WINDOW_PATTERN`` matches).

    ``ValueError`` with a message meant for the caller otherwise.
    """
    match = _WINDOW.fullmatch(text)
    if not match:
        raise ValueError(f"window must look like 30m, 1h or 2d (or minutes as a number), got {text!r}")
    minutes = int(match.group(1)) * _UNITS[(match.group(2) or "m").lower()]
    # Compared as a number first: timedelta overflows on a huge one (a 500 before the check).
    if not MIN_WINDOW <= timedelta(minutes=min(minutes, MAX_WINDOW // timedelta(minutes=1) + 1)) <= MAX_WINDOW:
        raise ValueError(f"window must be between 1m and 7d, got {text!r}")
    return timedelta(minutes=minutes)
