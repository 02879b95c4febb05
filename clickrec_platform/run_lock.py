"""One run of the training graph at a time per lake and gold schema, however the run was started.

The Dagster instance's queue (``max_concurrent_runs: 1``) only sees runs it launches: the UI's, the
schedule's and the sensor's. ``clickrec materialize``, the demo, tests and benchmarks run the graph in
their own process (``execute_in_process``), with settings of their own (a scratch lake and schema in
tests), so they cannot go through a daemon that runs with the stack's settings. Instead every run of the
graph holds the same lock for its whole duration: a PostgreSQL session-level advisory lock, taken by
``orchestration.materialize`` around an in-process run and by the graph's executor
(``locked_in_process_executor``) around a launched one. A second run waits, logging which run holds the
lock, and starts its first step only once the first run has ended.

The lock is keyed by the lake (the Delta tables a run rewrites) and by the gold schema (the Postgres
tables it publishes), always taken in that order, so runs on other lakes and schemas (tests) never wait
for each other. A run that dies releases it with its connection; so does a PostgreSQL restart, which
also fails the publish of any run in flight.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from clickrec_platform.settings import Settings

log = logging.getLogger("clickrec.run_lock")
APPLICATION_PREFIX = "clickrec-graph-run"


def lock_keys(settings: Settings) -> list[tuple[str, int]]:
    """(what, key) of the advisory locks a run of the graph holds, in the order they are taken."""
    names = [f"lake {settings.lake_uri.rstrip('/')}", f"gold schema {settings.gold_schema}"]
    return [(name, int.from_bytes(hashlib.blake2b(f"clickrec:{name}".encode(), digest_size=8).digest(), "big",
                                  signed=True)) for name in names]


def _holder(conn: psycopg.Connection, key: int) -> str:
    """The application name of the session holding advisory lock ``key`` (its run), if visible."""
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    return row[0] if row else "another session"


@contextmanager
def graph_run_lock(settings: Settings, run: str, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the graph's run locks for the block; wait (without a time limit) while another run holds them.

    ``run`` names this run in ``pg_stat_activity.application_name`` (so a waiter can say whom it waits
    for); ``say`` reports the wait (a run's log), else the module logger does.
    """
    say = say or log.info
    with psycopg.connect(settings.postgres_dsn(), autocommit=True, connect_timeout=10,
                         application_name=f"{APPLICATION_PREFIX} {run}"[:63]) as conn:
        for name, key in lock_keys(settings):
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            assert got is not None  # a SELECT without FROM has one row
            if not got[0]:
                say(f"waiting for the run lock of the {name}: held by {_holder(conn, key)}")
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                say(f"got the run lock of the {name}")
        yield
    # Closing the session released the locks.
