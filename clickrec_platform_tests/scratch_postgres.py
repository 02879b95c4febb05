"""A PostgreSQL cluster of the test's own, to crash: the stack's `PostgresService` with its own home and port.

The stack's server holds MLflow's and Dagster's state and other sessions' work, so fault drills never touch
it: they start this one, point what they test at it, ``kill -9`` its postmaster and start it again (the
server then runs its crash recovery from the WAL, as after a power cut).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import SecretStr

from clickrec_platform.settings import Settings
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.process import ServiceError, pid_alive
from clickrec_platform_tests.support import free_port


@dataclass
class ScratchPostgres:
    service: PostgresService

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def environment(self) -> dict[str, str]:
        """The variables that point a child process (or this one's `get_settings()`) at this server."""
        s = self.settings
        assert s.postgres_password is not None and s.reader_password is not None  # scratch_postgres sets both
        return {"CLICKREC_POSTGRES_HOST": s.postgres_host, "CLICKREC_POSTGRES_PORT": str(s.postgres_port),
                "CLICKREC_POSTGRES_PASSWORD": s.postgres_password.get_secret_value(),
                "CLICKREC_READER_PASSWORD": s.reader_password.get_secret_value()}

    def postmaster_pid(self) -> int:
        """From the server's own lock file (as root it runs under `runuser`, whose pid the pid file holds)."""
        return int((self.service.data_dir / "postmaster.pid").read_text().split()[0])

    def kill_postmaster(self, timeout_s: float = 60.0) -> int:
        """``kill -9`` the postmaster; returns once it and every backend it had started are gone (a backend
        notices its postmaster's death and exits; a new server refuses to start while one still holds the
        shared memory)."""
        pid = self.postmaster_pid()
        backends = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while any(pid_alive(p) for p in (pid, *backends)):
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout_s:.0f}s for the killed postmaster {pid} and its backends "
                                     f"{[p for p in backends if pid_alive(p)]} to exit")
            time.sleep(0.05)
        return pid

    def start(self) -> float:
        """Start the server (after a crash: its recovery included); seconds until it answers."""
        started = time.monotonic()
        if not self.service.start():
            raise ServiceError("the scratch PostgreSQL was still running")
        return time.monotonic() - started

    def connect(self, database: str | None = None, **options) -> psycopg.Connection:
        return psycopg.connect(self.settings.postgres_dsn(database), connect_timeout=5, autocommit=True, **options)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(") ")[2].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


@contextmanager
def scratch_postgres(base: Settings) -> Iterator[ScratchPostgres]:
    """A fresh cluster under /tmp on a free port (its own password), stopped and removed afterwards. As
    root it runs as the postgres user, who must be able to reach its data directory: hence /tmp and 0711."""
    home = Path(tempfile.mkdtemp(prefix="clickrec-pgdrill-", dir="/tmp"))
    os.chmod(home, 0o711)
    settings = base.model_copy(update={
        "home": home, "postgres_host": "127.0.0.1", "postgres_port": free_port(),
        "postgres_password": SecretStr(secrets.token_urlsafe(18)),
        "reader_password": SecretStr(secrets.token_urlsafe(18)), "startup_timeout_s": 120.0})
    service = PostgresService(settings)
    try:
        scratch = ScratchPostgres(service)
        scratch.start()
        yield scratch
    finally:
        service.stop()
        shutil.rmtree(home, ignore_errors=True)
