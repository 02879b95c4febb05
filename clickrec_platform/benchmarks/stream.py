"""`clickrec bench stream-catchup` and `clickrec bench stream-latency`.

Both run the real job against the local stack, on a topic, lake folder, app id and Postgres schema
of their own, which they remove afterwards.
- catch-up: N generated events are produced first, then one available-now run ingests them;
  figures are events/s per query (ingest: Kafka → silver and bronze; gold: silver → gold).
- latency: the job runs continuously while live background traffic flows (generated events, each
  stamped with the time it is sent, so the live windows carry it); probe events (fresh visitors, stamped now)
  are produced one at a time and timed until each one's row is visible in Postgres
  ``user_recent_items`` (the job commits ``windowed_stats`` in the same transaction).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import psycopg
from confluent_kafka import Producer
from psycopg import sql

from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import Event
from clickrec_platform.events.ids import event_ids
from clickrec_platform.producer.kafka_sink import KafkaEventSink
from clickrec_platform.producer.pacing import RatePacer
from clickrec_platform.producer.run import produce_frames, produce_generated
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.stack.scratch import ISOLATED_FIELDS, scratch_settings


def _produce_generated(settings: Settings, events: int, pacer=None, stop: threading.Event | None = None,
                       seed: int = 17, start=None) -> int:
    config = GeneratorConfig(events=events, seed=seed, **({"start_date": start} if start else {}))
    return produce_generated(settings, config, pacer, progress=False, stop=stop).delivered


def _stamped_now(frames, events_per_second: float):
    """Generated frames re-stamped at ``events_per_second`` from now on (ids recomputed to match), so
    that paced at that rate each event is sent at its event time: live traffic."""
    start_ms, sent = time.time() * 1000, 0
    for frame in frames:
        frame = frame.copy()
        ordinal = np.arange(sent, sent + len(frame))
        frame["ts"] = (start_ms + ordinal * 1000.0 / events_per_second).astype(np.int64)
        frame["event_id"] = event_ids(frame, source="latency-background", ordinal=ordinal)
        sent += len(frame)
        yield frame


def _produce_live(settings: Settings, events_per_second: float, stop: threading.Event, delivered: list[int]
                  ) -> None:
    sink = KafkaEventSink(settings, settings.kafka_topic,
                          settings.state_dir / "bench" / f"dead-letter-{settings.stream_app_id}.jsonl")
    frames = _stamped_now(generate_events(GeneratorConfig(events=10_000_000, seed=17)), events_per_second)
    summary = produce_frames(frames, sink, RatePacer(events_per_second), progress=False, stop=stop)
    delivered.append(summary.delivered)


def run_catchup_benchmark(settings: Settings, events: int, floors: bool = True) -> list[str]:
    from spark_jobs.clickstream_stream import StreamOptions, run

    with scratch_settings(settings, "bench") as scratch:
        produced = _produce_generated(scratch, events)
        options = StreamOptions(available_now=True, max_offsets_per_trigger=scratch.stream_max_offsets_per_trigger,
                                max_files_per_trigger=scratch.stream_max_files_per_trigger)
        started = time.perf_counter()
        seconds = run(scratch, options)
        total_s = time.perf_counter() - started
        jit_s = _jit_compile_seconds(scratch)
        batches = _ingest_batches(scratch)
        stage_floors = _stage_floors(scratch, produced) if floors else None
    to_silver = seconds["ingest"]
    lines = [
        f"events produced: {produced:,}; settings: {settings.spark_master}, shuffle partitions "
        f"{settings.spark_shuffle_partitions}, maxOffsetsPerTrigger {options.max_offsets_per_trigger}, "
        f"maxFilesPerTrigger {options.max_files_per_trigger}",
        f"Kafka → silver (ingest query: parse, validate, dedup → silver, quarantine, bronze as received): "
        f"{produced / to_silver:>9,.0f} events/s ({to_silver:.1f}s)",
        "  per batch: " + "; ".join(f"{rows:,} in {secs:.1f}s ({rows / secs:,.0f}/s)" for rows, secs in batches)
        + " (the first one also warms the JVM up: its JIT compiler shares the cores with the work)",
        f"silver → gold (gold query: windows, trending, totals in Delta; windows, totals, latest items per "
        f"visitor and recent events in Postgres): "
        f"{produced / seconds['gold']:>9,.0f} events/s ({seconds['gold']:.1f}s)",
        f"whole run incl. Spark start and table setup: {total_s:.1f}s; by its end the JVM's JIT compilers had "
        f"used {jit_s:.1f}s of CPU (since Spark started, beside the work on the same cores)",
    ]
    if stage_floors:
        bound = produced / sum(stage_floors.values())
        lines += ["floors: each stage every event goes through, alone on the same events with a warm JVM "
                  "(best of 2):",
                  *(f"  {name}: {produced / secs:>9,.0f} events/s ({secs:.1f}s)"
                    for name, secs in stage_floors.items()),
                  f"  one after the other (what the ingest query must do at least): at most {bound:,.0f} events/s"]
    return lines


def _jit_compile_seconds(settings: Settings) -> float:
    """CPU seconds the Spark driver's JVM has spent in its JIT compilers since it started."""
    from clickrec_platform.lake.spark import spark_session

    jvm = spark_session(settings).sparkContext._jvm
    return jvm.java.lang.management.ManagementFactory.getCompilationMXBean().getTotalCompilationTime() / 1000


def _ingest_batches(settings: Settings) -> list[tuple[int, float]]:
    """(records, seconds) of each ingest micro-batch, as the job booked them in ops.stream_batches."""
    from clickrec_platform.lake.spark import spark_session
    from clickrec_platform.lake.tables import OPS_STREAM_BATCHES

    rows = (spark_session(settings).read.format("delta").load(OPS_STREAM_BATCHES.path(settings))
            .orderBy("batch_id").select("bronze_rows", "seconds").collect())
    return [(r.bronze_rows, r.seconds) for r in rows]


def _stage_floors(settings: Settings, events: int) -> dict[str, float]:
    """Seconds of the ingest query's unavoidable stages, each alone, over the same Kafka records:
    read and parse (to Spark's no-op sink), and the two Delta appends from parsed rows held in memory."""
    from pyspark.sql import functions as F

    from clickrec_platform.events.spark_parse import REASON, parse_kafka_values
    from clickrec_platform.lake.silver import silver_rows
    from clickrec_platform.lake.spark import spark_session
    from clickrec_platform.lake.tables import table_path
    from spark_jobs.batch import HeldRows
    from spark_jobs.clickstream_stream import kafka_options
    from spark_jobs.ingest import bronze_columns, with_ingest_time

    spark = spark_session(settings)
    records = bronze_columns(spark.read.format("kafka").options(**kafka_options(settings))
                             .option("startingOffsets", "earliest").option("endingOffsets", "latest").load())

    def best(write) -> float:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            write()
            times.append(time.perf_counter() - started)
        return min(times)

    floors = {"Kafka read + parse + validate":
              best(lambda: parse_kafka_values(records).write.format("noop").mode("overwrite").save())}
    with HeldRows() as held:
        rows = held.hold(parse_kafka_values(records))
        silver = silver_rows(rows.where(F.col(REASON).isNull()), ingest_app="floor", ingest_batch=0,
                             kafka_partition=F.col("partition"), kafka_offset=F.col("offset"))
        floors["silver Delta append (partitioned by event date)"] = best(
            lambda: silver.write.format("delta").mode("append").partitionBy("event_date")
            .save(table_path(settings, "floors", "silver")))
        floors["bronze Delta append"] = best(
            lambda: with_ingest_time(rows.select(*records.columns)).write.format("delta").mode("append")
            .partitionBy("ingest_date").save(table_path(settings, "floors", "bronze")))
    return floors


def run_latency_benchmark(settings: Settings, probes: int, background_rate: float, trigger_s: float,
                          probe_timeout_s: float = 60.0) -> list[str]:
    with scratch_settings(settings, "bench") as scratch:
        env = {**os.environ, **scratch.as_environment(*ISOLATED_FIELDS)}
        job_log = scratch.state_dir / "bench" / f"{scratch.stream_app_id}.log"
        job_log.parent.mkdir(parents=True, exist_ok=True)
        with job_log.open("wb") as log_file:  # a pipe nobody reads would fill up and stall the job
            job = subprocess.Popen([sys.executable, "-m", "spark_jobs.clickstream_stream", "--trigger",
                                    str(trigger_s)], cwd=PROJECT_ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        stop = threading.Event()
        delivered: list[int] = []
        background = threading.Thread(target=_produce_live, daemon=True,
                                      args=(scratch, background_rate, stop, delivered))
        latencies: list[float] = []
        timeouts = 0
        try:
            background.start()
            probing_from = time.perf_counter()
            producer = Producer({"bootstrap.servers": scratch.kafka_bootstrap_servers, "acks": "all",
                                 "enable.idempotence": True, "linger.ms": 0})
            with psycopg.connect(scratch.postgres_dsn(), autocommit=True) as conn:
                # The first batches start Spark and create tables: wait until the job is warm.
                warmup = 9_000_000_000_000
                _send_probe(producer, scratch.kafka_topic, warmup)
                _wait_until_visible(conn, scratch, warmup, timeout_s=180, job=job, log=job_log)
                for i in range(probes):
                    visitor = warmup + 1 + i
                    sent = time.perf_counter()
                    _send_probe(producer, scratch.kafka_topic, visitor)
                    try:
                        _wait_until_visible(conn, scratch, visitor, timeout_s=probe_timeout_s, job=job, log=job_log)
                        latencies.append(time.perf_counter() - sent)
                    except TimeoutError:
                        timeouts += 1
                    time.sleep(0.5)
        finally:
            stop.set()
            background.join(30)
            background_s = time.perf_counter() - probing_from
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(60)
    # A probe that timed out counts as slower than every one that arrived.
    ranked = sorted(latencies) + [float("inf")] * timeouts
    if not latencies:
        return [f"no probe became visible within {probe_timeout_s:.0f}s ({timeouts} timed out)"]
    p95 = ranked[max(0, int(round(0.95 * len(ranked))) - 1)]
    return [
        f"probes: {len(ranked)}; live background traffic: {sum(delivered):,} events in {background_s:.0f}s "
        f"({sum(delivered) / background_s:,.0f} events/s, stamped now; target {background_rate:,.0f}); "
        f"live trigger {trigger_s}s",
        f"produce → visible in Postgres gold.user_recent_items (and windowed_stats, same transaction): "
        f"p50 {statistics.median(ranked):.2f}s, p95 "
        + (f"{p95:.2f}s" if p95 != float("inf") else f"> {probe_timeout_s:.0f}s")
        + f", max seen {max(latencies):.2f}s, timed out {timeouts}",
        f"stream job log: {job_log}",
    ]


def _send_probe(producer: Producer, topic: str, visitor_id: int) -> None:
    now_ms = int(time.time() * 1000)
    event = Event(event_id=uuid.uuid4().hex, ts=now_ms, visitor_id=visitor_id, event="view", item_id=1,
                  session_id=f"probe-{visitor_id}", source="latency-probe")
    producer.produce(topic, encode(event), kafka_key(visitor_id))
    producer.flush(10)


def _wait_until_visible(conn, settings: Settings, visitor_id: int, timeout_s: float, job: subprocess.Popen,
                        log) -> None:
    query = sql.SQL("SELECT 1 FROM {}.user_recent_items WHERE visitor_id = %s").format(
        sql.Identifier(settings.gold_schema))
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if job.poll() is not None:
            raise RuntimeError(f"stream job exited; see {log}")
        try:
            if conn.execute(query, (visitor_id,)).fetchone():
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"probe visitor {visitor_id} not visible after {timeout_s}s; see {log}")
