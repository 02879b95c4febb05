"""The cluster topology for the tests: the services only it has (the Kafka nodes, the Spark standalone
master and workers, the object store) started beside the local stack, sharing its PostgreSQL, MLflow
and Dagster. One cluster for the whole session; stopped at the end unless CLICKREC_TEST_KEEP_STACK=1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clickrec_platform.settings import Settings
from clickrec_platform.stack import services


def cluster_only_services(cluster: Settings, local: Settings):
    local_names = {s.name for s in services(local, on_request=True)}
    return [s for s in services(cluster) if s.name not in local_names]


@pytest.fixture(scope="session")
def cluster(stack: Settings) -> Iterator[Settings]:
    """The stack's settings in the cluster topology, its cluster services running."""
    settings = Settings(topology="cluster")  # from the same environment as the stack's, so equal but for the topology
    started = [service for service in cluster_only_services(settings, stack) if service.start()]
    yield settings
    if os.environ.get("CLICKREC_TEST_KEEP_STACK") != "1":
        for service in reversed(started):
            service.stop()
