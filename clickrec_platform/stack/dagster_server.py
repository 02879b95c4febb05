"""Dagster: a code server (the definitions, loaded once; it launches the runs), the webserver (UI and
GraphQL on :3000) and the daemon (schedules, sensors, run queue).

All share one instance (``DAGSTER_HOME``) whose ``dagster.yaml`` is written from the settings, with
run, event and schedule storage in PostgreSQL. The webserver and daemon reach the code location through
``DAGSTER_HOME/workspace.yaml``, written from the settings too: a ``grpc_server`` entry for the standing
code server, as Dagster deploys it in production. The project's own ``workspace.yaml`` (a
``python_module`` entry) stays for ``dagster dev``; with it the daemon starts a new code server process at
every workspace refresh (each minute), importing the whole project each time: a steady load on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.process import port_in_use
from clickrec_platform.stack.service import Health, ServiceSpec, executable

MODULE_NAME = "clickrec_platform.definitions"
LOCATION_NAME = "clickrec_platform"
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


def write_workspace(settings: Settings) -> Path:
    """Render ``DAGSTER_HOME/workspace.yaml``: the one code location, served by the standing code server."""
    home = settings.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    workspace = {"load_from": [{"grpc_server": {"host": settings.bind_host, "port": settings.dagster_code_server_port,
                                                "location_name": LOCATION_NAME}}]}
    target = home / "workspace.yaml"
    target.write_text("# Written by `clickrec up` from the settings: the code server `clickrec up` runs.\n"
                      + yaml.safe_dump(workspace, sort_keys=False))
    return target


def _environment(s: Settings) -> dict[str, str]:
    return {"DAGSTER_HOME": str(s.dagster_home_dir),
            # Code servers import the project: keep them from competing for the 2 cores' BLAS.
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}


def _prepare(s: Settings) -> None:
    write_instance_config(s)
    write_workspace(s)


def _workspace(s: Settings) -> str:
    return str(s.dagster_home_dir / "workspace.yaml")


def _code_server_health(s: Settings) -> Health:
    """Serving, with the definitions loaded (it answers with the location's repositories)."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster._utils.error import SerializableErrorInfo

    host, port = s.bind_host, s.dagster_code_server_port
    if not port_in_use(host, port):  # before gRPC, whose client reports a refused connection on stderr
        return Health(False, f"nothing listens on {host}:{port}")
    client = DagsterGrpcClient(port=port, host=host)
    try:
        status = client.health_check_query()
        if status != "SERVING":
            return Health(False, f"gRPC health: {status}")
        loaded = deserialize_value(client.list_repositories())
    except Exception as exc:  # noqa: BLE001
        return Health(False, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}")
    if isinstance(loaded, SerializableErrorInfo):
        return Health(False, f"definitions failed to load: {loaded.message.strip()[:160]}")
    return Health(True, f"serving {MODULE_NAME}")


def _webserver_health(s: Settings) -> Health:
    try:
        entries = graphql(s, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
    except Exception as exc:  # noqa: BLE001
        return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
    loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
    errors = [e["name"] for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
    ok = bool(entries) and len(loaded) == len(entries) and not errors
    return Health(ok, f"{len(loaded)}/{len(entries)} code location(s) loaded"
                      + (f", errors in {errors}" if errors else ""))


def _daemon_health(s: Settings) -> Health:
    """Healthy when every required daemon has sent a recent heartbeat (seen through the webserver)."""
    try:
        statuses = graphql(s, DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    except Exception as exc:  # noqa: BLE001
        return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
    required = [d for d in statuses if d["required"]]
    unhealthy = [d["daemonType"] for d in required if not d["healthy"]]
    return Health(bool(required) and not unhealthy,
                  f"{len(required) - len(unhealthy)}/{len(required)} daemons healthy"
                  + (f", waiting for {unhealthy}" if unhealthy else ""))


# `dagster code-server start`: loads the definitions module once, answers the webserver's and the daemon's
# queries (sensor and schedule ticks included), and launches each run as a process of its own (children of
# this one, at its niceness). The UI's "Reload" reloads the code in place.
DAGSTER_CODE_SERVER = ServiceSpec(
    name="dagster-code-server",
    command=lambda s: [executable("dagster"), "code-server", "start", "-h", s.bind_host,
                       "-p", str(s.dagster_code_server_port), "-m", MODULE_NAME, "--location-name", LOCATION_NAME,
                       "--use-python-environment-entry-point", "--log-level", "warning"],
    probe=_code_server_health, url=lambda s: f"grpc://{s.bind_host}:{s.dagster_code_server_port}",
    port=lambda s: s.dagster_code_server_port, marker="code-server", env=_environment, cwd=PROJECT_ROOT,
    prepare=_prepare)
DAGSTER_WEBSERVER = ServiceSpec(
    name="dagster-webserver",
    command=lambda s: [executable("dagster-webserver"), "-h", s.bind_host, "-p", str(s.dagster_port),
                       "-w", _workspace(s)],
    probe=_webserver_health, url=lambda s: s.dagster_url, port=lambda s: s.dagster_port,
    marker="dagster-webserver", env=_environment, cwd=PROJECT_ROOT, prepare=_prepare)
DAGSTER_DAEMON = ServiceSpec(
    name="dagster-daemon", command=lambda s: [executable("dagster-daemon"), "run", "-w", _workspace(s)],
    probe=_daemon_health, url=lambda s: f"{s.dagster_url}/health", marker="dagster-daemon", env=_environment,
    cwd=PROJECT_ROOT, prepare=_prepare)
