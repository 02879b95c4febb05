"""Run the Dagster asset graph from the CLI, tests and benchmarks: the same job the UI, the schedule and
the sensor launch, recorded in the platform's Dagster instance so the runs show up in the UI."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import dagster as dg

from clickrec_platform.defs.ops.runs import process_tags
from clickrec_platform.lake.silver import silver_overview
from clickrec_platform.lake.table_versions import latest_version
from clickrec_platform.lake.tables import SILVER_EVENTS
from clickrec_platform.run_lock import graph_run_lock
from clickrec_platform.settings import Settings

JOB = "training_graph"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class PartitionRange:
    first: str  # event dates, inclusive: 2015-05-04
    last: str

    @classmethod
    def parse(cls, text: str) -> PartitionRange:
        first, _, last = text.partition("...")
        return cls(first.strip(), (last or first).strip())


def silver_event_dates(settings: Settings) -> PartitionRange | None:
    """The first and last event dates in silver.events (None while it is empty or missing)."""
    if latest_version(SILVER_EVENTS.path(settings), settings) is None:
        return None
    silver = silver_overview(settings)
    if silver.first_event_date is None:
        return None
    return PartitionRange(str(silver.first_event_date), str(silver.last_event_date))


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """The platform's instance (dagster-postgres, written by `clickrec up`); a temporary one if that
    has not been set up, so a run still works without the UI."""
    home = settings.dagster_home_dir
    if (home / "dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(home)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def materialize(settings: Settings, select: str | None = None, partitions: PartitionRange | None = None,
                instance: dg.DagsterInstance | None = None, raise_on_error: bool = True,
                ) -> dg.ExecuteInProcessResult:
    """Materialise `select` (Dagster's selection syntax; everything in the training graph when None) for
    the event dates in `partitions` (all dates in silver.events when None), in one run, in this process,
    with the resources configured from `settings` (their lake, Spark master and database).

    The run holds the graph's run lock (`run_lock.py`): it waits for any other run on the same lake or
    gold schema, launched by the instance or in another process, and they wait for it."""
    from clickrec_platform.definitions import defs

    job = definitions_for(settings).resolve_job_def(JOB)
    partitions = partitions or silver_event_dates(settings)
    if partitions is None:
        raise RuntimeError(f"silver.events at {SILVER_EVENTS.path(settings)} is empty: stream events first")
    selection = None
    if select:
        graph = defs.resolve_asset_graph()
        selection = dg.AssetSelection.from_string(select).resolve(graph) & set(job.asset_layer.executable_asset_keys)
        if not selection:
            raise ValueError(f"{select!r} selects no asset of the {JOB} job")
    if job.partitions_def is None:
        raise RuntimeError(f"the {JOB} job has no partitions")
    partitions = _within(partitions, job.partitions_def)
    # Where its process runs: a sensor fails the run if the process dies without reporting its end.
    tags = {RANGE_START_TAG: partitions.first, RANGE_END_TAG: partitions.last, **process_tags()}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the event log keeps everything
    # execute_in_process runs its own executor, not the job's: the run lock is taken here instead.
    with graph_run_lock(settings, f"in-process pid {os.getpid()} {select or JOB}", say=_say):
        return job.execute_in_process(instance=instance or instance_for(settings), tags=tags, run_config=quiet,
                                      asset_selection=sorted(selection) if selection else None,
                                      raise_on_error=raise_on_error)


def definitions_for(settings: Settings) -> dg.Definitions:
    """The platform's definitions with their resources configured from ``settings`` in place of the process's
    (the same assets, jobs, schedules and sensors, on another lake, database or Spark master)."""
    from dagster_shared.record import copy  # Definitions is an immutable record

    from clickrec_platform.definitions import defs
    from clickrec_platform.defs.resources import platform_resources

    return copy(defs, resources={**(defs.resources or {}), **platform_resources(settings)})


def _say(message: str) -> None:
    print(f"clickrec materialize: {message}", file=sys.stderr, flush=True)


def _within(partitions: PartitionRange, definition: dg.PartitionsDefinition) -> PartitionRange:
    """The range cut to the partitions that exist (event dates in the future have none yet)."""
    keys = definition.get_partition_keys()
    first, last = max(partitions.first, keys[0]), min(partitions.last, keys[-1])
    if first > last:
        raise ValueError(f"event dates {partitions.first} … {partitions.last} lie outside the partitions "
                         f"{keys[0]} … {keys[-1]}")
    return PartitionRange(first, last)


@dataclass
class StepReport:
    asset: str
    seconds: float = 0.0
    rows: int | None = None
    checks: dict[str, bool] | None = None
    ok: bool = True

    @property
    def checks_summary(self) -> str:
        if not self.checks:
            return ""
        failed = [name for name, passed in self.checks.items() if not passed]
        return f"{len(self.checks) - len(failed)}/{len(self.checks)} passed" + (
            f" (failed: {', '.join(failed)})" if failed else "")


@dataclass
class RunReport:
    run_id: str
    success: bool
    partitions: str
    seconds: float
    steps: list[StepReport]
    failures: list[str]


def run_report(result: dg.ExecuteInProcessResult, partitions: str, seconds: float) -> RunReport:
    """Per asset: step seconds, rows written, check outcomes."""
    steps: dict[str, StepReport] = {}
    failures: list[str] = []
    for event in result.all_events:
        kind, step_key = event.event_type_value, event.step_key or ""  # each event here is a step's
        if kind == "ASSET_MATERIALIZATION":
            materialization = event.step_materialization_data.materialization
            asset = materialization.asset_key.to_user_string()
            step = steps.setdefault(step_key, StepReport(asset))
            if asset not in step.asset.split(" + "):  # a multi-asset step
                step.asset += f" + {asset}"
            rows = materialization.metadata.get("row_count")
            # a range run reports its range's rows on each partition's event
            if isinstance(rows, dg.IntMetadataValue) and rows.value is not None:
                step.rows = max(step.rows or 0, rows.value)
        elif kind == "ASSET_CHECK_EVALUATION":
            check = event.asset_check_evaluation_data
            step = steps.setdefault(step_key, StepReport(check.asset_key.to_user_string()))
            step.checks = {**(step.checks or {}), f"{check.asset_key.path[-1]}.{check.check_name}": check.passed}
            step.ok &= check.passed or check.severity == dg.AssetCheckSeverity.WARN
        elif kind == "STEP_SUCCESS":
            duration_ms = event.step_success_data.duration_ms
            steps.setdefault(step_key, StepReport(step_key)).seconds = duration_ms / 1000
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            steps.setdefault(step_key, StepReport(step_key)).ok = False
            failures.append(f"{step_key}: {error.message.strip() if error else 'failed'}")
        elif kind == "STEP_SKIPPED":
            failures.append(f"{step_key}: skipped (an upstream blocking check failed)")
    return RunReport(result.run_id, result.success, partitions, seconds, list(steps.values()), failures)


def materialize_and_report(settings: Settings, select: str | None = None,
                           partitions: PartitionRange | None = None) -> RunReport:
    partitions = partitions or silver_event_dates(settings)
    started = time.perf_counter()
    result = materialize(settings, select, partitions, raise_on_error=False)
    label = f"event dates {partitions.first} … {partitions.last}" if partitions else ""
    return run_report(result, label, time.perf_counter() - started)
