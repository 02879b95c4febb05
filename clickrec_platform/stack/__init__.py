"""The local stack: Kafka, PostgreSQL, MLflow, Dagster, the API, the dashboard and Prometheus as processes on this
machine, and, on request, live traffic (a live producer and the stream job in continuous mode).

The cluster topology (`CLICKREC_TOPOLOGY=cluster`) adds the object store (S3Proxy) and a Spark standalone
master with its workers, and runs Kafka as a cluster."""

from __future__ import annotations

from clickrec_platform.settings import Settings
from clickrec_platform.stack.api_server import ApiService
from clickrec_platform.stack.dagster_server import DagsterDaemonService, DagsterWebserverService
from clickrec_platform.stack.dashboard_server import DashboardService
from clickrec_platform.stack.kafka import KafkaService
from clickrec_platform.stack.live_traffic import LiveProducerService, SpeedLayerService, StreamJobService
from clickrec_platform.stack.mlflow_server import MlflowService
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.prometheus import PrometheusService
from clickrec_platform.stack.s3proxy import S3ProxyService
from clickrec_platform.stack.service import Health, LocalService
from clickrec_platform.stack.spark_cluster import spark_cluster_services

# Start order; `down` stops in reverse. MLflow and Dagster keep their state in PostgreSQL.
SERVICE_TYPES: tuple[type[LocalService], ...] = (
    PostgresService, KafkaService, MlflowService, DagsterWebserverService, DagsterDaemonService, ApiService,
    DashboardService, PrometheusService,
)
# Started only on request (`clickrec demo`, `clickrec up stream speed-layer live-producer`), after the stack.
ON_REQUEST_TYPES: tuple[type[LocalService], ...] = (StreamJobService, SpeedLayerService, LiveProducerService)


def _topology(settings: Settings) -> list[LocalService]:
    """Every service of the settings' topology, in start order."""
    stack = [cls(settings) for cls in (*SERVICE_TYPES, *ON_REQUEST_TYPES)]
    if settings.topology == "cluster":
        # The object store and Spark come up before the services that use them (MLflow's artifacts, Dagster).
        after_kafka = next(i for i, s in enumerate(stack) if s.name == "kafka") + 1
        stack[after_kafka:after_kafka] = [S3ProxyService(settings), *spark_cluster_services(settings)]
    return stack


def services(settings: Settings, names: list[str] | None = None, *, on_request: bool = False
             ) -> list[LocalService]:
    """The services named (any, in start order; a family such as `spark` names its members), else the
    stack's: those a plain `up` starts, plus the on-request ones when ``on_request`` (what `down` and
    `status` look at)."""
    known = _topology(settings)
    if names:
        unknown = set(names) - {s.name for s in known} - {s.family for s in known}
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {[s.name for s in known]}")
        return [s for s in known if s.name in names or s.family in names]
    return [s for s in known if on_request or not s.on_request]


__all__ = ["ON_REQUEST_TYPES", "SERVICE_TYPES", "Health", "LocalService", "services"]
