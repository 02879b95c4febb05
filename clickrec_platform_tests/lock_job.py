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

OVERLAP_CHANCE_S = 3.0


def _record(what: str, run_id: str) -> None:
    with open(os.environ["LOCK_JOB_EVENTS"], "a") as events:
        events.write(f"{what} {run_id} {time.time()}\n")


def _others_running(run_id: str) -> bool:
    started, ended = set(), set()
    for line in Path(os.environ["LOCK_JOB_EVENTS"]).read_text().splitlines():
        what, run, _ = line.split()
        (started if what == "start" else ended).add(run)
    return bool(started - ended - {run_id})


@dg.op
def rewrite_tables(context) -> None:
    """Lingers until another run's op starts (which the lock must prevent) or a while has passed, so
    that two runs not held apart would overlap."""
    _record("start", context.run_id)
    deadline = time.monotonic() + OVERLAP_CHANCE_S
    while time.monotonic() < deadline and not _others_running(context.run_id):
        time.sleep(0.02)
    _record("end", context.run_id)


@dg.job(executor_def=locked_in_process_executor)
def locked_job() -> None:
    rewrite_tables()


if __name__ == "__main__":
    with dg.execute_job(dg.reconstructable(locked_job), instance=dg.DagsterInstance.get()) as result:
        print(f"run {result.run_id} success={result.success}", flush=True)
        sys.exit(0 if result.success else 1)
