"""The trending window's pattern in the OpenAPI document accepts exactly what the API accepts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from clickrec_platform.serving.api.params import WINDOW_PATTERN, parse_window


def accepted(text: str) -> bool:
    try:
        parse_window(text)
    except ValueError:
        return False
    return True


def test_the_documented_pattern_matches_exactly_the_windows_the_api_accepts():
    pattern = re.compile(WINDOW_PATTERN)
    texts = [f"{zeros}{n}{unit}" for zeros in ("", "0", "000")
             for n in [*range(0, 200), *range(9_990, 10_100), 100_000, 10**30]
             for unit in ("", "m", "min", "MIN", "Min", "h", "H", "d", "D", "s", "mi", "hh", " ")]
    texts += ["", "h", "1.5h", "-1h", "+1h", " 1h", "1h\n", "١h", "1 h"]
    disagreements = [t for t in texts if bool(pattern.fullmatch(t)) != accepted(t)]
    assert disagreements == []
    assert sum(accepted(t) for t in texts) > 1000  # the comparison covered both verdicts


@pytest.mark.parametrize(("text", "minutes"), [("1", 1), ("30m", 30), ("30MIN", 30), ("1h", 60), ("168h", 10_080),
                                               ("7d", 10_080), ("010080", 10_080)])
def test_windows(text, minutes):
    assert parse_window(text) == timedelta(minutes=minutes)
