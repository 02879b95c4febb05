"""The speed layer (`clickrec speed`) against the real Kafka broker and PostgreSQL: latency, reconciliation
with an independent read of the topic, kill -9 mid-batch, a rebalance between consumers of one group,
and bad records of every reason.

Over 400 lines: one module per component under test, as the rest of the suite; each test is one fault."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from psycopg import sql

from clickrec_platform.events.codec import InvalidEvent, decode, encode, kafka_key
from clickrec_platform.events.contract import Event
from clickrec_platform.speed.offsets import (
    Fenced,
    PartitionAdvance,
    advance_offsets,
    ensure_offset_tables,
    progress,
    rejects,
)
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform_tests.support import (
    consume,
    free_port,
    metric_samples,
    produce,
    speed_process,
    wait_for,
)
from clickrec_platform_tests.webhook import webhook_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def speed_settings(stack):
    """The stack's settings with a topic, Postgres schema and consumer group of the test's own."""
    with scratch_settings(stack, "speed") as settings:
        yield settings


def fresh_events(n: int, seed: int, span_s: float = 600.0, visitors: int = 500, items: int = 300) -> list[Event]:
    """Valid events stamped within the last ``span_s`` seconds (all inside the live span), of every type."""
    now_ms = int(time.time() * 1000)
    events = []
    for i in range(n):
        kind = ("view", "view", "view", "addtocart", "like", "transaction", "search")[(i * 7 + seed) % 7]
        events.append(Event(
            event_id=f"{seed}-{i}", ts=now_ms - int((i * 7919 + seed) % int(span_s * 1000)),
            visitor_id=(i * 31 + seed) % visitors, event=kind,
            item_id=None if kind == "search" else (i * 17 + seed) % items,
            transaction_id=i if kind == "transaction" else None, session_id=f"s{i % 97}",
            query="shoes" if kind == "search" else None, source="test"))
    return events


def bad_records_of_every_reason() -> list[bytes]:
    """One record for each reason code the contract's decoder gives (checked here, so that a new rule
    without a record in this list fails the test that uses it)."""
    good = orjson.loads(encode(fresh_events(1, seed=3)[0]))
    view = {**good, "event": "view", "item_id": 5, "transaction_id": None, "query": None}
    records = [
        b"\xff\xfe\x00garbage", b"", b"[1,2]", orjson.dumps({**view, "schema_version": 2}),
        orjson.dumps({k: v for k, v in view.items() if k != "source"}), orjson.dumps({**view, "visitor_id": None}),
        orjson.dumps({**view, "visitor_id": "seventeen"}), orjson.dumps(view).replace(b'"item_id":5', b'"item_id":9223372036854775808'),
        orjson.dumps({**view, "source": ""}), orjson.dumps({**view, "event": "teleport"}),
        orjson.dumps({**view, "visitor_id": -1}), orjson.dumps({**view, "ts": 12}),
        orjson.dumps({**view, "item_id": None}), orjson.dumps({**view, "event": "transaction"}),
        orjson.dumps({**view, "transaction_id": 7}), orjson.dumps({**view, "event": "search", "item_id": None}),
        orjson.dumps({**view, "query": "shoes"}),
    ]
    reasons = {(reason(r) or "").split(":")[0] for r in records}
    assert reasons == {"malformed_json", "not_object", "unsupported_schema_version", "missing_field", "null_field",
                       "bad_type", "out_of_range", "empty_field", "unknown_event", "negative_id",
                       "ts_out_of_range", "item_required", "transaction_required", "unexpected_transaction_id",
                       "query_required", "unexpected_query"}, reasons
    return records


def reason(value: bytes) -> str | None:
    try:
        decode(value)
    except InvalidEvent as invalid:
        return invalid.reason
    return None


def expected_state(values: list[bytes]) -> dict:
    """What the live tables must hold after ``values`` (every record of the topic, read independently)."""
    valid: dict[str, Event] = {}
    bad: Counter[str] = Counter()
    recent: dict[tuple[int, int], tuple[int, str]] = {}
    for value in values:
        try:
            event = decode(value)
        except InvalidEvent as invalid:
            bad[invalid.reason] += 1
            continue
        valid.setdefault(event.event_id, event)
    for event in valid.values():  # the latest (time, event) per visitor and item
        if event.item_id is not None:
            key = (event.visitor_id, event.item_id)
            recent[key] = max(recent.get(key, (0, "")), (event.ts, event.event))
    windows: defaultdict[tuple[datetime, str], list[Any]] = defaultdict(lambda: [0, set(), set()])
    for event in valid.values():
        start = event.ts // 300_000 * 300_000
        window = windows[(datetime.fromtimestamp(start / 1000, UTC), event.event)]
        window[0] += 1
        window[1].add(event.visitor_id)
        if event.item_id is not None:
            window[2].add(event.item_id)
    return {
        "live": sorted(valid),
        "recent": sorted((v, i, e, datetime.fromtimestamp(ts / 1000, UTC)) for (v, i), (ts, e) in recent.items()),
        "windows": sorted((start, event, n, len(users), len(items)) for (start, event), (n, users, items)
                          in windows.items()),
        "rejects": dict(bad),
        "records": len(values),
    }


def live_state(settings) -> dict:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        def rows(query: str) -> list[tuple]:
            return conn.execute(sql.SQL(query).format(schema=sql.Identifier(settings.gold_schema))).fetchall()

        positions = progress(conn, settings.speed_consumer_group, settings.kafka_topic, schema=settings.gold_schema)
        return {
            "live": sorted(r[0] for r in rows("SELECT event_id FROM {schema}.live_clickstream_events")),
            "recent": sorted(rows("SELECT visitor_id, item_id, last_event, last_seen_at FROM {schema}.user_recent_items")),
            "windows": sorted(rows("SELECT window_start, event, event_count, unique_users, unique_items "
                                   "FROM {schema}.windowed_stats")),
            "rejects": rejects(conn, settings.speed_consumer_group, settings.kafka_topic, schema=settings.gold_schema),
            "records": sum(p.next_offset for p in positions),
            "counted": sum(p.valid + p.rejected for p in positions),
        }


def stored_records(settings) -> int:
    """Records the stored offsets account for (0 before the consumer made its tables)."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        try:
            positions = progress(conn, settings.speed_consumer_group, settings.kafka_topic,
                                 schema=settings.gold_schema)
        except psycopg.errors.UndefinedTable:
            return 0
    return sum(p.next_offset for p in positions)


def consumed_all(settings, records: int):
    """The live state once the stored offsets account for every record of the topic (else None)."""
    return live_state(settings) if stored_records(settings) == records else None


def topic_values(settings, records: int) -> list[bytes]:
    return [m.value() or b"" for m in consume(settings.kafka_bootstrap_servers, settings.kafka_topic, records)]


def assert_matches_topic(settings, records: int) -> dict:
    """Every live table equals what an independent read of the whole topic says it must hold."""
    expected = expected_state(topic_values(settings, records))
    state = wait_for("every record's offset stored", lambda: consumed_all(settings, records))
    assert state["counted"] == records  # each record counted once, valid or rejected
    assert state["live"] == expected["live"]
    assert state["recent"] == expected["recent"]
    assert state["rejects"] == expected["rejects"]
    # The windows are refreshed at most every second, after the rows: wait for them to settle.
    wait_for("the live windows to match the topic", lambda: live_state(settings)["windows"] == expected["windows"],
             timeout_s=30)
    return expected


def alive(process, log_path):
    def check() -> None:
        assert process.poll() is None, f"speed layer exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
    return check


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except Exception:  # noqa: BLE001 - then it is killed
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_fresh_events_reach_postgres_in_well_under_a_second_and_reconcile_with_the_topic(speed_settings, tmp_path):
    s, log_path = speed_settings, tmp_path / "speed.log"
    events = fresh_events(3_000, seed=1)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events]
    records += records[::40]  # duplicates, sent again later
    records += [(b"bad", value) for value in bad_records_of_every_reason()]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    consumer = speed_process(s, log_path)
    try:
        expected = assert_matches_topic(s, len(records))
        assert len(expected["live"]) == 3_000 and sum(expected["rejects"].values()) == 17

        # On an idle stack: one click, produced as the live producer does, until its row is there.
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": s.kafka_bootstrap_servers, "acks": "all", "linger.ms": 0,
                             "enable.idempotence": True})
        latencies = []
        with psycopg.connect(s.postgres_dsn(), autocommit=True) as conn:
            for visitor in range(900_000, 900_007):
                event = Event(event_id=uuid.uuid4().hex, ts=int(time.time() * 1000), visitor_id=visitor, event="view",
                              item_id=7, session_id="probe", source="test")
                producer.produce(s.kafka_topic, encode(event), kafka_key(visitor))
                producer.flush(10)
                sent = time.perf_counter()
                wait_for(f"visitor {visitor} in user_recent_items", lambda v=visitor: conn.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE visitor_id = %s").format(
                        sql.Identifier(s.gold_schema, "user_recent_items")), (v,)).fetchone(),
                         timeout_s=60, interval_s=0.005, alive=alive(consumer, log_path))
                latencies.append(time.perf_counter() - sent)
        print(f"\nacknowledged by Kafka → visible in Postgres: {', '.join(f'{x * 1000:.0f}' for x in latencies)} ms")
        assert statistics.median(latencies) < 1.0, latencies
        assert_matches_topic(s, len(records) + len(latencies))
    finally:
        stop(consumer)


def test_kill_9_mid_batch_then_restart_loses_and_duplicates_nothing(speed_settings, tmp_path):
    s, log_path = speed_settings, tmp_path / "speed.log"
    events = fresh_events(120_000, seed=2, visitors=20_000, items=5_000)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events]
    records += records[::100] + [(b"bad", value) for value in bad_records_of_every_reason()]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)

    consumer = speed_process(s, log_path, "--max-batch", "3000")
    try:
        def partly_done():
            done = stored_records(s)
            return done if 0 < done < len(records) // 2 else None

        wait_for("the first batches to commit", partly_done, interval_s=0.05, alive=alive(consumer, log_path))
        os.killpg(consumer.pid, signal.SIGKILL)  # mid-batch: one is always under way while records remain
        consumer.wait(30)
    finally:
        stop(consumer)
    at_kill = stored_records(s)
    assert 0 < at_kill < len(records), at_kill

    restarted = speed_process(s, log_path, "--max-batch", "3000")
    try:
        assert_matches_topic(s, len(records))
        assert "assigned" in log_path.read_text()
    finally:
        stop(restarted)


def test_a_rebalance_between_consumers_of_one_group_loses_and_duplicates_nothing(speed_settings, tmp_path):
    s = speed_settings
    events = fresh_events(60_000, seed=4, visitors=5_000, items=2_000)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events] + [
        (b"bad", value) for value in bad_records_of_every_reason()]
    chunks = [records[i:i + 2_000] for i in range(0, len(records), 2_000)]

    def produce_slowly() -> None:  # traffic keeps flowing through every change of the group
        for chunk in chunks:
            produce(s.kafka_bootstrap_servers, s.kafka_topic, chunk)
            time.sleep(0.3)

    logs = [tmp_path / f"speed-{n}.log" for n in range(3)]
    consumers = [speed_process(s, logs[0], "--max-batch", "2000"), speed_process(s, logs[1], "--max-batch", "2000")]
    producer = threading.Thread(target=produce_slowly)
    try:
        producer.start()
        def all_alive() -> None:
            for consumer, path in zip(consumers, logs, strict=False):
                alive(consumer, path)()

        wait_for("both consumers to be assigned partitions",
                 lambda: all("assigned" in path.read_text() for path in logs[:2]), timeout_s=120, alive=all_alive)
        wait_for("a first share of the records", lambda: stored_records(s) > len(records) // 4, timeout_s=120,
                 alive=all_alive)
        consumers.append(speed_process(s, logs[2], "--max-batch", "2000"))  # a third joins: partitions move
        wait_for("the third consumer's assignment", lambda: "assigned" in logs[2].read_text(), timeout_s=120,
                 alive=all_alive)
        stop(consumers[0])  # and the first leaves: they move again
        producer.join(120)
        assert not producer.is_alive()
        assert_matches_topic(s, len(records))
    finally:
        producer.join(5)
        for consumer in consumers:
            stop(consumer)
    # Every consumer really took part: each was given partitions at some point.
    assert all("assigned" in path.read_text() for path in logs)


def test_a_consumer_that_lost_its_partition_cannot_commit_it(speed_settings):
    """The offsets' compare-and-set: of two consumers that both believe they own a partition, the one
    that commits second finds the offset moved and rolls back its whole batch."""
    s = speed_settings
    group, topic, schema = s.speed_consumer_group, s.kafka_topic, s.gold_schema
    with psycopg.connect(s.postgres_dsn(), autocommit=True) as conn:
        ensure_offset_tables(conn, schema=schema)
        with conn.transaction():
            advance_offsets(conn, group, topic, [PartitionAdvance(0, None, 10, 9, 1)], schema=schema)
        with conn.transaction():  # the new owner, from offset 10
            advance_offsets(conn, group, topic, [PartitionAdvance(0, 10, 25, 15, 0)], schema=schema)
        with pytest.raises(Fenced), conn.transaction():  # the zombie, still at 10
            advance_offsets(conn, group, topic, [PartitionAdvance(1, None, 5, 5, 0),
                                                 PartitionAdvance(0, 10, 20, 10, 0)], schema=schema)
        with pytest.raises(Fenced), conn.transaction():  # a row that exists though none was expected
            advance_offsets(conn, group, topic, [PartitionAdvance(0, None, 30, 5, 0)], schema=schema)
        rows = progress(conn, group, topic, schema=schema)
    # The zombie's partition 1 went with its rolled-back transaction.
    assert [(p.partition, p.next_offset, p.valid, p.rejected) for p in rows] == [(0, 25, 24, 1)]


def test_windows_of_events_before_the_live_span_are_left_to_the_gold_query(speed_settings, tmp_path):
    """Old events (a replay of history) update each visitor's recent items, but neither the live events
    nor the live windows, which are the stream job's to compute from silver."""
    s, log_path = speed_settings, tmp_path / "speed.log"
    old = [Event(event_id=f"old-{i}", ts=int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000) + i,
                 visitor_id=i % 5, event="view", item_id=i, session_id="s", source="test") for i in range(50)]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, [(kafka_key(e.visitor_id), encode(e)) for e in old])
    consumer = speed_process(s, log_path)
    try:
        state = wait_for("the old events' offsets stored", lambda: consumed_all(s, len(old)),
                         alive=alive(consumer, log_path))
    finally:
        stop(consumer)
    assert state["live"] == [] and state["windows"] == []
    assert len(state["recent"]) == 50


def test_a_dropped_postgres_connection_costs_nothing_but_a_retry(speed_settings, tmp_path):
    """The server ends the consumer's connection mid-stream (as a restart or a failover would): the
    batch in flight rolls back, the consumer reconnects, seeks back to the stored offsets and goes on."""
    s, log_path = speed_settings, tmp_path / "speed.log"
    events = fresh_events(60_000, seed=6, visitors=5_000, items=2_000)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    consumer = speed_process(s, log_path, "--max-batch", "2000")
    application = f"clickrec-speed-{s.speed_consumer_group}"
    try:
        terminated = 0
        with psycopg.connect(s.postgres_dsn(), autocommit=True) as conn:
            for _ in range(3):
                done = stored_records(s)
                wait_for("the consumer's next commits", lambda done=done: stored_records(s) > done,
                         alive=alive(consumer, log_path))
                killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = %s", (application,)).fetchone()
                assert killed is not None
                terminated += killed[0]
        assert terminated >= 3
        assert_matches_topic(s, len(records))
        log = log_path.read_text()
        # Each termination was seen (a batch failed, or the idle connection on its next use) and ridden out;
        # libpq words it as the server's "terminating connection" or, mid-read, "server closed the connection".
        assert log.count("WARNING Postgres: ") >= 3 and consumer.poll() is None, log[-3000:]
    finally:
        stop(consumer)


def test_metrics_count_what_it_did_and_a_failure_it_cannot_ride_out_alerts_and_exits_1(speed_settings, tmp_path):
    """Its /metrics reconcile with the records; a live table broken under it (no outage, a real error)
    stops it with exit 1 and a webhook alert naming the cause."""
    s, log_path, port = speed_settings, tmp_path / "speed.log", free_port()
    events = fresh_events(500, seed=8)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events] + [
        (b"bad", value) for value in bad_records_of_every_reason()]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    url = f"http://127.0.0.1:{port}/metrics"

    def value(name: str, **labels: str) -> float:
        return metric_samples(url).get((name, tuple(sorted(labels.items()))), 0.0)

    with webhook_receiver() as (hook_url, received):
        consumer = speed_process(s, log_path, metrics_port=port, CLICKREC_ALERT_WEBHOOK_URL=hook_url)
        try:
            def counted() -> float:
                try:
                    return (value("clickrec_speed_records_total", outcome="valid")
                            + value("clickrec_speed_records_total", outcome="rejected"))
                except httpx.HTTPError:  # the endpoint comes up with the process
                    return 0.0

            wait_for("every record counted on /metrics", lambda: counted() == len(records),
                     alive=alive(consumer, log_path))
            assert value("clickrec_speed_records_total", outcome="valid") == len(events)
            by_reason = {dict(labels)["reason"]: v for (name, labels), v in metric_samples(url).items()
                         if name == "clickrec_speed_rejected_total"}
            assert by_reason == expected_state(topic_values(s, len(records)))["rejects"]
            assert value("clickrec_speed_live_events_inserted_total") == len(events)
            assert value("clickrec_speed_last_commit_timestamp_seconds") > time.time() - 300

            with psycopg.connect(s.postgres_dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER TABLE {} RENAME TO broken_recent_items").format(
                    sql.Identifier(s.gold_schema, "user_recent_items")))
            produce(s.kafka_bootstrap_servers, s.kafka_topic, [(kafka_key(1), encode(fresh_events(1, seed=9)[0]))])
            assert consumer.wait(timeout=120) == 1, log_path.read_text()[-3000:]
        finally:
            stop(consumer)
    assert len(received) == 1, received
    text = received[0]["text"]
    assert "speed layer failed" in text and "user_recent_items" in text and s.speed_consumer_group in text
