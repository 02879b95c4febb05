"""`clickrec bench soak`: live traffic for N minutes against the continuous stream job and the speed layer,
sampled once a minute, to see what grows.

Everything runs in a namespace of its own on the running stack (``scratch_settings``: topic, lake, stream app
id, Postgres schema, consumer group), started as the stack starts them (the services' own command lines and
priorities: the stream job at the batch niceness), plus a steady traffic process (generated events stamped
when sent, at ``--rate`` events/s). Every minute:

- memory of each process tree: ours (traffic, speed layer, stream job with its JVM) and the stack's services
  (anonymous resident memory, ``RssAnon``: what a leak grows; shared buffers and mapped files left out);
- Kafka consumer lag: records on the topic beyond the speed layer's stored offsets (in Postgres), and beyond
  the stream job's last committed ingest batch (its checkpoint);
- produce → Postgres latency: a probe event every few seconds, timed from Kafka's acknowledgement until its
  row is in ``user_recent_items`` (as ``clickrec bench speed`` does); the minute's p95;
- active files (the current version's) of the bronze, silver, gold and ops tables.

What the Dagster schedule ``optimize_lake_every_30_minutes`` does is done here every ``--optimize-every``
minutes, on the same condition (a table with ``optimize_min_small_files`` small files): `clickrec optimize`,
at the batch niceness. At the end each series' trend (least-squares slope per hour, after the warm-up) and level
are held to the bounds in ``Bounds``; a run fails when one is exceeded.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from confluent_kafka import Consumer, TopicPartition

from clickrec_platform.benchmarks.traffic import Probes, live_traffic, stream_committed_offsets
from clickrec_platform.lake.maintenance import active_files, small_files
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    GOLD_EVENT_STATISTICS,
    GOLD_TRENDING_ITEMS,
    GOLD_WINDOWED_STATS,
    OPS_STREAM_BATCHES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
)
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.speed.offsets import progress
from clickrec_platform.stack import services
from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.scratch import scratch_settings

FILE_TABLES = (BRONZE_CLICKSTREAM, SILVER_EVENTS, SILVER_QUARANTINE, OPS_STREAM_BATCHES, GOLD_WINDOWED_STATS,
               GOLD_TRENDING_ITEMS, GOLD_EVENT_STATISTICS)


# Memory is judged for what the soak loads: its own processes and the servers of the live path. The stack's
# other services (MLflow, Dagster, the API, the dashboard, Prometheus) are shown, not judged: on a shared
# machine other sessions' runs and requests move them.
JUDGED_MEMORY = ("traffic", "speed layer", "stream job", "postgres", "kafka")
# A JVM grows its heap towards -Xmx before it collects in earnest, so its slope over half an hour says nothing
# about a leak: the stream job (Spark driver, -Xmx CLICKREC_SPARK_DRIVER_MEMORY) is held to that size plus the
# JVM's own overhead instead. (Kafka's heap is fixed: -Xms = -Xmx.)
JVM_OVERHEAD_MB = 1536.0


def jvm_memory_mb(size: str) -> float:
    """A JVM memory size (``4g``, ``512m``, ``1024k``) in MB."""
    units = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 ** 2}
    size = size.strip().lower()
    return float(size[:-1]) * units[size[-1]] if size[-1] in units else float(size) / 2 ** 20


@dataclass(frozen=True)
class Bounds:
    """What a soak may show and still pass. Levels are held on every sample after the warm-up; trends (slopes)
    on at least ``min_trend_samples`` samples after it."""

    memory_mb_per_hour: float = 100.0  # each judged process tree's anonymous memory slope, and …
    memory_share_per_hour: float = 0.25  # … or this share of its mean per hour, whichever is larger
    lag_traffic_seconds_per_hour: float = 60.0  # a lag may grow by at most a minute of traffic per hour
    speed_lag_traffic_seconds: float = 5.0  # the speed layer's lag at most 5 s of traffic, every minute
    stream_lag_extra_seconds: float = 60.0  # the stream job's at most (ingest trigger + this) of traffic
    p95_ms: float = 1000.0  # every minute's produce → Postgres p95
    p95_ms_per_hour: float = 500.0
    # Files: every minute at most what the stream job adds between two compactions (files per ingest batch:
    # one per Kafka partition and event date, two dates at most), and what the compactions leave behind (the
    # samples after each) growing by at most this many files per hour.
    files_after_compaction_per_hour: float = 30.0
    min_trend_samples: int = 5


@dataclass
class Sample:
    minute: int
    elapsed_s: float
    events: int  # records on the topic so far
    events_per_s: float  # in the last minute
    memory_mb: dict[str, float]
    lag: dict[str, int | None]
    p95_ms: float | None
    probes: int
    timeouts: int
    files: dict[str, int | None]
    optimized: str = ""


@dataclass
class Trend:
    series: str
    slope_per_hour: float
    unit: str
    bound: str
    ok: bool | None  # None: not judged (too few samples)
    level: str = ""


@dataclass
class SoakReport:
    samples: list[Sample] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    warmup_minutes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Trend]:
        return [t for t in self.trends if t.ok is False]


def slope_per_hour(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against time, per hour (0 for fewer than two points)."""
    if len(values) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(minutes, float), np.asarray(values, float), 1)[0] * 60.0)


# Measurements ------------------------------------------------------------------------------------------------

def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(") ")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        proc = todo.pop()
        found.append(proc)
        todo.extend(children.get(proc, []))
    return found


def tree_memory_mb(pid: int | None, reads: int = 3, interval_s: float = 0.2) -> float | None:
    """Anonymous resident memory (``RssAnon``: heaps, a JVM's included) of a process and its descendants, in MB;
    None when it does not run. Shared memory (Postgres's shared buffers, which fill up to their configured size)
    and mapped files are left out: what a leak grows is the anonymous part. The least of a few reads: a child
    caught between fork and exec (a JVM spawning a helper) reports its parent's memory as its own."""
    if pid is None:
        return None
    totals = []
    for read in range(reads):
        if read:
            time.sleep(interval_s)
        total_kb = 0
        for proc in _tree(pid):
            try:
                for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        total_kb += int(line.split()[1])
                        break
            except (OSError, ValueError):
                continue
        totals.append(total_kb / 1024)
    return min(totals)


def topic_end(consumer: Consumer, topic: str, partitions: int) -> dict[int, int]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}


# The run ------------------------------------------------------------------------------------------------------

def run_soak(settings: Settings, minutes: int, rate: float, optimize_every: int = 10,
             bounds: Bounds = Bounds(), warmup_minutes: int | None = None,
             on_sample: Callable[[Sample], None] = lambda _s: None,
             say: Callable[[str], None] = lambda _line: None) -> SoakReport:
    report = SoakReport(warmup_minutes=min(5, minutes // 3) if warmup_minutes is None else warmup_minutes)
    with scratch_settings(settings, "soak") as scratch, tempfile.TemporaryDirectory(prefix="clickrec-soak-") as run, \
            live_traffic(scratch, rate, minutes + 15, Path(run), say) as traffic:
        run_dir = Path(run)
        stack = {s.name: s for s in services(settings) if s.managed}
        probes = Probes(traffic.settings)
        consumer = Consumer({"bootstrap.servers": scratch.kafka_bootstrap_servers, "group.id": f"soak-{uuid.uuid4()}"})
        optimizing: tuple[subprocess.Popen, float] | None = None
        try:
            probes.start()
            clock = time.monotonic()
            last = (0.0, sum(topic_end(consumer, scratch.kafka_topic, scratch.kafka_topic_partitions).values()))
            last_check = 0
            for minute in range(1, minutes + 1):
                traffic.check_running()
                time.sleep(max(0.0, clock + minute * 60.0 - time.monotonic()))
                sample = _sample(minute, time.monotonic() - clock, scratch, consumer, probes, traffic.processes,
                                 stack, last)
                last = (sample.elapsed_s, sample.events)
                notes = []
                if optimizing is not None and optimizing[0].poll() is not None:
                    if optimizing[0].returncode != 0:
                        raise RuntimeError(f"clickrec optimize failed; see {run_dir / 'optimize.log'}")
                    notes.append(f"compaction done in {time.monotonic() - optimizing[1]:.0f}s")
                    optimizing = None
                if optimize_every and optimizing is None and minute - last_check >= optimize_every:
                    last_check = minute
                    optimizing = _start_optimize_when_due(scratch, traffic.environment, run_dir, traffic.stream_nice)
                    notes.append("compaction started" if optimizing else "no compaction due")
                sample.optimized = "; ".join(notes)
                report.samples.append(sample)
                on_sample(sample)
            if optimizing is not None:
                optimizing[0].wait(900)
        finally:
            if optimizing is not None and optimizing[0].poll() is None:
                os.killpg(optimizing[0].pid, signal.SIGTERM)
                optimizing[0].wait(60)
            probes.stop.set()
            if probes.is_alive():
                probes.join(timeout=40)
            consumer.close()
    report.trends = judge(report, rate, scratch.stream_ingest_trigger_seconds, bounds, optimize_every,
                          scratch.kafka_topic_partitions, scratch.spark_driver_memory)
    return report


def _start_optimize_when_due(settings: Settings, env: dict[str, str], run_dir: Path, nice: int
                             ) -> tuple[subprocess.Popen, float] | None:
    """What the maintenance schedule does at a tick: start a compaction (`clickrec optimize`, at the batch
    niceness, as the Dagster daemon's run would be) when a table has enough small files; None otherwise."""
    found = small_files(settings)
    if not any(n >= settings.optimize_min_small_files for n in found.values()):
        return None
    argv = (["nice", "-n", str(nice)] if nice else []) + [sys.executable, "-m", "clickrec_platform.cli", "optimize"]
    with (run_dir / "optimize.log").open("ab") as log:
        process = subprocess.Popen(argv, env={**os.environ, **env}, cwd=PROJECT_ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process, time.monotonic()


def _sample(minute: int, elapsed_s: float, settings: Settings, consumer: Consumer, probes: Probes,
            ours: dict[str, ManagedProcess], stack: dict, last: tuple[float, int]) -> Sample:
    ends = topic_end(consumer, settings.kafka_topic, settings.kafka_topic_partitions)
    events = sum(ends.values())
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        stored = {p.partition: p.next_offset for p in progress(conn, settings.speed_consumer_group,
                                                                settings.kafka_topic, settings.gold_schema)}
    committed = stream_committed_offsets(settings)
    lag = {"speed layer": sum(max(0, end - stored.get(p, 0)) for p, end in ends.items()),
           "stream job": None if committed is None else sum(max(0, end - committed.get(p, 0))
                                                            for p, end in ends.items())}
    latencies, timeouts = probes.take()
    ranked = sorted(latencies) + [float("inf")] * timeouts
    p95 = ranked[max(0, int(np.ceil(0.95 * len(ranked))) - 1)] * 1000 if ranked else None
    memory = {name: tree_memory_mb(process.pid()) for name, process in ours.items()}
    memory |= {name: tree_memory_mb(service.process().pid()) for name, service in stack.items()}
    files = {}
    for table in FILE_TABLES:
        found = active_files(settings, table)
        files[table.key] = None if found is None else len(found)
    return Sample(minute, elapsed_s, events, (events - last[1]) / max(elapsed_s - last[0], 1e-9),
                  {k: v for k, v in memory.items() if v is not None}, lag, p95, len(latencies), timeouts, files)


def _memory_of(name: str) -> Callable[[Sample], float | None]:
    return lambda sample: sample.memory_mb.get(name)


def _files_of(key: str) -> Callable[[Sample], float | None]:
    return lambda sample: sample.files.get(key)


def judge(report: SoakReport, rate: float, ingest_trigger_s: float, bounds: Bounds, optimize_every: int = 10,
          partitions: int = 4, driver_memory: str = "4g") -> list[Trend]:
    after = [s for s in report.samples if s.minute > report.warmup_minutes]
    judged = len(after) >= bounds.min_trend_samples
    trends: list[Trend] = []

    def trend(series: str, samples: list[Sample], value: Callable[[Sample], float | None], unit: str,
              slope_bound: float | None, bound_text: str, level_ok: bool = True, level: str = "",
              enough: bool = judged, level_only: bool = False) -> None:
        """A series' slope over ``samples``; ok when its level holds (every minute) and, given ``enough`` samples,
        its slope is within ``slope_bound``; None (not judged) without a bound, or without enough samples for a
        slope whose level is fine."""
        points = [(s.minute, v) for s in samples if (v := value(s)) is not None]
        slope = slope_per_hour([m for m, _ in points], [v for _, v in points])
        if not points:
            ok = None
        elif level_only:
            ok = level_ok
        elif not level_ok:
            ok = False
        elif slope_bound is None:
            ok = None
        else:
            ok = (slope <= slope_bound) if enough else None
        trends.append(Trend(series, slope, unit, bound_text, ok, level))

    for name in sorted({name for s in after for name in s.memory_mb}):
        values = [v for s in after if (v := s.memory_mb.get(name)) is not None]
        mean = statistics.fmean(values) if values else 0.0
        if name == "stream job":
            cap = jvm_memory_mb(driver_memory) + JVM_OVERHEAD_MB
            top = max(values, default=0.0)
            trend(f"memory {name}", after, _memory_of(name), "MB", None,
                  f"every minute ≤ {cap:,.0f} MB (-Xmx {driver_memory} + JVM)", top <= cap, f"max {top:,.0f} MB",
                  level_only=True)
        elif name in JUDGED_MEMORY:
            limit = max(bounds.memory_mb_per_hour, bounds.memory_share_per_hour * mean)
            trend(f"memory {name}", after, _memory_of(name), "MB", limit, f"≤ {limit:,.0f} MB/h",
                  level=f"mean {mean:,.0f} MB")
        else:
            trend(f"memory {name}", after, _memory_of(name), "MB", None,
                  "shown, not judged (shared stack)", level=f"mean {mean:,.0f} MB")
    speed_max = max((s.lag["speed layer"] or 0 for s in after), default=0)
    stream_max = max((s.lag["stream job"] or 0 for s in after), default=0)
    speed_limit = bounds.speed_lag_traffic_seconds * rate
    stream_limit = (ingest_trigger_s + bounds.stream_lag_extra_seconds) * rate
    lag_slope = bounds.lag_traffic_seconds_per_hour * rate
    trend("lag speed layer", after, lambda s: s.lag["speed layer"], "records", lag_slope,
          f"≤ {lag_slope:,.0f}/h; every minute ≤ {speed_limit:,.0f}", speed_max <= speed_limit, f"max {speed_max:,}")
    trend("lag stream job", after, lambda s: s.lag["stream job"], "records", lag_slope,
          f"≤ {lag_slope:,.0f}/h; every minute ≤ {stream_limit:,.0f}", stream_max <= stream_limit,
          f"max {stream_max:,}")
    p95s = [s.p95_ms for s in after]
    worst = max((p for p in p95s if p is not None), default=float("nan"))
    trend("produce→Postgres p95", after, lambda s: s.p95_ms, "ms", bounds.p95_ms_per_hour,
          f"≤ {bounds.p95_ms_per_hour:,.0f} ms/h; every minute ≤ {bounds.p95_ms:,.0f} ms",
          all(p is not None and p <= bounds.p95_ms for p in p95s), f"max {worst:,.0f} ms")
    # What the stream job can add between two compactions (and while one runs: two more minutes).
    batches = ((optimize_every or len(report.samples)) + 2) * 60 / ingest_trigger_s
    files_cap = int(batches * partitions * 2) + 10
    compacted = [s for s in after if "compaction done" in s.optimized]
    for table in FILE_TABLES:
        top = max((v for s in after if (v := s.files.get(table.key)) is not None), default=0)
        trend(f"files {table.key}", compacted, _files_of(table.key), "files",
              bounds.files_after_compaction_per_hour,
              f"every minute ≤ {files_cap:,}; after compactions ≤ {bounds.files_after_compaction_per_hour:g}/h",
              top <= files_cap, f"max {top:,}", enough=len(compacted) >= 2)
    if not judged:
        report.notes.append(f"{len(after)} sample(s) after the {report.warmup_minutes}-minute warm-up: too few "
                            f"(< {bounds.min_trend_samples}) to judge a trend; only the levels were held to bounds")
    if len(compacted) < 2:
        report.notes.append(f"{len(compacted)} compaction(s) finished: the files compactions leave behind need two "
                            "to show a trend; only the files' level was held to its bound")
    return trends


def sample_header(sample: Sample) -> str:
    memory = " ".join(f"{name[:12]:>12}" for name in sample.memory_mb)
    files = " ".join(f"{key.split('.')[-1][:10]:>10}" for key in sample.files)
    return (f"{'min':>3} {'ev/s':>6} {'lag spd':>7} {'lag str':>7} {'p95 ms':>7} {'probes':>6} | MB anon: {memory} | "
            f"files: {files}")


def sample_line(sample: Sample) -> str:
    memory = " ".join(f"{v:>12,.0f}" for v in sample.memory_mb.values())
    files = " ".join(f"{'-' if v is None else v:>10}" for v in sample.files.values())
    lag = {k: "-" if v is None else f"{v:,}" for k, v in sample.lag.items()}
    p95 = "-" if sample.p95_ms is None else ("timeout" if sample.p95_ms == float("inf") else f"{sample.p95_ms:,.0f}")
    return (f"{sample.minute:>3} {sample.events_per_s:>6,.0f} {lag['speed layer']:>7} {lag['stream job']:>7} "
            f"{p95:>7} {sample.probes:>6} | MB anon: {memory} | files: {files}"
            + (f"  ({sample.optimized})" if sample.optimized else ""))


def report_lines(report: SoakReport) -> Iterator[str]:
    yield f"trend per hour (least squares over the minutes after a {report.warmup_minutes}-minute warm-up):"
    yield f"{'series':<34} {'slope/h':>12} {'level':>18}  {'bound':<40} {'':>4}"
    for t in report.trends:
        verdict = {True: "ok", False: "FAIL", None: "-"}[t.ok]
        yield f"{t.series:<34} {t.slope_per_hour:>+10,.1f} {t.unit:<5} {t.level:>14}  {t.bound:<40} {verdict:>4}"
    yield from report.notes

