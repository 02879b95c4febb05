"""Runs of the training graph never overlap on the same lake and gold schema: launched runs hold the
run lock through the graph's executor (here a job with that executor, in processes of their own as the
daemon starts them), in-process ones (`clickrec materialize`, the demo) around ``execute_in_process``
(that half is in ``test_asset_graph.py``, which has a lake to run the graph on)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from clickrec_platform.run_lock import APPLICATION_PREFIX, graph_run_lock
from clickrec_platform.settings import PROJECT_ROOT
from clickrec_platform.stack.scratch import scratch_process_settings

pytestmark = pytest.mark.integration


def launch(home: Path, events: Path, linger_s: float = 3.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clickrec_platform_tests.lock_job"], cwd=PROJECT_ROOT,
                            env={**os.environ, "DAGSTER_HOME": str(home), "LOCK_JOB_EVENTS": str(events),
                                 "LOCK_JOB_LINGER_S": str(linger_s)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def op_events(events: Path) -> list[tuple[str, str, float]]:
    return [(what, run, float(t)) for what, run, t in (line.split() for line in events.read_text().splitlines())]


def waiting_sessions(settings) -> int:
    """Sessions of graph runs waiting for an advisory lock."""
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name LIKE %s",
            (f"{APPLICATION_PREFIX}%",)).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def namespace(stack, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The instance's storage is made here, once: two runs launched together on a fresh home would race to
    # create its SQLite tables, and one would fail on "table already exists".
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    events = tmp_path / "events.txt"
    events.touch()
    with scratch_process_settings(tmp_path, "lock") as settings:
        yield settings, home, events


def test_two_launched_runs_started_together_run_one_after_the_other(namespace):
    settings, home, events = namespace
    runs = [launch(home, events, linger_s=90), launch(home, events, linger_s=90)]  # the first lingers till the
    # second waits for the lock, however slowly it starts
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    starts = sorted((t, run) for what, run, t in op_events(events) if what == "start")
    ends = {run: t for what, run, t in op_events(events) if what == "end"}
    assert len(starts) == 2 and len(ends) == 2
    (_, first), (second_start, second) = starts
    assert ends[first] <= second_start, f"the runs overlapped: {op_events(events)}"
    # The second really waited for the first (rather than starting late by chance), and said so.
    waited = [line for output in outputs for line in output.splitlines() if "waiting for the run lock" in line]
    assert waited and second in waited[0] and f"{APPLICATION_PREFIX} {first}" in waited[0], outputs


def test_a_launched_run_waits_for_an_in_process_one_holding_the_lock(namespace):
    settings, home, events = namespace
    with graph_run_lock(settings, "test: an in-process run"):
        run = launch(home, events)
        deadline = time.monotonic() + 90
        while waiting_sessions(settings) == 0:
            assert time.monotonic() < deadline and run.poll() is None, "the launched run never waited for the lock"
            time.sleep(0.1)
        assert op_events(events) == []  # no step started while the lock was held
        released = time.time()
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 0, output
    assert [what for what, _, _ in op_events(events)] == ["start", "end"]
    assert op_events(events)[0][2] >= released


def test_runs_on_another_lake_and_schema_do_not_wait(namespace, tmp_path):
    settings, _, _ = namespace
    other = settings.model_copy(update={"lake_root": str(tmp_path / "other-lake"), "gold_schema": "other_schema"})
    with graph_run_lock(settings, "test: this namespace"):
        done = threading.Event()

        def other_run() -> None:
            with graph_run_lock(other, "test: another namespace"):
                done.set()

        threading.Thread(target=other_run, daemon=True).start()
        assert done.wait(timeout=30), "a run on another lake and schema waited for this one"
