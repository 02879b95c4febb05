"""`clickrec bench stream-catchup`: the real job against the local stack, on a topic, lake folder, app id
and Postgres schema of its own, which it removes afterwards. N generated events are produced first,
then one available-now run ingests them; figures are events/s per query (ingest: Kafka → silver and
bronze; gold: silver → gold). The live path's latency is `clickrec bench speed`'s (``live_path.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from clickrec_platform.producer.run import produce_generated
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig
from clickrec_platform.stack.scratch import scratch_settings


def _produce_generated(settings: Settings, events: int, pacer=None, stop: threading.Event | None = None,
                       seed: int = 17, start=None) -> int:
    config = GeneratorConfig(events=events, seed=seed, **({"start_date": start} if start else {}))
    return produce_generated(settings, config, pacer, progress=False, stop=stop).delivered


@dataclass
class CatchupFigures:
    """One available-now catch-up run: what it ingested, on which engines, and how long each part took."""

    topology: str
    spark_master: str
    executor_cores: int  # the cores the run's executors held (local[*]: the machine's; a cluster: cores.max)
    produced: int
    ingest_s: float
    gold_s: float
    total_s: float
    jit_s: float
    batches: list[tuple[int, float]]
    floors: dict[str, float] | None = None
    load_average: float | None = None  # the machine's 1-minute load average when the run ended
    driver_jvm_cpu_s: float | None = None  # CPU the Spark driver's JVM used (with local[*], the executors' work too)

    @property
    def ingest_per_s(self) -> float:
        return self.produced / self.ingest_s


def measure_catchup(settings: Settings, events: int, floors: bool = True) -> CatchupFigures:
    from spark_jobs.clickstream_stream import StreamOptions, run

    with scratch_settings(settings, "bench") as scratch:
        produced = _produce_generated(scratch, events)
        options = StreamOptions(available_now=True, max_offsets_per_trigger=scratch.stream_max_offsets_per_trigger,
                                max_files_per_trigger=scratch.stream_max_files_per_trigger)
        started = time.perf_counter()
        seconds = run(scratch, options)
        total_s = time.perf_counter() - started
        return CatchupFigures(
            topology=settings.topology, spark_master=settings.spark_master, executor_cores=_executor_cores(settings),
            produced=produced, ingest_s=seconds["ingest"], gold_s=seconds["gold"], total_s=total_s,
            jit_s=_jit_compile_seconds(scratch), batches=_ingest_batches(scratch),
            floors=_stage_floors(scratch, produced) if floors else None, load_average=os.getloadavg()[0],
            driver_jvm_cpu_s=_jvm_cpu_seconds(scratch))


def run_catchup_benchmark(settings: Settings, events: int, floors: bool = True) -> list[str]:
    figures = measure_catchup(settings, events, floors)
    produced, to_silver = figures.produced, figures.ingest_s
    lines = [
        f"events produced: {produced:,}; settings: {settings.spark_master}, shuffle partitions "
        f"{settings.spark_shuffle_partitions}, maxOffsetsPerTrigger {settings.stream_max_offsets_per_trigger}, "
        f"maxFilesPerTrigger {settings.stream_max_files_per_trigger}",
        f"Kafka → silver (ingest query: parse, validate, dedup → silver, quarantine, bronze as received): "
        f"{produced / to_silver:>9,.0f} events/s ({to_silver:.1f}s)",
        "  per batch: " + "; ".join(f"{rows:,} in {secs:.1f}s ({rows / secs:,.0f}/s)" for rows, secs in figures.batches)
        + " (the first one also warms the JVM up: its JIT compiler shares the cores with the work)",
        f"silver → gold (gold query: windows, trending, totals in Delta; windows, totals, latest items per "
        f"visitor and recent events in Postgres): "
        f"{produced / figures.gold_s:>9,.0f} events/s ({figures.gold_s:.1f}s)",
        f"whole run incl. Spark start and table setup: {figures.total_s:.1f}s; by its end the JVM's JIT compilers "
        f"had used {figures.jit_s:.1f}s of CPU (since Spark started, beside the work on the same cores)",
    ]
    if figures.floors:
        bound = produced / sum(figures.floors.values())
        lines += ["floors: each stage every event goes through, alone on the same events with a warm JVM "
                  "(best of 2):",
                  *(f"  {name}: {produced / secs:>9,.0f} events/s ({secs:.1f}s)"
                    for name, secs in figures.floors.items()),
                  f"  one after the other (what the ingest query must do at least): at most {bound:,.0f} events/s"]
    return lines


def run_topology_comparison(events: int, topologies: tuple[Literal["local", "cluster"], ...] = ("local", "cluster"),
                            ) -> Iterator[str]:
    """The same number of generated events caught up on each topology, one after the other, each in a process
    of its own (Spark allows one master per process), then their figures side by side."""
    from clickrec_platform.stack import services

    runs: list[CatchupFigures] = []
    cpu: list[dict[str, float]] = []
    for topology in topologies:
        engines = {service.name: service.process() for service in services(Settings(topology=topology))
                   if service.name.startswith(("kafka", "s3proxy", "spark", "postgres"))}
        before = {name: _cpu_seconds(process.pid()) for name, process in engines.items()}
        children_before = _children_cpu_seconds()
        with tempfile.TemporaryDirectory(prefix="clickrec-bench-catchup-") as folder:
            out = Path(folder) / "figures.json"
            env = {**os.environ, "CLICKREC_TOPOLOGY": topology}
            child = subprocess.run([sys.executable, "-m", "clickrec_platform.benchmarks.stream", "--events",
                                    str(events), "--json", str(out)], env=env, capture_output=True, text=True)
            if child.returncode != 0:
                raise RuntimeError(f"the {topology} run failed ({child.returncode}):\n{child.stderr[-3000:]}")
            raw = json.loads(out.read_text())
            runs.append(CatchupFigures(**{**raw, "batches": [tuple(b) for b in raw["batches"]]}))
        used = {"Python (producer, job driver)": _children_cpu_seconds() - children_before,
                "Spark driver JVM" + (" (executors in it)" if topology == "local" else ""):
                    runs[-1].driver_jvm_cpu_s or 0.0}
        for name, process in engines.items():
            if (start := before[name]) is not None and (after := _cpu_seconds(process.pid())) is not None:
                used[name] = after - start
        cpu.append(used)
        yield f"{topology}: done in {runs[-1].total_s:.1f}s"
    yield from compare_lines(runs)
    yield "CPU seconds used during each run (the machine's cores are shared by all of them):"
    for run, used in zip(runs, cpu, strict=True):
        yield f"  {run.topology}: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items()
                                                if seconds >= 0.5) + f"; total {sum(used.values()):.1f}"


def compare_lines(runs: list[CatchupFigures]) -> list[str]:
    width = max(24, *(len(r.spark_master) + 2 for r in runs))
    header = f"{'':<44}" + "".join(f"{r.topology:>{width}}" for r in runs)

    def row(label: str, cell) -> str:
        return f"{label:<44}" + "".join(f"{cell(r):>{width}}" for r in runs)

    lines = [
        f"{runs[0].produced:,} generated events, one available-now run each:",
        header,
        row("Spark master", lambda r: r.spark_master),
        row("executor cores (slots)", lambda r: f"{r.executor_cores}"),
        row("Kafka → silver + bronze, events/s", lambda r: f"{r.ingest_per_s:,.0f}"),
        row("  per executor core, events/s", lambda r: f"{r.ingest_per_s / r.executor_cores:,.0f}"),
        row("  ingest seconds", lambda r: f"{r.ingest_s:.1f}"),
        row("  batches", lambda r: f"{len(r.batches)}"),
        row("silver → gold, events/s", lambda r: f"{r.produced / r.gold_s:,.0f}"),
        row("whole run incl. Spark start, seconds", lambda r: f"{r.total_s:.1f}"),
        row("load average (1 min) at the end", lambda r: "" if r.load_average is None else f"{r.load_average:.1f}"),
    ]
    if len(runs) == 2:
        local, other = runs
        lines.append(f"{other.topology} ingest takes {other.ingest_s / local.ingest_s:.2f}× the {local.topology} "
                     f"time on this machine")
    return lines


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU time of a process and of its children it has waited for (a Spark worker's finished executors)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _executor_cores(settings: Settings) -> int:
    from clickrec_platform.lake.spark import spark_session

    context = spark_session(settings).sparkContext
    assert context.master is not None  # a running context has its master
    if context.master.startswith("local"):
        return context.defaultParallelism
    return int(context.getConf().get("spark.cores.max", str(context.defaultParallelism)))


def _jit_compile_seconds(settings: Settings) -> float:
    """CPU seconds the Spark driver's JVM has spent in its JIT compilers since it started."""
    from clickrec_platform.lake.spark import spark_session

    jvm = spark_session(settings).sparkContext._jvm
    assert jvm is not None  # a running context has its JVM
    return jvm.java.lang.management.ManagementFactory.getCompilationMXBean().getTotalCompilationTime() / 1000


def _jvm_cpu_seconds(settings: Settings) -> float:
    """CPU seconds the Spark driver's JVM has used since it started (all its threads)."""
    from clickrec_platform.lake.spark import spark_session

    jvm = spark_session(settings).sparkContext._jvm
    assert jvm is not None  # a running context has its JVM
    pid = jvm.java.lang.ProcessHandle.current().pid()
    return _cpu_seconds(pid) or 0.0


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


def main() -> None:
    """One topology's figures as JSON (the child of `run_topology_comparison`; the topology is the environment's)."""
    from clickrec_platform.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    args.json.write_text(json.dumps(asdict(measure_catchup(get_settings(), args.events, floors=False))))


if __name__ == "__main__":
    main()
