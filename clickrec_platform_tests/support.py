"""Helpers the integration tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer
from psycopg import sql

from clickrec_platform.events.codec import InvalidEvent, decode, encode, kafka_key
from clickrec_platform.events.contract import frame_to_events
from clickrec_platform.lake.duck import connect, scan
from clickrec_platform.lake.silver import load_events_into_silver
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    GOLD_EVENT_STATISTICS,
    GOLD_WINDOWED_STATS,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
)
from clickrec_platform.settings import PROJECT_ROOT, Settings, get_settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files
from clickrec_platform.stack.scratch import ISOLATED_FIELDS, TOPOLOGY_FIELDS, scratch_process_settings


def produce(bootstrap_servers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and wait until the broker acknowledged every one."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err:
            errors.append(str(err))

    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the client's queue is full: let deliveries drain it
                producer.poll(0.5)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"undelivered: {remaining}, errors: {errors[:3]}"


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
            extra_conf: Mapping[str, str] | None = None) -> list[Message]:
    """Read ``expected`` messages from the start of ``topic`` (fails if fewer arrive in time)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **(extra_conf or {})})
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
    env = {**os.environ, **settings.as_environment(*ISOLATED_FIELDS, *TOPOLOGY_FIELDS), "CLICKREC_SPARK_DRIVER_MEMORY": "1g",
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


def message_mix(events: int, seed: int) -> tuple[list[tuple[bytes, bytes]], list[str], Counter]:
    """Valid events, re-sent duplicates and bad records; also the unique valid ids and bad reasons."""
    valid = [e for f in generate_events(GeneratorConfig(events=events, seed=seed, days=2)) for e in frame_to_events(f)]
    good = orjson.loads(encode(valid[0]))
    bad = [b"not json", b"", b"[1,2]", b"\xff\xfe\x00garbage",
           orjson.dumps({**good, "visitor_id": "seventeen"}), orjson.dumps({**good, "event": "purchase"}),
           orjson.dumps({**good, "event": "view", "item_id": None}), orjson.dumps({**good, "ts": 12}),
           orjson.dumps({k: v for k, v in good.items() if k != "source"})] * 3
    records = [(kafka_key(e.visitor_id), encode(e)) for e in valid]
    records += records[:: max(1, len(records) // 50)]  # duplicates, sent later
    records += [(b"bad", value) for value in bad]
    reasons: Counter[str] = Counter()
    for value in bad:
        try:
            decode(value)
        except InvalidEvent as invalid:
            reasons[invalid.reason] += 1
    return records, [e.event_id for e in valid], reasons


def delta_rows(path: str, query: str = "SELECT * FROM t", settings=None) -> list[tuple]:
    """Rows of the Delta table at ``path`` (local, or on the object store of ``settings``) through DuckDB."""
    con = connect(settings or get_settings())
    con.execute(f"CREATE VIEW t AS SELECT * FROM {scan(path)}")
    return con.sql(query).fetchall()


def pg_rows(settings, query: str) -> list[tuple]:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(sql.SQL(query).format(schema=sql.Identifier(settings.gold_schema))).fetchall()


def assert_reconciled(s, records, valid_ids, bad_reasons) -> None:
    """After the stream job caught up with ``records``: bronze holds every record, silver every valid
    event once, quarantine every bad one with its reason; the ops log and the event statistics (Delta
    and Postgres) add up to the same."""
    assert delta_rows(BRONZE_CLICKSTREAM.path(s), "SELECT count(*) FROM t", s) == [(len(records),)]
    silver_ids = [r[0] for r in delta_rows(SILVER_EVENTS.path(s), "SELECT event_id FROM t", s)]
    assert sorted(silver_ids) == sorted(valid_ids)
    quarantined = Counter(r[0] for r in delta_rows(SILVER_QUARANTINE.path(s), "SELECT reason FROM t", s))
    assert quarantined == bad_reasons
    # As the bytes received, whatever they are; the text column is for humans.
    assert (b"\xff\xfe\x00garbage", "\ufffd\ufffd\x00garbage", b"bad") in delta_rows(
        SILVER_QUARANTINE.path(s), "SELECT raw_value, raw_text, raw_key FROM t", s)
    (totals,) = delta_rows(OPS_STREAM_BATCHES.path(s), "SELECT sum(bronze_rows), sum(silver_rows), "
                                                       "sum(quarantined_rows), sum(duplicate_rows) FROM t", s)
    bronze, silver, quarantine, duplicates = totals
    assert (bronze, silver, quarantine) == (len(records), len(valid_ids), sum(bad_reasons.values()))
    assert duplicates == len(records) - len(valid_ids) - sum(bad_reasons.values()) > 0
    per_type = Counter(r[0] for r in delta_rows(SILVER_EVENTS.path(s), "SELECT event FROM t", s))
    assert dict(pg_rows(s, "SELECT event, event_count FROM {schema}.event_statistics")) == per_type
    assert dict(delta_rows(GOLD_EVENT_STATISTICS.path(s), "SELECT event, event_count FROM t", s)) == per_type


def assert_gold_windows_match_silver(s) -> None:
    """Gold's 5-minute windows (Delta and Postgres) equal DuckDB's own computation over silver, and the
    top trending score its weighted sum over the 10-minute window."""
    expected = sorted(delta_rows(SILVER_EVENTS.path(s), settings=s, query="""
        SELECT epoch_ms((ts // 300000) * 300000) AS window_start, event, count(*),
               count(DISTINCT visitor_id), count(DISTINCT item_id)
        FROM t GROUP BY ALL"""))
    in_postgres = sorted((ws.replace(tzinfo=None), *rest) for ws, *rest in pg_rows(
        s, "SELECT window_start, event, event_count, unique_users, unique_items FROM {schema}.windowed_stats"))
    in_delta = sorted(delta_rows(GOLD_WINDOWED_STATS.path(s), "SELECT window_start::TIMESTAMP, event, event_count, "
                                                              "unique_users, unique_items FROM t", s))
    assert len(expected) > 20
    assert in_postgres == expected
    assert in_delta == expected

    # Trending: every stored score is the weighted sum over its 10-minute window in silver.
    (checked,) = pg_rows(s, "SELECT count(*) FROM {schema}.trending_items")
    assert checked[0] > 0
    window, item, score = pg_rows(s, "SELECT window_start, item_id, score FROM {schema}.trending_items "
                                     "ORDER BY score DESC, window_start LIMIT 1")[0]
    start_ms = int(window.timestamp() * 1000)
    (recomputed,) = delta_rows(SILVER_EVENTS.path(s), settings=s, query=f"""
        SELECT sum(CASE event WHEN 'view' THEN 1 WHEN 'addtocart' THEN 3 WHEN 'like' THEN 4
                              WHEN 'transaction' THEN 5 END)
        FROM t WHERE item_id = {item} AND ts >= {start_ms} AND ts < {start_ms + 600_000}""")
    assert recomputed[0] == score
