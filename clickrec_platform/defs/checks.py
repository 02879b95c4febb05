"""Helpers that turn measurements into asset check results, so each asset states its checks briefly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
from dagster._core.definitions.metadata import RawMetadataValue


def spec(asset_key: Sequence[str], name: str, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=dg.AssetKey(list(asset_key)), description=description, blocking=blocking)


def result(name: str, passed: bool, measured: Mapping[str, RawMetadataValue] | None = None, /, *,
           warn_only: bool = False, **metadata: RawMetadataValue) -> dg.AssetCheckResult:
    """The check's result; its metadata: ``measured`` (a dict of counts, passed whole: spread into the
    keywords, one of its keys could stand for ``warn_only``) and the keywords."""
    return dg.AssetCheckResult(
        check_name=name, passed=bool(passed), metadata={**(measured or {}), **metadata},
        severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR)
