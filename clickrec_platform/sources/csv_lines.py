"""Plain CSV files read as chunks of raw lines, split and parsed with Arrow's vectorised kernels.

Every malformed row has to be reported with its 1-based line number and raw text, and
`pandas.read_csv` cannot give that: it skips blank lines (so line numbers drift), pads short rows
with NaN and stops at long ones. The RetailRocket files use no quoting, so splitting lines on
commas ourselves is exact, and Arrow's C++ kernels keep it fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_TEXT = pa.large_string()
# pandas writes an integer column that holds NaN as floats, so "14418.0" is the integer 14418.
# Eighteen digits always fit in an int64, and no real id or millisecond timestamp needs more.
_INTEGER = r"^-?[0-9]{1,18}(\.0+)?$"
_ZERO_FRACTION = r"\.0+$"


@dataclass(frozen=True)
class LineChunk:
    """Consecutive data lines of one file, terminators stripped."""

    first_line: int  # 1-based line number of lines[0], the header being line 1
    lines: pa.Array

    @property
    def line_numbers(self) -> np.ndarray:
        return np.arange(self.first_line, self.first_line + len(self.lines), dtype=np.int64)

    @property
    def empty(self) -> np.ndarray:
        return _numpy(pc.equal(self.lines, ""))


def read_line_chunks(path: str | Path, header: Sequence[str], chunk_rows: int) -> Iterator[LineChunk]:
    """The data lines of `path` in chunks of at most `chunk_rows`, after checking its header.

    A wrong header means a wrong file rather than a bad row, so it raises `ValueError`.
    Undecodable bytes become U+FFFD, which no field accepts, so such a row is rejected, not fatal.
    """
    with Path(path).open(encoding="utf-8", errors="replace", newline="") as file:
        found = file.readline().lstrip("\ufeff").rstrip("\r\n")
        if found != ",".join(header):
            raise ValueError(f"{path}: expected header {','.join(header)!r}, found {found!r}")
        first_line = 2
        while lines := list(islice(file, chunk_rows)):
            yield LineChunk(first_line, pc.utf8_rtrim(pa.array(lines, _TEXT), characters="\r\n"))
            first_line += len(lines)


def split_fields(
    lines: pa.Array, n_fields: int, *, last_takes_rest: bool = False
) -> tuple[np.ndarray, list[pa.Array]]:
    """(well_formed, fields): whether each line has `n_fields` fields, and the fields as text columns.

    With `last_takes_rest` the last field keeps any further commas. Lines that are not well
    formed get empty text in every field, so the columns stay aligned with the lines.
    """
    separators = _numpy(pc.count_substring(lines, ","))
    well_formed = separators >= n_fields - 1 if last_takes_rest else separators == n_fields - 1
    placeholder = pa.scalar("," * (n_fields - 1), _TEXT)
    safe_lines = pc.if_else(pa.array(well_formed), lines, placeholder)
    parts = pc.split_pattern(safe_lines, ",", max_splits=n_fields - 1)
    return well_formed, [pc.list_element(parts, position) for position in range(n_fields)]


@dataclass(frozen=True)
class ParsedIntegers:
    """A text column parsed as int64: `values` holds 0 wherever the text was not an integer."""

    values: np.ndarray
    empty: np.ndarray
    malformed: np.ndarray  # not empty, yet not an integer

    @property
    def present(self) -> np.ndarray:
        return ~(self.empty | self.malformed)

    def nullable(self) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(self.values, ~self.present)


def parse_integers(text: pa.Array) -> ParsedIntegers:
    """Decimal integers of up to 18 digits, a zero fraction ("14418.0") allowed."""
    empty = _numpy(pc.equal(text, ""))
    valid = _numpy(pc.match_substring_regex(text, _INTEGER))
    digits = pc.replace_substring_regex(pc.if_else(pa.array(valid), text, "0"), _ZERO_FRACTION, "")
    values = pc.cast(digits, pa.int64()).to_numpy()
    return ParsedIntegers(values=values, empty=empty, malformed=~valid & ~empty)


def parse_floats(text: pa.Array, pattern: str, prefix_length: int = 0) -> np.ndarray:
    """Text matching the regex `pattern` as float64, less its first `prefix_length` characters;
    NaN wherever the text does not match."""
    matches = pc.match_substring_regex(text, pattern)
    numbers = pc.if_else(matches, pc.utf8_slice_codeunits(text, prefix_length), "0")
    values = pc.cast(numbers, pa.float64()).to_numpy(zero_copy_only=False)
    return np.where(_numpy(matches), values, np.nan)


def _numpy(mask: pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False)
