"""Accounting for every row a reader sees: accepted, or rejected with a reason and kept."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson

from clickrec_platform.events.validation import RejectReasons
from clickrec_platform.sources.csv_lines import LineChunk


@dataclass
class FileTally:
    rows_read: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
        }


class RejectLedger:
    """Counts rows per file and appends each rejected row to a JSON-lines file.

    One object per rejected row: `{"file", "line" (1-based), "raw" (the line as read), "reason"}`.
    Opening a ledger truncates its file, so the file always describes the latest run.
    """

    def __init__(self, rejects_path: str | Path) -> None:
        self.rejects_path = Path(rejects_path)
        self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
        self._rejects = self.rejects_path.open("wb")
        self.tallies: dict[str, FileTally] = {}

    def record(self, file_name: str, chunk: LineChunk, reasons: RejectReasons) -> None:
        """Account for every row of `chunk`, given the reasons its rejected rows got."""
        tally = self.tallies.setdefault(file_name, FileTally())
        rejected = np.flatnonzero(~reasons.accepted)
        tally.rows_read += len(chunk.lines)
        tally.accepted += len(chunk.lines) - len(rejected)
        if not len(rejected):
            return
        raw_lines = chunk.lines.take(rejected).to_pylist()
        line_numbers = chunk.line_numbers[rejected].tolist()
        for line, raw, reason in zip(line_numbers, raw_lines, reasons.values[rejected], strict=True):
            tally.rejected[reason] += 1
            record = {"file": file_name, "line": line, "raw": raw, "reason": reason}
            self._rejects.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per file: rows read, accepted, rejected, and rejected by reason (JSON-ready)."""
        return {file_name: tally.as_dict() for file_name, tally in self.tallies.items()}

    def close(self) -> None:
        self._rejects.close()

    def __enter__(self) -> RejectLedger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
