"""The streaming job against real Kafka, Spark, Delta and Postgres."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from psycopg import sql

from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import Event
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    GOLD_EVENT_STATISTICS,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
)
from clickrec_platform.settings import PROJECT_ROOT
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform_tests.support import (
    assert_gold_windows_match_silver,
    assert_reconciled,
    delta_rows,
    free_port,
    message_mix,
    metric_samples,
    pg_rows,
    produce,
    stream_process,
)
from clickrec_platform_tests.webhook import webhook_receiver
from spark_jobs.clickstream_stream import StreamOptions, run

pytestmark = pytest.mark.integration


@pytest.fixture
def stream_settings(stack):
    """The stack's settings with a topic, lake, app id and Postgres schema of the test's own."""
    with scratch_settings(stack, "test") as settings:
        yield settings


def test_available_now_run_reconciles_and_quarantines_with_reasons(stream_settings, spark, monkeypatch):
    records, valid_ids, bad_reasons = message_mix(3_000, seed=21)
    produce(stream_settings.kafka_bootstrap_servers, stream_settings.kafka_topic, records)

    run(stream_settings, StreamOptions(available_now=True, max_offsets_per_trigger=1_000, max_files_per_trigger=3),
        spark=spark)

    s = stream_settings
    assert_reconciled(s, records, valid_ids, bad_reasons)
    (batches,) = delta_rows(OPS_STREAM_BATCHES.path(s), "SELECT count(*) FROM t")[0]
    assert batches >= 3  # max_offsets_per_trigger split the catch-up

    # The example notebook runs top to bottom over this lake, and its reconciliation adds up.
    namespace = run_notebook(PROJECT_ROOT / "notebooks" / "explore_lake.ipynb", s, monkeypatch)
    assert {"silver.events", "silver.quarantine", "ops.stream_batches"} <= {
        f"{schema}.{name}" for schema, name in namespace["con"].sql(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}


def run_notebook(path, settings, monkeypatch) -> dict:
    """Execute every code cell in order (as Jupyter would) with the settings pointing at ``settings``."""
    import ast
    import json

    import clickrec_platform.settings as settings_module

    monkeypatch.setattr(settings_module, "get_settings", lambda: settings)
    namespace: dict = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        body = ast.parse("".join(cell["source"]))
        last = body.body[-1] if body.body else None
        if isinstance(last, ast.Expr):
            body.body.pop()
        exec(compile(body, path.name, "exec"), namespace)  # noqa: S102
        if isinstance(last, ast.Expr):  # what Jupyter would display: run it for real
            shown = eval(compile(ast.Expression(last.value), path.name, "eval"), namespace)  # noqa: S307
            rows = shown.fetchall() if hasattr(shown, "fetchall") else shown
            assert len(rows) > 0, f"empty result in {path.name}: {ast.unparse(last)}"
    return namespace


def test_gold_windows_equal_an_independent_duckdb_computation(stream_settings, spark):
    records, _ids, _reasons = message_mix(2_000, seed=4)
    produce(stream_settings.kafka_bootstrap_servers, stream_settings.kafka_topic, records)
    run(stream_settings, StreamOptions(available_now=True, max_offsets_per_trigger=700), spark=spark)

    assert_gold_windows_match_silver(stream_settings)


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(stream_settings, tmp_path):
    records, valid_ids, _reasons = message_mix(60_000, seed=9)
    produce(stream_settings.kafka_bootstrap_servers, stream_settings.kafka_topic, records)
    s = stream_settings

    log_path = tmp_path / "stream.log"
    job = stream_process(s, log_path, "--trigger", "0.5", "--ingest-trigger", "0.5", "--max-offsets-per-trigger",
                          "5000")
    deadline = time.monotonic() + 240
    batches = 0
    while time.monotonic() < deadline and job.poll() is None:
        time.sleep(1)
        try:
            batches = delta_rows(OPS_STREAM_BATCHES.path(s), "SELECT count(*) FROM t")[0][0]
        except Exception:  # noqa: BLE001 - the table may not exist yet
            continue
        if batches >= 2:
            break
    assert job.poll() is None, log_path.read_text()[-3000:]
    assert batches >= 2
    os.killpg(job.pid, signal.SIGKILL)  # the Python driver and its JVM, mid-batch
    job.wait(30)
    silver_at_kill = delta_rows(SILVER_EVENTS.path(s), "SELECT count(*) FROM t")[0][0]
    assert silver_at_kill < len(valid_ids)  # it really was stopped midway

    restart = stream_process(s, log_path, "--available-now")
    assert restart.wait(timeout=600) == 0, log_path.read_text()[-3000:]

    (count, distinct), = delta_rows(SILVER_EVENTS.path(s), "SELECT count(*), count(DISTINCT event_id) FROM t")
    assert count == distinct == len(valid_ids)
    assert delta_rows(BRONZE_CLICKSTREAM.path(s), "SELECT count(*), count(DISTINCT (partition, \"offset\")) FROM t"
                      ) == [(len(records), len(records))]
    assert pg_rows(s, "SELECT sum(event_count) FROM {schema}.event_statistics") == [(len(valid_ids),)]
    assert pg_rows(s, "SELECT sum(event_count) FROM {schema}.windowed_stats") == [(len(valid_ids),)]
    assert delta_rows(GOLD_EVENT_STATISTICS.path(s), "SELECT sum(event_count) FROM t") == [(len(valid_ids),)]


def test_replaying_a_batch_changes_nothing(stream_settings, spark):
    from spark_jobs.clickstream_stream import prepare
    from spark_jobs.gold import GoldBatch
    from spark_jobs.ingest import IngestBatch
    from spark_jobs.live import LiveBatch

    records, valid_ids, _reasons = message_mix(1_000, seed=13)
    # And events of the last minutes, which the live path keeps (the mix is from 2015).
    now_ms = int(time.time() * 1000)
    fresh = [Event(event_id=f"fresh-{i}", ts=now_ms - i * 9_000, visitor_id=1 + i % 7,
                   event=("view", "addtocart")[i % 2], item_id=100 + i % 11, session_id="s", source="test")
             for i in range(60)]
    records += [(kafka_key(e.visitor_id), encode(e)) for e in fresh]
    valid_ids += [e.event_id for e in fresh]
    s = stream_settings
    prepare(spark, s)
    batch = spark.createDataFrame(
        [(k, v, s.kafka_topic, 0, i) for i, (k, v) in enumerate(records)],
        "key binary, value binary, topic string, partition int, offset bigint",
    ).selectExpr("*", "current_timestamp() AS kafka_timestamp", "0 AS kafka_timestamp_type")  # bronze_columns'
    ingest = IngestBatch(s)

    def snapshot():
        return {
            "silver": delta_rows(SILVER_EVENTS.path(s), "SELECT count(*), count(DISTINCT event_id) FROM t"),
            "bronze": delta_rows(BRONZE_CLICKSTREAM.path(s), "SELECT count(*) FROM t"),
            "quarantine": delta_rows(SILVER_QUARANTINE.path(s), "SELECT count(*) FROM t"),
            "windows": sorted(pg_rows(s, "SELECT window_start, event, event_count, unique_users, unique_items "
                                         "FROM {schema}.windowed_stats")),
            "trending": sorted(pg_rows(s, "SELECT window_start, item_id, score, rank FROM {schema}.trending_items")),
            "totals": sorted(pg_rows(s, "SELECT event, event_count, first_event_at, last_event_at "
                                        "FROM {schema}.event_statistics")),
            "recent": sorted(pg_rows(s, "SELECT visitor_id, item_id, last_event, last_seen_at "
                                        "FROM {schema}.user_recent_items")),
            "live": sorted(pg_rows(s, "SELECT event_id FROM {schema}.live_clickstream_events")),
            "delta_totals": sorted(delta_rows(GOLD_EVENT_STATISTICS.path(s), "SELECT event, event_count FROM t")),
        }

    gold, live = GoldBatch(s, catch_up=True), LiveBatch(s)
    recent_windows = ("SELECT window_start, event, event_count, unique_users, unique_items FROM {schema}.windowed_stats "
                      "WHERE window_start >= now() - interval '1 hour'")

    def process_batch_7() -> list[tuple]:
        live(batch.select("value"), 7)
        from_live_path = sorted(pg_rows(s, recent_windows))
        ingest(batch, 7)
        silver_rows = spark.read.format("delta").load(SILVER_EVENTS.path(s)).where("ingest_batch = 7")
        gold(silver_rows, 7)
        return from_live_path

    from_live_path = process_batch_7()
    first = snapshot()
    assert first["silver"] == [(len(valid_ids), len(valid_ids))]
    assert first["bronze"] == [(len(records),)]
    assert first["totals"] and first["windows"] and first["recent"]
    assert first["live"] == sorted((e.event_id,) for e in fresh)
    # The live path's windows (from Postgres) are what gold then computes from silver.
    assert len(from_live_path) >= 2 and sorted(pg_rows(s, recent_windows)) == from_live_path
    process_batch_7()  # Spark replays a batch whose commit it did not record
    assert snapshot() == first


def test_metrics_after_traffic_and_an_alert_when_the_job_fails(stream_settings, tmp_path):
    """The job's /metrics reconcile with what was produced; a query that fails stops the job with a
    non-zero exit and a webhook alert naming the cause."""
    records, valid_ids, bad_reasons = message_mix(4_000, seed=5)
    produce(stream_settings.kafka_bootstrap_servers, stream_settings.kafka_topic, records)
    s, port, log_path = stream_settings, free_port(), tmp_path / "stream.log"
    url = f"http://127.0.0.1:{port}/metrics"

    def value(name: str, **labels: str) -> float:
        return metric_samples(url).get((name, tuple(sorted(labels.items()))), 0.0)

    with webhook_receiver() as (hook_url, received):
        job = stream_process(s, log_path, "--trigger", "1", "--ingest-trigger", "1", "--gold-trigger", "5",
                              "--max-offsets-per-trigger", "1500", metrics_port=port, CLICKREC_ALERT_WEBHOOK_URL=hook_url)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and job.poll() is None:
                time.sleep(1)
                try:
                    if value("clickrec_stream_rows_total", layer="bronze") >= len(records):
                        break
                except Exception:  # noqa: BLE001 - the endpoint starts with the job
                    continue
            assert job.poll() is None, log_path.read_text()[-3000:]
            quarantined = sum(bad_reasons.values())
            assert value("clickrec_stream_rows_total", layer="bronze") == len(records)
            assert value("clickrec_stream_rows_total", layer="silver") == len(valid_ids)
            assert value("clickrec_stream_rows_total", layer="quarantine") == quarantined
            assert value("clickrec_stream_rows_total", layer="duplicate") == len(records) - len(valid_ids) - quarantined
            samples = metric_samples(url)
            by_reason = {dict(labels)["reason"]: v for (name, labels), v in samples.items()
                         if name == "clickrec_stream_quarantined_total"}
            assert sum(by_reason.values()) == quarantined and "malformed_json" in by_reason
            # Batch timings and input rows come with the query's progress event, which follows the
            # batch that counted the rows above.
            settle = time.monotonic() + 30
            while value("clickrec_stream_input_rows_total", query="ingest") < len(records) and time.monotonic() < settle:
                time.sleep(0.5)
            assert value("clickrec_stream_input_rows_total", query="ingest") == len(records)
            assert value("clickrec_stream_batch_duration_seconds_count", query="ingest") >= 3  # 1,500 per batch
            assert value("clickrec_stream_query_up", query="ingest") == 1

            def lag() -> dict[str, float]:
                return {dict(labels)["partition"]: v for (name, labels), v in metric_samples(url).items()
                        if name == "clickrec_stream_kafka_lag_records" and dict(labels)["query"] == "ingest"}

            settle = time.monotonic() + 30
            while (now := lag()) and any(now.values()) and time.monotonic() < settle:
                time.sleep(0.5)
            assert len(now) == s.kafka_topic_partitions and all(v == 0 for v in now.values()), now

            # Break a Postgres table under the running job: the next gold batch fails, and so does the job.
            with psycopg.connect(s.postgres_dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER TABLE {} RENAME TO broken_event_statistics").format(
                    sql.Identifier(s.gold_schema, "event_statistics")))
            more, _valid, _bad = message_mix(200, seed=6)
            produce(s.kafka_bootstrap_servers, s.kafka_topic, more)
            assert job.wait(timeout=180) == 1, log_path.read_text()[-3000:]
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    assert len(received) == 1, received
    text = received[0]["text"]
    assert "stream job failed" in text and "event_statistics" in text and s.kafka_topic in text
