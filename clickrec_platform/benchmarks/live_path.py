"""`clickrec bench speed`: the speed layer and the Spark live query side by side, in one run.

Each part runs on a topic, Postgres schema and consumer group of its own (``scratch_settings``),
against the running local stack:
- latency: the live path runs continuously while live background traffic flows (generated events,
  each stamped when it is sent); probe events (fresh visitors, stamped now) are produced one at a
  time and timed from the broker's acknowledgement until each one's row is visible in Postgres
  ``user_recent_items``. Meanwhile the CPU time of the live path's processes (from /proc: the
  consumer; the Spark driver and its JVM) and of the Postgres server is counted, per 1,000 events
  it carried. The Spark job runs with only its live query busy (ingest and gold triggers an hour
  apart, so after their first batch they wait);
- throughput: N generated events stamped within the live span are produced first, then one
  speed-layer consumer is started and timed until the offsets it stored account for all of them.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from confluent_kafka import Producer
from psycopg import sql

from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import Event
from clickrec_platform.events.ids import event_ids
from clickrec_platform.producer.kafka_sink import KafkaEventSink
from clickrec_platform.producer.pacing import FastPacer, RatePacer
from clickrec_platform.producer.run import produce_frames
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.speed.offsets import progress
from clickrec_platform.stack.scratch import ISOLATED_FIELDS, scratch_settings

_TICKS = os.sysconf("SC_CLK_TCK")


def _restamped(frames: Iterator[pd.DataFrame], start_ms: float, step_ms: float, source: str) -> Iterator[pd.DataFrame]:
    """Generated frames re-stamped ``step_ms`` apart from ``start_ms`` (ids recomputed to match)."""
    sent = 0
    for frame in frames:
        frame = frame.copy()
        ordinal = np.arange(sent, sent + len(frame))
        frame["ts"] = (start_ms + ordinal * step_ms).astype(np.int64)
        frame["event_id"] = event_ids(frame, source=source, ordinal=ordinal)
        sent += len(frame)
        yield frame


def _sink(settings: Settings) -> KafkaEventSink:
    return KafkaEventSink(settings, settings.kafka_topic,
                          settings.state_dir / "bench" / f"dead-letter-{settings.kafka_topic}.jsonl")


def produce_live(settings: Settings, events_per_second: float, stop: threading.Event, delivered: list[int],
                 seconds: float = 900.0) -> None:
    """Generated events at ``events_per_second``, each stamped with the time it is due to be sent, until
    ``stop`` (or ``seconds`` of traffic); appends the number delivered to ``delivered``."""
    # The first frame is made before the clock starts, so the pacer never has to catch up with a burst.
    generated = generate_events(GeneratorConfig(events=max(100_000, int(events_per_second * seconds)), seed=17))
    first = next(generated)
    frames = _restamped(itertools.chain([first], generated), time.time() * 1000, 1000.0 / events_per_second,
                        "live-background")
    summary = produce_frames(frames, _sink(settings), RatePacer(events_per_second), progress=False, stop=stop)
    delivered.append(summary.delivered)


def send_probe(producer: Producer, topic: str, visitor_id: int) -> None:
    """One view stamped now for a visitor of its own; returns once the broker acknowledged it."""
    event = Event(event_id=uuid.uuid4().hex, ts=int(time.time() * 1000), visitor_id=visitor_id, event="view",
                  item_id=1, session_id=f"probe-{visitor_id}", source="latency-probe")
    producer.produce(topic, encode(event), kafka_key(visitor_id))
    producer.flush(10)


def wait_until_visible(conn: psycopg.Connection, settings: Settings, visitor_id: int, timeout_s: float,
                       process: subprocess.Popen, log: Path) -> None:
    query = sql.SQL("SELECT 1 FROM {}.user_recent_items WHERE visitor_id = %s").format(
        sql.Identifier(settings.gold_schema))
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the live path's process exited; see {log}")
        try:
            if conn.execute(query, (visitor_id,)).fetchone():
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"probe visitor {visitor_id} not visible after {timeout_s}s; see {log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (a Spark driver's JVM included)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(") ")[2].split()
        except OSError:
            continue
        proc = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(proc)
        times[proc] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, todo = 0.0, [pid]
    while todo:
        proc = todo.pop()
        total += times.get(proc, 0.0)
        todo.extend(children.get(proc, []))
    return total


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named postgres on this machine (the server and its backends)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.partition(" (")[2].startswith("postgres)"):
            fields = text.rpartition(") ")[2].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


@dataclass(frozen=True)
class LatencyRun:
    name: str
    latencies: list[float]
    timeouts: int
    events: int  # background events delivered while probing
    seconds: float
    cpu_s: float  # the live path's processes, while probing
    postgres_cpu_s: float

    def p(self, q: float) -> float:
        ranked = sorted(self.latencies) + [float("inf")] * self.timeouts  # a timeout is slower than all
        return ranked[max(0, int(round(q * len(ranked))) - 1)] if ranked else float("nan")

    def per_thousand(self, cpu_s: float) -> float:
        return cpu_s / max(self.events, 1) * 1000


def _live_path_process(settings: Settings, argv: list[str], log: Path, **environment: str) -> subprocess.Popen:
    env = {**os.environ, **settings.as_environment(*ISOLATED_FIELDS), **environment}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:  # a pipe nobody reads would fill up and stall it
        return subprocess.Popen([sys.executable, "-m", *argv], cwd=PROJECT_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def measure_latency(settings: Settings, name: str, argv: list[str], probes: int, background_rate: float,
                    probe_timeout_s: float = 60.0, warmup_timeout_s: float = 240.0, **environment: str) -> LatencyRun:
    with scratch_settings(settings, "bench") as scratch:
        log = scratch.state_dir / "bench" / f"{scratch.kafka_topic}.log"
        process = _live_path_process(scratch, argv, log, **environment)
        stop = threading.Event()
        delivered: list[int] = []
        background = threading.Thread(target=produce_live, daemon=True,
                                      args=(scratch, background_rate, stop, delivered))
        latencies, timeouts = [], 0
        try:
            producer = Producer({"bootstrap.servers": scratch.kafka_bootstrap_servers, "acks": "all",
                                 "enable.idempotence": True, "linger.ms": 0})
            with psycopg.connect(scratch.postgres_dsn(), autocommit=True) as conn:
                background.start()
                # The first batches start the process, join the group or start Spark: wait until warm.
                send_probe(producer, scratch.kafka_topic, 9_000_000_000_000)
                wait_until_visible(conn, scratch, 9_000_000_000_000, warmup_timeout_s, process, log)
                time.sleep(5)  # past the start-up batches
                started, cpu0, pg0 = time.perf_counter(), cpu_seconds(process.pid), postgres_cpu_seconds()
                counted_from = _delivered_so_far(scratch)
                for i in range(probes):
                    visitor = 9_000_000_000_001 + i
                    send_probe(producer, scratch.kafka_topic, visitor)
                    sent = time.perf_counter()
                    try:
                        wait_until_visible(conn, scratch, visitor, probe_timeout_s, process, log)
                        latencies.append(time.perf_counter() - sent)
                    except TimeoutError:
                        timeouts += 1
                    time.sleep(0.5)
                seconds = time.perf_counter() - started
                cpu_s, pg_s = cpu_seconds(process.pid) - cpu0, postgres_cpu_seconds() - pg0
                events = _delivered_so_far(scratch) - counted_from
        finally:
            stop.set()
            background.join(30)
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    return LatencyRun(name, latencies, timeouts, events, seconds, cpu_s, pg_s)


def _delivered_so_far(settings: Settings) -> int:
    """Records on the topic now (the background traffic and the probes)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "bench-watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(settings.kafka_topic, p), timeout=10)[1]
                   for p in range(settings.kafka_topic_partitions))
    finally:
        consumer.close()


@dataclass(frozen=True)
class ThroughputRun:
    records: int
    seconds: float  # from the consumer's start until every offset was stored
    sustained_records: int  # after the first commit
    sustained_seconds: float  # from the first commit to the last
    cpu_s: float


def measure_throughput(settings: Settings, events: int, span_minutes: float = 20.0) -> ThroughputRun:
    """One consumer over ``events`` generated records stamped within the live span."""
    with scratch_settings(settings, "bench") as scratch:
        start_ms = time.time() * 1000 - span_minutes * 60_000
        frames = _restamped(generate_events(GeneratorConfig(events=events, seed=23)), start_ms,
                            span_minutes * 60_000 / events, "throughput")
        produce_frames(frames, _sink(scratch), FastPacer(), progress=False)
        records = _delivered_so_far(scratch)
        log = scratch.state_dir / "bench" / f"{scratch.kafka_topic}.log"
        started = time.perf_counter()
        process = _live_path_process(scratch, ["clickrec_platform.speed.run", "--metrics-port", "0"], log)
        first: tuple[float, int] | None = None
        try:
            with psycopg.connect(scratch.postgres_dsn(), autocommit=True) as conn:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"the speed layer exited; see {log}")
                    try:
                        stored = sum(p.next_offset for p in progress(conn, scratch.speed_consumer_group,
                                                                       scratch.kafka_topic, scratch.gold_schema))
                    except psycopg.errors.UndefinedTable:
                        stored = 0
                    if stored and first is None:
                        first = (time.perf_counter(), stored)
                    if stored >= records:
                        break
                    time.sleep(0.02)
            done, cpu_s = time.perf_counter(), cpu_seconds(process.pid)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    assert first is not None, "no records were delivered to the topic"
    return ThroughputRun(records, done - started, records - first[1], done - first[0], cpu_s)


def run_speed_benchmark(settings: Settings, probes: int, background_rate: float, throughput_events: int,
                        spark_trigger_s: float, spark: bool = True, lingers_ms: tuple[float, ...] = ()) -> list[str]:
    lines = [] if probes else ["latency: skipped (--probes 0)"]
    if probes:
        lines += _latency_lines(settings, probes, background_rate, spark_trigger_s, spark, lingers_ms)
    if throughput_events:
        run = measure_throughput(settings, throughput_events)
        lines.append(f"throughput, one consumer: {run.records:,} records stamped within the live span: sustained "
                     f"{run.sustained_records / run.sustained_seconds:,.0f} records/s (from its first commit to its "
                     f"last), {run.records / run.seconds:,.0f} records/s counting its start ({run.seconds:.1f}s "
                     f"from the process's start until every offset was stored; its CPU {run.cpu_s:.1f}s)")
    return lines


def _latency_lines(settings: Settings, probes: int, background_rate: float, spark_trigger_s: float, spark: bool,
                   lingers_ms: tuple[float, ...]) -> list[str]:
    lingers = lingers_ms or (settings.speed_linger_ms,)
    runs = [measure_latency(settings, f"speed layer (linger {linger:g} ms)",
                            ["clickrec_platform.speed.run", "--metrics-port", "0", "--linger-ms", str(linger)],
                            probes, background_rate) for linger in lingers]
    if spark:
        runs.append(measure_latency(
            settings, f"Spark live query (--trigger {spark_trigger_s:g})",
            ["spark_jobs.clickstream_stream", "--live-query", "--trigger", str(spark_trigger_s),
             "--ingest-trigger", "3600", "--gold-trigger", "3600"], probes, background_rate,
            CLICKREC_STREAM_METRICS_PORT="0"))
    lines = [f"latency: {probes} probes, each timed from Kafka's acknowledgement until visible in "
             f"gold.user_recent_items, with live background traffic at {background_rate:,.0f} events/s; CPU while "
             "probing, per 1,000 events carried",
             f"{'live path':<34} {'p50':>7} {'p95':>7} {'max':>7} {'timeouts':>8} {'events/s':>9} "
             f"{'CPU s/1k ev':>11} {'+Postgres':>10}"]
    for run in runs:
        fmt = (lambda x: f"{x * 1000:.0f}ms" if x < 10 else f"{x:.1f}s") if run.latencies else (lambda _x: "-")
        lines.append(f"{run.name:<34} {fmt(statistics.median(run.latencies)) if run.latencies else '-':>7} "
                     f"{fmt(run.p(0.95)) if run.p(0.95) != float('inf') else '> 60s':>7} "
                     f"{fmt(max(run.latencies)) if run.latencies else '-':>7} {run.timeouts:>8} "
                     f"{run.events / run.seconds:>9,.0f} {run.per_thousand(run.cpu_s):>11.3f} "
                     f"{run.per_thousand(run.postgres_cpu_s):>10.3f}")
    if spark:
        spark_run = runs[-1]
        for run in runs[:-1]:
            ratio = spark_run.per_thousand(spark_run.cpu_s) / max(run.per_thousand(run.cpu_s), 1e-9)
            lines.append(f"CPU per 1,000 live events: the Spark live query's processes use {ratio:.1f}× the "
                         f"{run.name}'s")
    lines.append("(+Postgres: every postgres process on the machine while probing, whatever else used the server)")
    return lines
