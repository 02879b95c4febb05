"""Helpers the integration tests share."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Message, Producer
from psycopg import sql

from clickrec_platform.lake.silver import load_events_into_silver
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files


def produce(bootstrap_servers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and wait until the broker acknowledged every one."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value=value, key=key,
                         on_delivery=lambda err, _msg: err and errors.append(str(err)))
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"undelivered: {remaining}, errors: {errors[:3]}"


def consume(bootstrap_servers: str, topic: str, expected: int, timeout_s: float = 60.0,
            **extra_conf: str) -> list[Message]:
    """Read ``expected`` messages from the start of ``topic`` (fails if fewer arrive in time)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra_conf})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == expected, f"consumed {len(messages)} of {expected} from {topic}"
    return messages


@contextmanager
def lake_of_its_own(spark, root: Path, config: GeneratorConfig, **environment: str) -> Iterator[Settings]:
    """The process's settings pointed at a namespace of their own: a lake and reference folder under
    `root`, a Postgres schema, an MLflow experiment and registered model name (removed afterwards),
    plus any other `CLICKREC_…` variables; `config`'s catalogue as the reference files and its
    events loaded straight into silver.events."""
    tag = uuid.uuid4().hex[:8]
    isolated = {"CLICKREC_LAKE_ROOT": str(root / "lake"), "CLICKREC_REFERENCE_DIR": str(root / "reference"),
                "CLICKREC_GOLD_SCHEMA": f"test_{tag}", "CLICKREC_MLFLOW_EXPERIMENT": f"test-{tag}",
                "CLICKREC_REGISTERED_MODEL_NAME": f"test-{tag}", **environment}
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RETAILROCKET_DIR", raising=False)
        for name, value in isolated.items():
            env.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        write_catalogue_files(config, settings.catalogue_dir)
        load_events_into_silver(spark, settings, generate_events(config))
        try:
            yield settings
        finally:
            get_settings.cache_clear()
            _remove_namespace(settings)


def _remove_namespace(settings: Settings) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.gold_schema)))
    client = MlflowClient(settings.tracking_uri)
    with contextlib.suppress(MlflowException):  # raised when nothing was registered
        client.delete_registered_model(settings.registered_model_name)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        client.delete_experiment(experiment.experiment_id)
