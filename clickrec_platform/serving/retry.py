"""Idempotent Postgres writes that ride out a server restart: run the write again once it is back.

The stream job's micro-batches write the Postgres gold and live tables, and every one of those writes is
idempotent (totals booked once per batch id in the same transaction as the rows, windows replaced whole,
events inserted where absent). So when the server is unreachable or goes away mid-write (a crash, a
restart, a failover), the batch waits and runs all of its writes again on a fresh connection: what had
committed is left as it is, what had not is written now. That is better than failing the query, which
stops the job until someone restarts it. A deadlock's victim is run again too. Errors of the data or the
SQL are not retried: they would fail the same way again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from clickrec_platform.settings import Settings

T = TypeVar("T")
log = logging.getLogger("clickrec.postgres")

_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


def is_transient(error: BaseException) -> bool:
    """An error that the same write would not meet again: the server away (connection refused or lost,
    shutting down, in recovery) or the transaction chosen as a deadlock's victim. psycopg raises these as
    ``OperationalError``; a statement timeout is one too, but it would most likely time out again."""
    return isinstance(error, psycopg.OperationalError) and not isinstance(error, psycopg.errors.QueryCanceled)


def write_with_retry(settings: Settings, write: Callable[[psycopg.Connection], T], *, what: str,
                     outage_s: float | None = None, connect: Callable[[], psycopg.Connection] | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> T:
    """``write(conn)`` on a fresh connection (committed when it returns); while Postgres is away, again after a
    backoff (1, 2, 5, then every 10 s), for up to ``outage_s`` (``stream_postgres_outage_s``), then the last
    error is raised. Only for writes that are idempotent: it may run again after a part of it committed."""
    outage_s = settings.stream_postgres_outage_s if outage_s is None else outage_s
    connect = connect or (lambda: psycopg.connect(settings.postgres_dsn(), connect_timeout=10))
    deadline, attempt = time.monotonic() + outage_s, 0
    while True:
        try:
            with connect() as conn:  # commits when the block ends without an error, else rolls back
                result = write(conn)
            if attempt:
                log.warning("%s: written after Postgres came back (%d attempt(s) failed)", what, attempt)
            return result
        except psycopg.Error as error:
            if not is_transient(error) or time.monotonic() >= deadline:
                raise
            delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            attempt += 1
            log.warning("%s: %s; its writes again in %.0fs", what,
                        str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, delay)
            sleep(delay)
