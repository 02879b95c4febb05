"""The sensor that fails runs whose process died (`defs/ops/runs.py`), on a real temporary Dagster instance and real
processes: one killed, one alive, one whose pid now belongs to a younger process, one of another host."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import dagster as dg

from clickrec_platform.defs.ops.runs import HOST_TAG, PID_TAG, fail_runs_whose_process_died, process_tags


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    """A run recorded as STARTED, as an in-process run is while its process works."""
    run = dg.DagsterRun(job_name="training_graph", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED,
                        tags=tags)
    instance.add_run(run)
    instance.report_dagster_event(dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value,
                                                  job_name=run.job_name), run.run_id)
    started = instance.get_run_by_id(run.run_id)
    assert started is not None and started.status == dg.DagsterRunStatus.STARTED
    return run.run_id


def test_a_started_run_whose_process_is_gone_is_failed_and_the_others_are_left_alone():
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    killed.wait()
    with dg.instance_for_test() as instance:
        dead = _started_run(instance, {HOST_TAG: socket.gethostname(), PID_TAG: str(killed.pid)})
        alive = _started_run(instance, process_tags())  # this test's own process
        elsewhere = _started_run(instance, {HOST_TAG: f"not-{socket.gethostname()}", PID_TAG: str(killed.pid)})
        untagged = _started_run(instance, {})  # e.g. launched by the daemon: not this sensor's to judge
        reused = _started_run(instance, {})
        time.sleep(1.5)
        younger = subprocess.Popen(["sleep", "60"])  # started after the run: its pid is not the run's process
        try:
            instance.add_run_tags(reused, {HOST_TAG: socket.gethostname(), PID_TAG: str(younger.pid)})
            result = fail_runs_whose_process_died(dg.build_sensor_context(instance=instance))
        finally:
            younger.kill()
            younger.wait()
        runs = {run_id: instance.get_run_by_id(run_id) for run_id in (dead, alive, elsewhere, untagged, reused)}
        status = {run_id: run.status if run else None for run_id, run in runs.items()}
        assert status == {dead: dg.DagsterRunStatus.FAILURE, alive: dg.DagsterRunStatus.STARTED,
                          elsewhere: dg.DagsterRunStatus.STARTED, untagged: dg.DagsterRunStatus.STARTED,
                          reused: dg.DagsterRunStatus.FAILURE}
        assert dead in str(result)
        failure = [e for e in instance.all_logs(dead) if e.dagster_event and e.dagster_event.event_type_value ==
                   dg.DagsterEventType.RUN_FAILURE.value]
        assert failure and f"pid {killed.pid}" in failure[0].message
        assert int(process_tags()[PID_TAG]) == os.getpid()
