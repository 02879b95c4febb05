"""Helpers that turn measurements into asset check results, so each asset states its checks briefly."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def spec(asset_key: Sequence[str], name: str, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=dg.AssetKey(list(asset_key)), description=description, blocking=blocking)


def result(name: str, passed: bool, *, warn_only: bool = False, **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, passed=bool(passed), metadata=metadata,
        severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR)
