"""PostgreSQL from Debian's package: a private cluster with the gold, Dagster and MLflow databases.

``initdb`` refuses to run as root, so as root the cluster is created and run as the ``postgres``
user that Debian's package provides. The cluster's superuser is the platform's own role, with the
generated password from the settings; the server listens on TCP only (no Unix socket), on the
configured host and port.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg import sql

from clickrec_platform.stack.process import ManagedProcess, ServiceError
from clickrec_platform.stack.service import Health, LocalService

RUN_AS = "postgres"


def postgres_bindir() -> Path:
    """The newest Debian-installed server binaries (``/usr/lib/postgresql/<major>/bin``)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL server binaries not found: run `clickrec setup` "
                       "(installs Debian's `postgresql` package) or `apt-get install postgresql`.")


def _as_postgres_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


class PostgresService(LocalService):
    name = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.settings.postgres_host}:{self.settings.postgres_port}"

    @cached_property
    def data_dir(self) -> Path:
        preferred = self.settings.state_dir / "postgres"
        if os.geteuid() != 0 or self._reachable_by_postgres(preferred):
            return preferred
        # The checkout sits where the postgres user cannot go (e.g. under /root): keep the cluster
        # in Debian's own place, one per clickrec home and password, so that a home whose state was
        # wiped (a fresh clone at the same path) never meets a cluster it has no password for.
        identity = f"{self.settings.home.resolve()}\0{self.settings.ensure_local_password()}"
        return Path("/var/lib/postgresql/clickrec") / hashlib.sha1(identity.encode()).hexdigest()[:12]

    @staticmethod
    def _reachable_by_postgres(path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-x", str(path.parent)],
                               capture_output=True)
        return probe.returncode == 0

    def process(self) -> ManagedProcess:
        s = self.settings
        argv = [str(postgres_bindir() / "postgres"), "-D", str(self.data_dir),
                "-c", f"port={s.postgres_port}", "-c", f"listen_addresses={s.postgres_host}",
                "-c", "unix_socket_directories=", "-c", "max_connections=200",
                "-c", "shared_buffers=256MB"]
        return ManagedProcess(
            name=self.name, argv=_as_postgres_user(argv), state_dir=s.state_dir,
            ready=lambda: self.health().ok, ports=[(s.postgres_host, s.postgres_port)],
            cmdline_marker=str(self.data_dir), stop_signal=signal.SIGINT,
        )

    def prepare(self) -> None:
        """Create the cluster once (its data directory survives `down`/`up`)."""
        if (self.data_dir / "PG_VERSION").exists():
            if self.settings.postgres_password is None:
                raise ServiceError(
                    f"A PostgreSQL cluster exists at {self.data_dir}, but its password is unknown "
                    f"({self.settings.local_password_file} is missing): set CLICKREC_POSTGRES_PASSWORD, "
                    f"or remove {self.data_dir} to start with a new, empty cluster.")
            return
        password = self.settings.ensure_local_password()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, RUN_AS, RUN_AS)
        os.chmod(self.data_dir, 0o700)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pwfile:
            pwfile.write(password)
        try:
            if os.geteuid() == 0:
                shutil.chown(pwfile.name, RUN_AS, RUN_AS)
            argv = [str(postgres_bindir() / "initdb"), "-D", str(self.data_dir),
                    "-U", self.settings.postgres_user, f"--pwfile={pwfile.name}",
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                    "-E", "UTF8", "--locale=C.UTF-8"]
            result = subprocess.run(_as_postgres_user(argv), capture_output=True, text=True)
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.settings.postgres_dsn(database), connect_timeout=3, autocommit=True)

    def after_ready(self) -> None:
        """The three databases, created if missing (also on an external server, given the rights)."""
        s = self.settings
        with self.connect() as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for database in (s.postgres_db, s.dagster_db, s.mlflow_db):
                if database not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    def health(self) -> Health:
        try:
            with self.connect() as conn:
                shown = conn.execute("SHOW server_version").fetchone()
                assert shown is not None  # SHOW has one row
                version = shown[0]
                names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "unhealthy"
            return Health(False, f"{type(exc).__name__}: {str(exc).strip()[:160]}")
        s = self.settings
        missing = sorted({s.postgres_db, s.dagster_db, s.mlflow_db} - names)
        detail = f"PostgreSQL {version}" + (f", missing databases {missing}" if missing else "")
        return Health(True, detail)
