"""A job with the training graph's executor (holding the run lock), launched as the daemon launches a
run: ``python -m clickrec_platform_tests.lock_job`` runs it once on ``$DAGSTER_HOME``'s instance; its
one op, standing in for a step that rewrites tables, appends start and end times to ``$LOCK_JOB_EVENTS``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dagster as dg

from clickrec_platform.defs.resources import locked_in_process_executor


def _record(what: str, run_id: str) -> None:
    with open(os.environ["LOCK_JOB_EVENTS"], "a") as events:
        events.write(f"{what} {run_id} {time.time()}\n")


def _other_runs(run_id: str) -> tuple[set[str], set[str]]:
    """Other runs whose op started, and those whose op ended."""
    started: set[str] = set()
    ended: set[str] = set()
    for line in Path(os.environ["LOCK_JOB_EVENTS"]).read_text().splitlines():
        what, run, _ = line.split()
        (started if what == "start" else ended).add(run)
    return started - {run_id}, ended - {run_id}


def _a_run_waits_for_the_lock() -> bool:
    import psycopg

    from clickrec_platform.run_lock import APPLICATION_PREFIX
    from clickrec_platform.settings import get_settings

    with psycopg.connect(get_settings().postgres_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name LIKE %s",
            (f"{APPLICATION_PREFIX}%",)).fetchone()
        assert row is not None
        return row[0] > 0


@dg.op
def rewrite_tables(context) -> None:
    """Lingers until another run's op starts (which the lock must prevent), another run waits for the
    lock, another run has already been, or a while has passed: two runs not held apart would overlap."""
    _record("start", context.run_id)
    # $LOCK_JOB_LINGER_S: long enough for a second process to start and ask for the lock on a loaded
    # machine; the op ends as soon as another run waits for the lock or has been.
    deadline = time.monotonic() + float(os.environ.get("LOCK_JOB_LINGER_S", "3"))
    while time.monotonic() < deadline:
        started, ended = _other_runs(context.run_id)
        if started - ended or ended or _a_run_waits_for_the_lock():
            break
        time.sleep(0.05)
    _record("end", context.run_id)


@dg.job(executor_def=locked_in_process_executor)
def locked_job() -> None:
    rewrite_tables()


if __name__ == "__main__":
    with dg.execute_job(dg.reconstructable(locked_job), instance=dg.DagsterInstance.get()) as result:
        print(f"run {result.run_id} success={result.success}", flush=True)
        sys.exit(0 if result.success else 1)
