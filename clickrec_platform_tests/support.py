"""Helpers the integration tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer

from clickrec_platform.lake.silver import load_events_into_silver
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files
from clickrec_platform.stack.scratch import ISOLATED_FIELDS, scratch_process_settings


def produce(bootstrap_servers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and wait until the broker acknowledged every one."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key,
                                 on_delivery=lambda err, _msg: err and errors.append(str(err)))
                break
            except BufferError:  # the client's queue is full: let deliveries drain it
                producer.poll(0.5)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"undelivered: {remaining}, errors: {errors[:3]}"


def delta_rows(path: str, query: str = "SELECT * FROM t") -> list[tuple]:
    """``query`` over the Delta table at ``path``, seen as ``t`` (DuckDB's delta_scan: a reader other than Spark)."""
    from clickrec_platform.lake.duck import connect

    con = connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM delta_scan('{path}')")
    return con.sql(query).fetchall()


def pg_rows(settings, query: str) -> list[tuple]:
    """``query`` in the gold database, ``{schema}`` standing for the settings' gold schema."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(sql.SQL(query).format(schema=sql.Identifier(settings.gold_schema))).fetchall()


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus endpoint's samples, as {(series name, sorted labels): value}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    """A namespace of its own for this process (`scratch_process_settings`), with `config`'s catalogue
    as the reference files and its events loaded straight into silver.events."""
    with scratch_process_settings(root, "test", **environment) as settings:
        write_catalogue_files(config, settings.catalogue_dir)
        load_events_into_silver(spark, settings, generate_events(config))
        yield settings


def stream_process(settings, log_path, *args: str, metrics_port: int | None = None, **environment: str
                    ) -> subprocess.Popen:
    """`python -m spark_jobs.clickstream_stream ARGS` on ``settings``' topic, lake, app id and schema,
    logging to ``log_path``; in a session of its own, so ``os.killpg`` stops the driver and its JVM."""
    env = {**os.environ, **settings.as_environment(*ISOLATED_FIELDS), "CLICKREC_SPARK_DRIVER_MEMORY": "1g",
           "CLICKREC_STREAM_METRICS_PORT": str(metrics_port or free_port()), **environment}
    with open(log_path, "ab") as log:  # a file, not a pipe: an unread pipe fills up and stalls the job
        return subprocess.Popen([sys.executable, "-m", "spark_jobs.clickstream_stream", *args], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def speed_process(settings, log_path, *args: str, metrics_port: int | None = None, **environment: str
                  ) -> subprocess.Popen:
    """`python -m clickrec_platform.speed.run ARGS` (one speed-layer consumer) on ``settings``' topic, schema
    and consumer group, logging to ``log_path``, in a session of its own."""
    env = {**os.environ, **settings.as_environment(*ISOLATED_FIELDS), **environment}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "clickrec_platform.speed.run", "--metrics-port",
                                 str(metrics_port or 0), "--log-every", "2", *args], cwd=PROJECT_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(what: str, check, timeout_s: float = 120.0, interval_s: float = 0.2, alive=None):
    """Poll ``check()`` until it returns something truthy (returned); fail naming ``what`` after
    ``timeout_s``, or at once when ``alive()`` (a process check) says the process under test is gone."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"waited {timeout_s:.0f}s for {what}; last seen: {last!r}")
