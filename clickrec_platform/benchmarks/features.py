"""The feature graph on RetailRocket-sized generated data: seconds per asset, in one Dagster run.

Runs in a lake and reference folder of its own (a temporary directory), so the platform's data is
untouched. Silver is loaded straight from the generator (the stream job's own speed is
`clickrec bench stream-catchup`); what is timed is the Dagster run over every event date.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clickrec_platform.settings import Settings, get_settings


@contextmanager
def scratch_lake(root: Path) -> Iterator[Settings]:
    """The process's settings pointed at a lake and reference folder under `root`."""
    saved = {name: os.environ.get(name) for name in ("CLICKREC_LAKE_ROOT", "CLICKREC_REFERENCE_DIR")}
    os.environ["CLICKREC_LAKE_ROOT"] = str(root / "lake")
    os.environ["CLICKREC_REFERENCE_DIR"] = str(root / "reference")
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def run_feature_benchmark(events: int, days: int) -> Iterator[str]:
    from clickrec_platform.lake.silver import load_events_into_silver
    from clickrec_platform.lake.spark import spark_session
    from clickrec_platform.orchestration import materialize_and_report
    from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files

    config = GeneratorConfig(events=events, days=days)
    with tempfile.TemporaryDirectory(prefix="clickrec-bench-features-") as root, scratch_lake(Path(root)) as settings:
        started = time.perf_counter()
        write_catalogue_files(config, settings.catalogue_dir)
        loaded = load_events_into_silver(spark_session(settings), settings, generate_events(config))
        yield f"setup: {loaded:,} generated events into silver.events in {time.perf_counter() - started:.1f}s"
        report = materialize_and_report(settings)
        yield f"{'asset':<30} {'seconds':>8} {'rows':>12}  checks"
        for step in sorted(report.steps, key=lambda s: -s.seconds):
            rows = f"{step.rows:,}" if step.rows is not None else ""
            yield f"{step.asset:<30} {step.seconds:>8.1f} {rows:>12}  {step.checks_summary}"
        yield from report.failures
        yield (f"whole feature graph ({report.partitions}): {report.seconds:.1f}s "
               f"({'succeeded' if report.success else 'FAILED'}; target ≤ 180s on 2 cores)")
