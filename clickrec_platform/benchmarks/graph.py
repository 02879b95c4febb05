"""The whole Dagster graph on RetailRocket-sized generated data: seconds per asset, in one run.

Targets (2 cores): the feature graph (reference data, features, training sets) ≤ 3 minutes; training
and evaluation of every model ≤ 5 minutes. Runs in a namespace of its own (temporary lake and
reference folder, Postgres schema, MLflow experiment and model name), so the platform's data is
untouched. Silver is loaded straight from the generator (the stream job's own speed is
`clickrec bench stream-catchup`).
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from clickrec_platform.stack.scratch import scratch_process_settings

TARGETS = {"reference + features": 180.0, "training + evaluation": 300.0}
# In the training group but neither training nor evaluation: the champion's outputs, timed apart.
OUTPUTS = "champion's recommendation tables"


def _part(group: str | None, asset: str) -> str:
    """The part of the run a step's time counts toward."""
    if group in ("reference", "features"):
        return "reference + features"
    if group == "training":
        return OUTPUTS if asset.startswith("delta/gold/") and "sessions" not in asset else "training + evaluation"
    return group or "other"


def run_graph_benchmark(events: int, days: int, select: str | None = None) -> Iterator[str]:
    import dagster as dg

    from clickrec_platform.definitions import defs
    from clickrec_platform.lake.silver import load_events_into_silver
    from clickrec_platform.lake.spark import spark_session
    from clickrec_platform.orchestration import materialize_and_report
    from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files

    config = GeneratorConfig(events=events, days=days)
    with (tempfile.TemporaryDirectory(prefix="clickrec-bench-graph-") as root,
          scratch_process_settings(Path(root), "bench") as settings):
        started = time.perf_counter()
        write_catalogue_files(config, settings.catalogue_dir)
        loaded = load_events_into_silver(spark_session(settings), settings, generate_events(config))
        yield f"setup: {loaded:,} generated events over {days} days into silver.events in " \
              f"{time.perf_counter() - started:.1f}s"
        report = materialize_and_report(settings, select)
        graph = defs.resolve_asset_graph()
        by_group: dict[str, float] = defaultdict(float)
        yield f"{'asset':<78} {'seconds':>8} {'rows':>12}  checks"
        for step in report.steps:
            group = graph.get(dg.AssetKey.from_user_string(step.asset.split(" + ")[0])).group_name
            by_group[_part(group, step.asset)] += step.seconds
            rows = f"{step.rows:,}" if step.rows is not None else ""
            yield f"{step.asset:<78} {step.seconds:>8.1f} {rows:>12}  {step.checks_summary}"
        yield from report.failures
        for group, seconds in by_group.items():
            target = f" (target ≤ {TARGETS[group]:.0f}s on 2 cores)" if group in TARGETS else ""
            yield f"{group}: {seconds:.1f}s of step time{target}"
        yield f"whole run ({report.partitions}): {report.seconds:.1f}s, {'succeeded' if report.success else 'FAILED'}"
