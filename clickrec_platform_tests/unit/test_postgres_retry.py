"""`write_with_retry` (the stream job's Postgres writes) with fake connections: what counts as an outage,
the backoff, the deadline. The real crash is `integration/test_postgres_drills.py`."""

from __future__ import annotations

import psycopg
import pytest

from clickrec_platform.serving.retry import is_transient, write_with_retry
from clickrec_platform.settings import Settings


class FakeConnection:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def flaky(failures: list[BaseException]):
    """A connect() that raises each of ``failures`` in turn, then connects."""
    def connect():
        if failures:
            raise failures.pop(0)
        return FakeConnection()
    return connect


@pytest.mark.parametrize(("error", "outage"), [
    (psycopg.OperationalError("connection refused"), True),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg.errors.CannotConnectNow("the database system is in recovery mode"), True),
    (psycopg.errors.QueryCanceled("statement timeout"), False),
    (psycopg.errors.DeadlockDetected("deadlock detected"), True),  # the victim: run it again
    (psycopg.errors.SerializationFailure("could not serialize"), True),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (ValueError("bad rows"), False),
])
def test_a_server_away_and_a_deadlock_are_transient_errors_of_the_write_are_not(error, outage):
    assert is_transient(error) is outage


def test_an_outage_is_ridden_out_with_a_backoff_and_the_write_runs_once_it_is_back():
    waits: list[float] = []
    writes: list[object] = []

    def write(conn) -> str:
        writes.append(conn)
        return "done"

    result = write_with_retry(Settings(), write, what="batch 1",
                              connect=flaky([psycopg.OperationalError("refused")] * 5), sleep=waits.append)
    assert result == "done" and len(writes) == 1
    assert waits == [1.0, 2.0, 5.0, 10.0, 10.0]


def test_a_write_that_fails_mid_way_is_run_again_whole():
    attempts = []

    def write(conn):
        attempts.append(conn)
        if len(attempts) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return len(attempts)

    assert write_with_retry(Settings(), write, what="batch 2", connect=flaky([]), sleep=lambda _s: None) == 2


def test_errors_of_the_write_itself_are_raised_at_once_and_an_outage_after_its_deadline():
    with pytest.raises(psycopg.errors.UniqueViolation):
        write_with_retry(Settings(), lambda conn: None, what="b", connect=flaky([psycopg.errors.UniqueViolation("x")]),
                         sleep=lambda _s: pytest.fail("no retry for a bad write"))
    with pytest.raises(psycopg.OperationalError, match="refused"):
        write_with_retry(Settings(), lambda conn: None, what="b", outage_s=0,
                         connect=flaky([psycopg.OperationalError("refused")] * 3), sleep=lambda _s: None)
