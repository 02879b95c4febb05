"""Fault drills: PostgreSQL killed with ``kill -9`` (its postmaster) in the middle of a write, then started again.

Never the stack's server (MLflow, Dagster and other sessions live in it): each drill runs a cluster of its own
(``scratch_postgres``), points what it tests at it, kills it mid-write and restarts it, so the server goes
through its crash recovery from the WAL. Checked:

- a **publish** (the Dagster publish asset, run in-process): readers see the old version or the new one,
  whole, never a part; the asset's retry policy runs the step again once the server is back, and the new
  version goes live exactly once;
- the **speed layer** mid-batch: it rides out the outage by itself and the live tables end up equal to what
  an independent read of the topic says (nothing lost, nothing twice), though commits do not wait for the WAL
  flush (a crash may lose the latest batches whole, offsets with them);
- the **stream job's Postgres writes** (``write_with_retry``, which its gold and live micro-batches use): a
  write the crash interrupted is run again once the server is back, and its bookkeeping keeps the totals
  counted once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.serving.live_ddl import ensure_live_tables
from clickrec_platform.serving.live_tables import add_event_statistics_once
from clickrec_platform.serving.retry import write_with_retry
from clickrec_platform.serving.roles import reader_dsn
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform_tests.integration.test_speed_layer import (
    alive,
    assert_matches_topic,
    fresh_events,
    stop,
    stored_records,
)
from clickrec_platform_tests.scratch_postgres import ScratchPostgres, scratch_postgres
from clickrec_platform_tests.support import produce, speed_process, wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
def drill_postgres(settings: Settings) -> Iterator[ScratchPostgres]:
    with scratch_postgres(settings) as postgres:
        yield postgres


def recovered_from_a_crash(postgres: ScratchPostgres) -> bool:
    """The server's own log says it ran its crash recovery (it was not shut down, it was killed)."""
    return "automatic recovery in progress" in postgres.service.process().log_file.read_text()


def backend_running(postgres: ScratchPostgres, query_like: str, application: str | None = None):
    """A backend inside a statement matching ``query_like`` or a transaction (of that application), or None."""
    with postgres.connect() as conn:
        return conn.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid() "
                            "AND state IN ('active', 'idle in transaction') "
                            "AND (%s::text IS NULL OR application_name = %s)",
                            (query_like, application, application)).fetchone()


# A publish ------------------------------------------------------------------------------------------------

def recommendations(visitors: int, run: str, per_visitor: int = 10) -> pa.Table:
    n = visitors * per_visitor
    return pa.table({"visitor_id": np.repeat(np.arange(visitors, dtype=np.int64), per_visitor),
                     "item_id": np.arange(n, dtype=np.int64),
                     "rank": np.tile(np.arange(1, per_visitor + 1, dtype=np.int32), visitors),
                     "score": np.linspace(1, 0, n), "model_name": pa.array(["als"] * n),
                     "model_version": pa.array([run] * n), "run_id": pa.array([run] * n),
                     "generated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC"))})


def published_summary(conn: psycopg.Connection) -> tuple[int, int, str | None]:
    """(rows, distinct runs, a run) of the whole published set, in one statement."""
    row = conn.execute("SELECT count(*), count(DISTINCT run_id), min(run_id) FROM gold.user_recommendations"
                       ).fetchone()
    assert row is not None
    return row


def test_kill_9_of_postgres_mid_publish_readers_see_one_whole_version_and_the_retry_publishes_it_once(
        drill_postgres, tmp_path, monkeypatch):
    from deltalake import write_deltalake

    from clickrec_platform.defs.publish.assets import PUBLISH_ASSETS, PUBLISH_RETRY_POLICY
    from clickrec_platform.defs.resources import platform_resources
    from clickrec_platform.lake.tables import table_path
    from clickrec_platform.serving.gold_tables import USER_RECOMMENDATIONS, prepare_gold_schema
    from clickrec_platform.serving.publish import PUBLISH_LOG, publish

    pg = drill_postgres
    for name, value in {**pg.environment, "CLICKREC_LAKE_ROOT": str(tmp_path / "lake"),
                        "CLICKREC_GOLD_SCHEMA": "gold"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    old_rows, new_rows = 200_000, 1_500_000  # the new set takes seconds to COPY: time to crash mid-load
    with pg.connect() as conn:
        prepare_gold_schema(conn, settings)
        publish(conn, USER_RECOMMENDATIONS, recommendations(old_rows // 10, "run-old"), schema="gold",
                reader_role=settings.reader_role)
    write_deltalake(table_path(settings, "gold", "user_recommendations"),
                    recommendations(new_rows // 10, "run-new"))

    seen: list[tuple[int, int, str | None]] = []
    outages: list[str] = []
    stop_reading = threading.Event()

    def read() -> None:  # a SQL consumer, reconnecting whenever the server is away
        while not stop_reading.is_set():
            try:
                with psycopg.connect(reader_dsn(settings), autocommit=True, connect_timeout=2) as reader:
                    while not stop_reading.is_set():
                        seen.append(published_summary(reader))
            except psycopg.OperationalError as error:
                outages.append(str(error).strip().splitlines()[0])
                stop_reading.wait(0.2)

    asset = next(a for a in PUBLISH_ASSETS if a.key.path[-1] == "user_recommendations")
    assert asset.op.retry_policy == PUBLISH_RETRY_POLICY
    results: list[dg.ExecuteInProcessResult] = []
    reader = threading.Thread(target=read)
    publisher = threading.Thread(target=lambda: results.append(
        dg.materialize([asset], resources=platform_resources(get_settings()), raise_on_error=False)))
    reader.start()
    try:
        wait_for("readers to see the old version", lambda: seen, timeout_s=60)
        publisher.start()
        wait_for("the publish to be copying rows into its new version",
                 lambda: backend_running(pg, "COPY %user_recommendations__v%"), timeout_s=120, interval_s=0.05)
        killed_at = time.monotonic()
        pg.kill_postmaster()
        restart_s = pg.start()
        publisher.join(timeout=300)
        assert not publisher.is_alive(), "the publish did not finish within 5 minutes of the restart"
        wait_for("readers to see the new version", lambda: seen[-1][2] == "run-new", timeout_s=60)
    finally:
        stop_reading.set()
        reader.join(timeout=30)
    (result,) = results
    recovered_s = time.monotonic() - killed_at
    assert recovered_from_a_crash(pg)

    # Readers: the old set or the new one, each whole; never a part, never back to the old one.
    allowed = {(old_rows, 1, "run-old"), (new_rows, 1, "run-new")}
    assert set(seen) <= allowed, set(seen) - allowed
    runs = [run for _, _, run in seen]
    assert runs == sorted(runs, key=lambda run: run == "run-new")
    assert outages, "the readers never noticed the crash"

    # Dagster: the step failed with the crash, was retried by the policy, and published once.
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) >= 1, "the crash did not fail the first attempt"
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["rows_match_source"], checks
    with pg.connect() as conn:
        log = conn.execute(sql.SQL("SELECT version, row_count, provenance->'run_id', is_live FROM {} "
                                   "WHERE table_name = 'user_recommendations' ORDER BY version").format(
            sql.Identifier("gold", PUBLISH_LOG))).fetchall()
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'gold' "
            "AND relkind = 'r' AND relname LIKE 'user_recommendations__v%' ORDER BY relname").fetchall()]
    # v1 the empty placeholder, v2 the old set; the crashed attempt's v3 rolled back and the retry made it.
    assert log[1:] == [(2, old_rows, ["run-old"], False), (3, new_rows, ["run-new"], True)], log
    assert tables == ["user_recommendations__v2", "user_recommendations__v3"], tables
    print(f"\npublish drill: killed mid-COPY of {new_rows:,} rows; server back in {restart_s:.1f}s (crash "
          f"recovery); {len(retries)} retry(ies); the new version live {recovered_s:.1f}s after the kill; "
          f"{len(seen):,} reads, each of one whole version; {len(outages)} failed connection attempts")


# The speed layer -----------------------------------------------------------------------------------------

def test_kill_9_of_postgres_mid_batch_the_speed_layer_rides_it_out_and_loses_and_repeats_nothing(
        drill_postgres, kafka_topic, stack, tmp_path):
    pg = drill_postgres
    s = pg.settings.model_copy(update={"kafka_bootstrap_servers": stack.kafka_bootstrap_servers,
                                       "kafka_topic": kafka_topic, "gold_schema": "gold",
                                       "speed_consumer_group": f"drill-{kafka_topic}", "lake_root": str(tmp_path)})
    log_path = tmp_path / "speed.log"
    events = fresh_events(60_000, seed=19, visitors=5_000, items=2_000)
    records = [(kafka_key(e.visitor_id), encode(e)) for e in events]
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    consumer = speed_process(s, log_path, "--max-batch", "2000", **pg.environment)
    application = f"clickrec-speed-{s.speed_consumer_group}"
    try:
        wait_for("the first batches to commit", lambda: stored_records(s) > 0, timeout_s=120,
                 alive=alive(consumer, log_path))
        wait_for("a batch in flight", lambda: backend_running(pg, "%", application), interval_s=0.01,
                 alive=alive(consumer, log_path))
        stored_at_kill = stored_records(s)
        pg.kill_postmaster()
        # Down long enough for the consumer to meet the outage: its batch failed, a reconnect was refused.
        wait_for("the consumer to notice the outage", lambda: "connect: connection failed" in log_path.read_text(),
                 timeout_s=60, alive=alive(consumer, log_path))
        down_s = pg.start()
        assert_matches_topic(s, len(records))
        assert consumer.poll() is None, "the speed layer exited"
    finally:
        stop(consumer)
    assert recovered_from_a_crash(pg)
    log = log_path.read_text()
    assert "WARNING Postgres: " in log, log[-3000:]  # the batch in flight failed, and was applied again
    print(f"\nspeed layer drill: killed mid-batch with {stored_at_kill:,} of {len(records):,} records stored; "
          f"server back in {down_s:.1f}s; then every record applied once")


# The stream job's Postgres writes ------------------------------------------------------------------------

def test_kill_9_of_postgres_mid_write_the_stream_jobs_write_runs_again_and_counts_once(drill_postgres):
    pg, settings = drill_postgres, drill_postgres.settings
    with pg.connect() as conn:
        ensure_live_tables(conn, "gold")
    increments = pa.table({"event": ["view", "addtocart"], "event_count": pa.array([90, 10], pa.int64()),
                           "first_event_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
                           "last_event_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC"))})
    attempts: list[bool] = []

    def gold_batch_write(conn: psycopg.Connection) -> None:
        """What a gold micro-batch does in Postgres (here: its totals, booked once per batch id), then more
        work, during which the server is killed."""
        attempts.append(add_event_statistics_once(conn, "drill:gold:event_statistics", 7, increments, "gold"))
        conn.execute("SELECT pg_sleep(%s)", (30 if len(attempts) == 1 else 0,))

    outcome: list[object] = []

    def write() -> None:
        try:
            outcome.append(write_with_retry(settings, gold_batch_write, what="drill batch 7", outage_s=120))
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    wait_for("the write to be under way", lambda: backend_running(pg, "SELECT pg_sleep%"), timeout_s=60,
             interval_s=0.05)
    pg.kill_postmaster()
    pg.start()
    writer.join(timeout=180)
    assert not writer.is_alive() and outcome == [None]
    assert recovered_from_a_crash(pg)
    # The first attempt booked the batch before the crash (committed, durable); the second found it booked.
    assert attempts == [True, False]
    with pg.connect() as conn:
        totals = dict(conn.execute("SELECT event, event_count FROM gold.event_statistics").fetchall())
    assert totals == {"view": 90, "addtocart": 10}
