"""Dagster webserver (UI and GraphQL on :3000) and daemon (schedules, sensors, run queue).

Both share one instance (``DAGSTER_HOME``) whose ``dagster.yaml`` is written from the settings,
with run, event and schedule storage in PostgreSQL, and both load the code location from
``workspace.yaml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.service import Health, LocalService

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
INSTANCE_TEMPLATE = PROJECT_ROOT / "infra" / "dagster" / "dagster.yaml"

DAEMON_HEALTH_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""
LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def write_instance_config(settings: Settings) -> Path:
    """Render ``DAGSTER_HOME/dagster.yaml``: the template in infra/ plus the Postgres URL."""
    home = settings.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    # psycopg2 by name: SQLAlchemy 2.1 defaults to psycopg 3, under which dagster-postgres's
    # parameterised `NOTIFY run_events, %s` fails to parse and poisons the connection.
    url = settings.postgres_dsn(settings.dagster_db, driver="postgresql+psycopg2")
    config["storage"] = {"postgres": {"postgres_url": url}}
    target = home / "dagster.yaml"
    target.touch(mode=0o600)
    target.write_text("# Written by `clickrec up` from infra/dagster/dagster.yaml and the settings.\n"
                      + yaml.safe_dump(config, sort_keys=False))
    return target


def graphql(settings: Settings, query: str, timeout: float = 5.0) -> dict:
    response = httpx.post(f"{settings.dagster_url}/graphql", json={"query": query}, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


class _DagsterProcess(LocalService):
    def _env(self) -> dict[str, str]:
        return {"DAGSTER_HOME": str(self.settings.dagster_home_dir),
                # Code servers import the project: keep them from competing for the 2 cores' BLAS.
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}

    def _bin(self, name: str) -> str:
        return str(Path(sys.executable).with_name(name))

    def prepare(self) -> None:
        write_instance_config(self.settings)


class DagsterWebserverService(_DagsterProcess):
    name = "dagster-webserver"

    @property
    def url(self) -> str:
        return self.settings.dagster_url

    def process(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name=self.name,
            argv=[self._bin("dagster-webserver"), "-h", s.bind_host, "-p", str(s.dagster_port),
                  "-w", str(WORKSPACE)],
            env=self._env, cwd=PROJECT_ROOT, state_dir=s.state_dir,
            ready=lambda: self.health().ok, ports=[(s.bind_host, s.dagster_port)],
            cmdline_marker="dagster-webserver",
        )

    def health(self) -> Health:
        try:
            entries = graphql(self.settings, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
        except Exception as exc:  # noqa: BLE001
            return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
        loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
        errors = [e["name"] for e in entries
                  if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
        ok = bool(entries) and len(loaded) == len(entries) and not errors
        return Health(ok, f"{len(loaded)}/{len(entries)} code location(s) loaded"
                          + (f", errors in {errors}" if errors else ""))


class DagsterDaemonService(_DagsterProcess):
    name = "dagster-daemon"

    @property
    def url(self) -> str:
        return f"{self.settings.dagster_url}/health"

    def process(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name=self.name, argv=[self._bin("dagster-daemon"), "run", "-w", str(WORKSPACE)],
            env=self._env, cwd=PROJECT_ROOT, state_dir=s.state_dir,
            ready=lambda: self.health().ok, cmdline_marker="dagster-daemon",
        )

    def health(self) -> Health:
        """Healthy when every required daemon has sent a recent heartbeat (seen through the webserver)."""
        try:
            statuses = graphql(self.settings, DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"][
                "allDaemonStatuses"]
        except Exception as exc:  # noqa: BLE001
            return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
        required = [d for d in statuses if d["required"]]
        unhealthy = [d["daemonType"] for d in required if not d["healthy"]]
        return Health(bool(required) and not unhealthy,
                      f"{len(required) - len(unhealthy)}/{len(required)} daemons healthy"
                      + (f", waiting for {unhealthy}" if unhealthy else ""))
