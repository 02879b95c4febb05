"""The local stack: Kafka, PostgreSQL, MLflow, Dagster, the API and the dashboard as processes on this machine."""

from __future__ import annotations

from clickrec_platform.settings import Settings
from clickrec_platform.stack.api_server import ApiService
from clickrec_platform.stack.dagster_server import DagsterDaemonService, DagsterWebserverService
from clickrec_platform.stack.dashboard_server import DashboardService
from clickrec_platform.stack.kafka import KafkaService
from clickrec_platform.stack.mlflow_server import MlflowService
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.service import Health, LocalService

# Start order; `down` stops in reverse. MLflow and Dagster keep their state in PostgreSQL.
SERVICE_TYPES: tuple[type[LocalService], ...] = (
    PostgresService, KafkaService, MlflowService, DagsterWebserverService, DagsterDaemonService, ApiService,
    DashboardService,
)


def services(settings: Settings, names: list[str] | None = None) -> list[LocalService]:
    chosen = [cls(settings) for cls in SERVICE_TYPES]
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {[s.name for s in chosen]}")
        chosen = [s for s in chosen if s.name in names]
    return chosen


__all__ = ["SERVICE_TYPES", "Health", "LocalService", "services"]
