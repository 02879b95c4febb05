"""The local stack: Kafka, PostgreSQL, MLflow, Dagster, the API, the dashboard and Prometheus as processes on this
machine, and, on request, live traffic (a live producer and the stream job in continuous mode). The cluster
topology (`CLICKREC_TOPOLOGY=cluster`) runs a Kafka cluster in place of the single broker, and adds the
lake's object store (S3Proxy) and a Spark standalone master with its workers."""

from __future__ import annotations

from collections.abc import Callable

from clickrec_platform.settings import Settings
from clickrec_platform.stack.api_server import ApiService
from clickrec_platform.stack.dagster_server import (
    DagsterCodeServerService,
    DagsterDaemonService,
    DagsterWebserverService,
)
from clickrec_platform.stack.dashboard_server import DashboardService
from clickrec_platform.stack.kafka import KafkaService, kafka_cluster
from clickrec_platform.stack.live_traffic import LiveProducerService, SpeedLayerService, StreamJobService
from clickrec_platform.stack.mlflow_server import MlflowService
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.prometheus import PrometheusService
from clickrec_platform.stack.s3proxy import S3ProxyService
from clickrec_platform.stack.service import Health, LocalService
from clickrec_platform.stack.spark_cluster import spark_cluster_services

# Start order; `down` stops in reverse. MLflow and Dagster keep their state in PostgreSQL.
SERVICE_TYPES: tuple[type[LocalService], ...] = (
    PostgresService, KafkaService, MlflowService, DagsterCodeServerService, DagsterWebserverService,
    DagsterDaemonService, ApiService, DashboardService, PrometheusService,
)


def _cluster_engines(settings: Settings) -> list[LocalService]:
    """The Kafka nodes kafka-1 … kafka-N, then the object store and Spark (before MLflow and Dagster, which use them)."""
    return [*kafka_cluster(settings), S3ProxyService(settings), *spark_cluster_services(settings)]


# The cluster topology's services in place of a local one (at its place in the start order).
CLUSTER_SERVICES: dict[type[LocalService], Callable[[Settings], list[LocalService]]] = {
    KafkaService: _cluster_engines,
}
# Started only on request (`clickrec demo`, `clickrec up stream speed-layer live-producer`), after the stack.
ON_REQUEST_TYPES: tuple[type[LocalService], ...] = (StreamJobService, SpeedLayerService, LiveProducerService)


def services(settings: Settings, names: list[str] | None = None, *, on_request: bool = False
             ) -> list[LocalService]:
    """The services named (any, in start order; a family such as the cluster's `kafka` stands for its members), else the stack's: those a plain `up` starts, plus the
    on-request ones when ``on_request`` (what `down` and `status` look at)."""
    known = [*_stack(settings), *(cls(settings) for cls in ON_REQUEST_TYPES)]
    if names:  # a clustered service's family ("kafka") names all its members
        unknown = set(names) - {s.name for s in known} - {s.family for s in known}
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {[s.name for s in known]}")
        return [s for s in known if s.name in names or s.family in names]
    return [s for s in known if on_request or not s.on_request]


def _stack(settings: Settings) -> list[LocalService]:
    """What a plain `up` starts, in order, in the settings' topology."""
    if settings.topology != "cluster":
        return [cls(settings) for cls in SERVICE_TYPES]
    return [service for cls in SERVICE_TYPES
            for service in (CLUSTER_SERVICES[cls](settings) if cls in CLUSTER_SERVICES else [cls(settings)])]


__all__ = ["CLUSTER_SERVICES", "ON_REQUEST_TYPES", "SERVICE_TYPES", "Health", "LocalService", "services"]
