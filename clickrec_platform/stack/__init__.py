"""The local stack: Kafka, PostgreSQL, MLflow, Dagster, the API, the dashboard and Prometheus as processes on this
machine, and, on request, live traffic (a live producer and the stream job in continuous mode). The cluster
topology (`CLICKREC_TOPOLOGY=cluster`) runs a Kafka cluster in place of the single broker, and adds the
lake's object store (S3Proxy) and a Spark standalone master with its workers."""

from __future__ import annotations

from collections.abc import Callable

from clickrec_platform.settings import Settings
from clickrec_platform.stack.apps import API, DASHBOARD
from clickrec_platform.stack.dagster_server import DAGSTER_CODE_SERVER, DAGSTER_DAEMON, DAGSTER_WEBSERVER
from clickrec_platform.stack.kafka import KafkaService, kafka_cluster
from clickrec_platform.stack.live_traffic import LIVE_PRODUCER, SPEED_LAYER, STREAM_JOB
from clickrec_platform.stack.mlflow_server import MLFLOW
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.prometheus import PROMETHEUS
from clickrec_platform.stack.s3proxy import S3PROXY_SERVICE
from clickrec_platform.stack.service import DeclaredService, Health, LocalService, ServiceSpec
from clickrec_platform.stack.spark_cluster import spark_cluster_services

# A service of the stack: a description (most), or a class where it owns more than a process.
Entry = ServiceSpec | type[LocalService]

# Start order; `down` stops in reverse. MLflow and Dagster keep their state in PostgreSQL.
STACK: tuple[Entry, ...] = (
    PostgresService, KafkaService, MLFLOW, DAGSTER_CODE_SERVER, DAGSTER_WEBSERVER, DAGSTER_DAEMON, API, DASHBOARD,
    PROMETHEUS,
)


def _cluster_engines(settings: Settings) -> list[LocalService]:
    """The Kafka nodes kafka-1 … kafka-N, then the object store and Spark (before MLflow and Dagster, which use them)."""
    return [*kafka_cluster(settings), DeclaredService(settings, S3PROXY_SERVICE), *spark_cluster_services(settings)]


# The cluster topology's services in place of a local one (at its place in the start order).
CLUSTER_SERVICES: dict[Entry, Callable[[Settings], list[LocalService]]] = {
    KafkaService: _cluster_engines,
}
# Started only on request (`clickrec demo`, `clickrec up stream speed-layer live-producer`), after the stack.
ON_REQUEST: tuple[ServiceSpec, ...] = (STREAM_JOB, SPEED_LAYER, LIVE_PRODUCER)


def build(entry: Entry, settings: Settings) -> LocalService:
    return DeclaredService(settings, entry) if isinstance(entry, ServiceSpec) else entry(settings)


def services(settings: Settings, names: list[str] | None = None, *, on_request: bool = False
             ) -> list[LocalService]:
    """The services named (any, in start order; a family such as the cluster's `kafka` stands for its members), else the stack's: those a plain `up` starts, plus the
    on-request ones when ``on_request`` (what `down` and `status` look at)."""
    known = [*_stack(settings), *(build(spec, settings) for spec in ON_REQUEST)]
    if names:  # a clustered service's family ("kafka") names all its members
        unknown = set(names) - {s.name for s in known} - {s.family for s in known}
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {[s.name for s in known]}")
        return [s for s in known if s.name in names or s.family in names]
    return [s for s in known if on_request or not s.on_request]


def service(settings: Settings, name: str) -> LocalService:
    """The one service of that name (in any topology: `kafka` is the single broker only where there is one)."""
    (found,) = [s for s in services(settings, [name]) if s.name == name]
    return found


def _stack(settings: Settings) -> list[LocalService]:
    """What a plain `up` starts, in order, in the settings' topology."""
    if settings.topology != "cluster":
        return [build(entry, settings) for entry in STACK]
    return [service for entry in STACK
            for service in (CLUSTER_SERVICES[entry](settings) if entry in CLUSTER_SERVICES else [build(entry, settings)])]


__all__ = ["CLUSTER_SERVICES", "ON_REQUEST", "STACK", "DeclaredService", "Health", "LocalService", "ServiceSpec",
           "build", "service", "services"]
