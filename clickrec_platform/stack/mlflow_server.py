"""MLflow tracking server: PostgreSQL backend store, artifacts served from a local folder, UI on :5000."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.service import Health, LocalService


class MlflowService(LocalService):
    name = "mlflow"

    @property
    def url(self) -> str:
        return self.settings.tracking_uri

    def process(self) -> ManagedProcess:
        s = self.settings
        s.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        return ManagedProcess(
            name=self.name,
            argv=[str(mlflow), "server", "--host", s.bind_host, "--port", str(s.mlflow_port),
                  "--workers", "1", "--serve-artifacts",
                  "--artifacts-destination", s.mlflow_artifacts_dir.as_uri()],
            # Through the environment, so the password never shows in the process list.
            env=lambda: {"MLFLOW_BACKEND_STORE_URI": s.postgres_dsn(s.mlflow_db, driver="postgresql+psycopg2")},
            state_dir=s.state_dir, ready=lambda: self.health().ok,
            ports=[(s.bind_host, s.mlflow_port)], cmdline_marker="mlflow",
        )

    def health(self) -> Health:
        try:
            response = httpx.get(f"{self.url}/health", timeout=3)
            version = httpx.get(f"{self.url}/version", timeout=3).text
        except httpx.HTTPError as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        return Health(response.status_code == 200, f"MLflow {version}, /health {response.status_code}")
