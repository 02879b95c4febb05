"""Runs whose process died: marked failed, so the instance's queue does not wait for them for ever.

`clickrec materialize`, the demo, tests and benchmarks run the graph in their own process
(`execute_in_process`), recorded in the stack's instance. A process killed mid-run (kill -9, the machine
going down, a lost terminal) cannot report its end: the run stays STARTED, and the run queue
(`max_concurrent_runs: 1`) counts it as in progress and launches nothing else, the sensor's and
schedule's runs included, until someone terminates it by hand. Dagster's run monitoring cannot see these:
they were not launched by a run launcher. Each such run carries the host and pid of its process
(`orchestration.materialize`); this sensor fails the ones whose process is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

HOST_TAG = "clickrec/host"
PID_TAG = "clickrec/pid"


def process_tags() -> dict[str, str]:
    """The tags an in-process run carries: where its process runs."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _started_at(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None when there is no such process."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_gone(run: dg.DagsterRun, run_started_at: float | None) -> bool:
    """True when the run's process (by its tags) no longer runs on this host: no such pid, or the pid now
    belongs to a process started after the run (reused). Runs of other hosts, or without the tags, are not
    judged (False)."""
    if run.tags.get(HOST_TAG) != socket.gethostname() or not run.tags.get(PID_TAG, "").isdigit():
        return False
    started = _started_at(int(run.tags[PID_TAG]))
    if started is None:
        return True
    return run_started_at is not None and started > run_started_at + 1.0  # 1 s: boot time is whole seconds


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark every STARTED run whose process is gone as failed (with the reason in its event log); their ids."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if process_gone(record.dagster_run, record.start_time or record.create_timestamp.timestamp()):
            run = record.dagster_run
            instance.report_run_failed(run, f"its process (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) is "
                                            "gone: it ended without reporting the run's end (killed?)")
            failed.append(run.run_id)
    return failed


@dg.sensor(name="fail_runs_whose_process_died", minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING)
def fail_runs_whose_process_died(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = fail_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(failed)}" if failed else "every started run's process runs")


@dg.definitions
def run_sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[fail_runs_whose_process_died])
