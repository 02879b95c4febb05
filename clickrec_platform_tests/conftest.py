"""Shared fixtures. Integration tests talk to the real local stack, which the `stack` fixture starts
when it is not already running and stops again at the end (set CLICKREC_TEST_KEEP_STACK=1 to leave
it up between runs)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.stack import services
from clickrec_platform.stack.kafka import admin_client
from clickrec_platform.stack.setup import run_setup
from clickrec_platform_tests.cluster import cluster, kafka_cluster  # noqa: F401 - the cluster topology's fixtures


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture
def alert_webhook(monkeypatch) -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on loopback, set as this process's CLICKREC_ALERT_WEBHOOK_URL; yields its URL and
    the payloads it received."""
    from clickrec_platform_tests.webhook import webhook_receiver

    with webhook_receiver() as (url, received):
        monkeypatch.setenv("CLICKREC_ALERT_WEBHOOK_URL", url)
        get_settings.cache_clear()
        yield url, received
    monkeypatch.delenv("CLICKREC_ALERT_WEBHOOK_URL")
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    run_setup(settings, report=lambda _line: None)
    started = [service for service in services(settings) if service.start()]
    yield settings
    if os.environ.get("CLICKREC_TEST_KEEP_STACK") != "1":
        for service in reversed(started):
            service.stop()


@pytest.fixture
def kafka_topic(stack: Settings) -> Iterator[str]:
    """A fresh topic of 3 partitions, deleted afterwards."""
    from confluent_kafka.admin import NewTopic

    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = admin_client(stack.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture(scope="session")
def spark(stack: Settings):
    from clickrec_platform.lake.spark import spark_session

    session = spark_session(stack, app_name="clickrec-tests")
    yield session
    session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster topology's tests last: its six JVMs start with the first of them, so none sit idle beside
    the rest of the suite on a 2-core machine."""
    items.sort(key=lambda item: bool({"cluster", "kafka_cluster"} & set(getattr(item, "fixturenames", ()))))
