"""Data-quality measurements that asset checks turn into pass/fail: counted in as few passes as possible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def count_where(frame: DataFrame, conditions: Mapping[str, Column]) -> dict[str, int]:
    """How many rows meet each condition (one pass over `frame`), plus `rows`, the total."""
    row = frame.agg(F.count(F.lit(1)).alias("rows"),
                    *[F.count(F.when(condition, 1)).alias(name) for name, condition in conditions.items()]).first()
    assert row is not None  # an aggregate without grouping has one row
    return {name: int(row[name]) for name in ["rows", *conditions]}


def null_keys(keys: Sequence[str]) -> Column:
    condition = F.lit(False)
    for key in keys:
        condition = condition | F.col(key).isNull()
    return condition


def duplicate_keys(frame: DataFrame, keys: Sequence[str]) -> int:
    """Rows beyond the first for any key value."""
    row = frame.groupBy(*keys).count().where(F.col("count") > 1).agg(F.sum(F.col("count") - 1)).first()
    assert row is not None  # an aggregate without grouping has one row
    return int(row[0] or 0)


@dataclass(frozen=True)
class Verdict:
    """One check's outcome, decided from measurements by a pure function: its name, whether it passed, and
    what was measured (shown with the check in the Dagster UI and in alerts)."""

    name: str
    passed: bool
    measured: Mapping[str, Any] = field(default_factory=dict)
