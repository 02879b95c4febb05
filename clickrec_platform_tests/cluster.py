"""The cluster topology's services for the tests, shared by every test that runs on the cluster (one cluster
per session, as in CI on 2 cores), beside the local stack, sharing its PostgreSQL, MLflow and Dagster.

`kafka_cluster` starts the Kafka nodes (kafka-1 … kafka-N), `cluster` the rest of what only the cluster
topology has (the object store, the Spark standalone master and workers), both in the stack's home unless
they run; each stops what it started at the end, unless CLICKREC_TEST_KEEP_STACK=1 (as the `stack` fixture
does). A node that a fault drill killed and restarted is stopped by its pid file like any other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clickrec_platform.settings import Settings
from clickrec_platform.stack import services


def _stop_unless_kept(started) -> None:
    if os.environ.get("CLICKREC_TEST_KEEP_STACK") != "1":
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="session")
def kafka_cluster(stack: Settings) -> Iterator[Settings]:
    """The cluster topology's settings (``topology="cluster"``, in the stack's home), its Kafka running: every
    broker registered and the platform's topics created with the cluster's replication."""
    cluster = Settings(topology="cluster", home=stack.home)
    started = [node for node in services(cluster, ["kafka"]) if node.start()]
    yield cluster
    _stop_unless_kept(started)


@pytest.fixture(scope="session")
def cluster(stack: Settings, kafka_cluster: Settings) -> Iterator[Settings]:
    """The cluster topology's settings with all its engines running: Kafka, the object store (the lake's
    bucket created) and Spark (every worker registered with the master)."""
    started = [service for service in services(kafka_cluster, ["s3proxy", "spark"]) if service.start()]
    yield kafka_cluster
    _stop_unless_kept(started)
