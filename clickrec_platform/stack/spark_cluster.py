"""The cluster topology's Spark: a standalone master and its workers, run from the pyspark wheel's own
``spark-class`` (no separate Spark distribution), each on 127.0.0.1 with its state under the state dir.

Applications reach the master at ``settings.spark_master``; the connector jars are read in place on
every node (see ``lake.spark``), and executors run the project's Python. A worker advertises
``spark_worker_cores`` cores: standalone scheduling counts slots, not CPUs, so on a small machine a worker
may offer more slots than it has cores, which lets the continuous stream job and a Dagster run hold
executors at the same time (each application takes at most ``spark_app_cores``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pyspark

from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.service import Health, LocalService

SPARK_HOME = Path(pyspark.__file__).parent


def _spark_class(main_class: str, *args: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args]


class _SparkDaemon(LocalService):
    family = "spark"

    @property
    def webui_port(self) -> int:
        raise NotImplementedError

    @property
    def work_dir(self) -> Path:
        return self.settings.state_dir / "spark" / self.name

    def _env(self) -> dict[str, str]:
        s = self.settings
        return {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": s.bind_host, "SPARK_LOCAL_DIRS": str(self.work_dir / "tmp"),
                "SPARK_LOG_DIR": str(s.state_dir / "logs"), "SPARK_DAEMON_MEMORY": "512m",
                # Executors run the project's interpreter, with its packages.
                "PYSPARK_PYTHON": sys.executable}

    def _json(self) -> dict:
        response = httpx.get(f"http://{self.settings.bind_host}:{self.webui_port}/json/", timeout=3)
        response.raise_for_status()
        return response.json()


class SparkMasterService(_SparkDaemon):
    name = "spark-master"

    @property
    def url(self) -> str:
        return self.settings.spark_master

    @property
    def webui_port(self) -> int:
        return self.settings.spark_master_webui_port

    def process(self) -> ManagedProcess:
        s = self.settings
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        return ManagedProcess(
            name=self.name,
            argv=_spark_class("org.apache.spark.deploy.master.Master", "--host", s.bind_host,
                              "--port", str(s.spark_master_port), "--webui-port", str(self.webui_port)),
            env=self._env, state_dir=s.state_dir, ready=lambda: self.health().ok,
            ports=[(s.bind_host, s.spark_master_port), (s.bind_host, self.webui_port)],
            cmdline_marker="org.apache.spark.deploy.master.Master",
        )

    def workers(self) -> list[dict]:
        return [w for w in self._json().get("workers", []) if w.get("state") == "ALIVE"]

    def health(self) -> Health:
        try:
            state = self._json()
        except httpx.HTTPError as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        return Health(state.get("status") == "ALIVE",
                      f"{state.get('status')}, {len(alive)} worker(s), {state.get('cores', 0)} core(s), "
                      f"{len(state.get('activeapps', []))} app(s)")


class SparkWorkerService(_SparkDaemon):
    def __init__(self, settings, index: int):
        super().__init__(settings)
        self.index = index
        self.name = f"spark-worker-{index}"

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.webui_port}"

    @property
    def webui_port(self) -> int:
        return self.settings.spark_master_webui_port + self.index

    def process(self) -> ManagedProcess:
        s = self.settings
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        return ManagedProcess(
            name=self.name,
            argv=_spark_class("org.apache.spark.deploy.worker.Worker", s.spark_master, "--host", s.bind_host,
                              "--cores", str(s.spark_worker_cores), "--memory", s.spark_worker_memory,
                              "--webui-port", str(self.webui_port), "--work-dir", str(self.work_dir)),
            env=self._env, state_dir=s.state_dir, ready=lambda: self.health().ok,
            ports=[(s.bind_host, self.webui_port)], cmdline_marker=str(self.work_dir),
        )

    def health(self) -> Health:
        """Up, and registered with its master."""
        try:
            state = self._json()
        except httpx.HTTPError as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        registered = state.get("masterurl") == self.settings.spark_master and bool(state.get("id"))
        return Health(registered, f"{state.get('cores')} core(s), {state.get('coresused', 0)} used, "
                                  f"{len(state.get('executors', []))} executor(s)"
                      + ("" if registered else f", not registered with {self.settings.spark_master}"))


def spark_cluster_services(settings) -> list[LocalService]:
    return [SparkMasterService(settings),
            *(SparkWorkerService(settings, i) for i in range(1, settings.spark_workers + 1))]
