"""How the platform states asset checks.

A table's checks are a ``multi_asset_check`` in the ``checks.py`` beside its asset (``defs/<domain>/``): it
reads the table as it is in the lake, measures it, and a pure function (``features/quality.py``,
``reference/quality.py``, …) turns the measurements into :class:`~clickrec_platform.lake.quality.Verdict`s.
So each check shows next to its asset in the UI and can be re-run alone (``can_subset``), as well as
running right after the asset in the same run; a blocking one failed stops what depends on the asset.

Inline ``check_specs`` remain where a check judges what one materialisation did rather than the data it
left: the model gate's verdict and the tracking server's read-back of this run's candidates
(``defs/training``, ``defs/sessions``), the publish transaction's own row counts (``defs/publish``) and the
freshness of an observation (``defs/ingest``). Re-run alone, they would have nothing to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.metadata import RawMetadataValue

from clickrec_platform.lake.quality import Verdict


def spec(asset_key: Sequence[str], name: str, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=dg.AssetKey(list(asset_key)), description=description, blocking=blocking)


def result(name: str, passed: bool, measured: Mapping[str, RawMetadataValue] | None = None, /, *,
           warn_only: bool = False, **metadata: RawMetadataValue) -> dg.AssetCheckResult:
    """The check's result; its metadata: ``measured`` (a dict of counts, passed whole: spread into the
    keywords, one of its keys could stand for ``warn_only``) and the keywords."""
    return dg.AssetCheckResult(
        check_name=name, passed=bool(passed), metadata={**(measured or {}), **metadata},
        severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR)


def selected(context: dg.AssetCheckExecutionContext, asset_key: Sequence[str], verdicts: Iterable[Verdict],
             **metadata: RawMetadataValue) -> Iterator[dg.AssetCheckResult]:
    """The results of the verdicts that this execution selected (all, unless one check is re-run alone),
    each with the verdict's measurements and ``metadata``."""
    key = dg.AssetKey(list(asset_key))
    chosen = {check.name for check in context.selected_asset_check_keys if check.asset_key == key}
    for verdict in verdicts:
        if verdict.name in chosen:
            yield dg.AssetCheckResult(
                asset_key=key, check_name=verdict.name, passed=bool(verdict.passed),
                metadata={**verdict.measured, **metadata})
