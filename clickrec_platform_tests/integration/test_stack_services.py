"""Each service of the local stack, through its real client."""

from __future__ import annotations

import re
import uuid

import httpx
import mlflow
import psycopg
import pytest
from mlflow.tracking import MlflowClient

from clickrec_platform.stack.kafka import KafkaService, admin_client
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform_tests.support import consume, produce

pytestmark = pytest.mark.integration


def test_kafka_round_trip_keeps_keys_values_and_per_key_partition(stack, kafka_topic):
    records = [(f"visitor-{i % 7}".encode(), f'{{"n": {i}}}'.encode()) for i in range(200)]
    produce(stack.kafka_bootstrap_servers, kafka_topic, records)

    messages = consume(stack.kafka_bootstrap_servers, kafka_topic, expected=len(records))

    assert sorted((m.key(), m.value()) for m in messages) == sorted(records)
    partitions_per_key: dict[bytes | None, set[int | None]] = {}
    for message in messages:
        partitions_per_key.setdefault(message.key(), set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions_per_key.values()), partitions_per_key


def test_broker_is_apache_kafka_4_in_kraft_mode(stack, kafka_topic):
    features = KafkaService(stack).broker_features()
    release = re.match(r"(\d+)\.(\d+)", features["metadata.version"])
    assert release and int(release.group(1)) >= 4, features

    admin = admin_client(stack.kafka_bootstrap_servers)
    cluster = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert cluster.cluster_id and cluster.controller is not None

    # The KIP-848 consumer group protocol is served only by Kafka 4.0 and later.
    produce(stack.kafka_bootstrap_servers, kafka_topic, [(b"k", b"v")])
    (message,) = consume(stack.kafka_bootstrap_servers, kafka_topic, expected=1,
                         extra_conf={"group.protocol": "consumer"})
    assert message.value() == b"v"


def test_postgres_answers_with_the_three_databases(stack):
    with psycopg.connect(stack.postgres_dsn("postgres"), connect_timeout=5) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    assert {stack.postgres_db, stack.dagster_db, stack.mlflow_db} <= names
    assert PostgresService(stack).health().ok


def test_mlflow_run_is_stored_on_the_tracking_server(stack):
    mlflow.set_tracking_uri(stack.tracking_uri)
    experiment = f"test-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("recall_at_20", 0.25)
        mlflow.log_text("hello", "notes/readme.txt")

    # Read back through a fresh client, over HTTP: the server (not a local file store) has it.
    client = MlflowClient(tracking_uri=stack.tracking_uri)
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"}
    assert stored.data.metrics == {"recall_at_20": 0.25}
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == ["notes/readme.txt"]
    found = client.get_experiment_by_name(experiment)
    assert found is not None and found.experiment_id == stored.info.experiment_id


def test_dagster_graphql_serves_the_code_location(stack):
    query = """{ assetNodes { assetKey { path } } }"""
    response = httpx.post(f"{stack.dagster_url}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    keys = {tuple(node["assetKey"]["path"]) for node in response.json()["data"]["assetNodes"]}
    assert ("kafka", "clickstream") in keys
    assert ("delta", "bronze", "clickstream_raw") in keys


def test_broker_restart_keeps_written_messages(stack, kafka_topic):
    payload = uuid.uuid4().hex.encode()
    produce(stack.kafka_bootstrap_servers, kafka_topic, [(b"restart", payload)])
    kafka = KafkaService(stack)

    assert kafka.stop()
    assert not kafka.health().ok
    assert kafka.start()

    (message,) = consume(stack.kafka_bootstrap_servers, kafka_topic, expected=1)
    assert message.value() == payload
