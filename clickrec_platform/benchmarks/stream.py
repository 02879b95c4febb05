"""`clickrec bench stream-catchup`: the real job against the local stack, on a topic, lake folder, app id
and Postgres schema of its own, which it removes afterwards. N generated events are produced first,
then one available-now run ingests them; figures are events/s per query (ingest: Kafka → silver and
bronze; gold: silver → gold). The live path's latency is `clickrec bench speed`'s (``live_path.py``).
"""

from __future__ import annotations

import threading
import time

from clickrec_platform.producer.run import produce_generated
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig
from clickrec_platform.stack.scratch import scratch_settings


def _produce_generated(settings: Settings, events: int, pacer=None, stop: threading.Event | None = None,
                       seed: int = 17, start=None) -> int:
    config = GeneratorConfig(events=events, seed=seed, **({"start_date": start} if start else {}))
    return produce_generated(settings, config, pacer, progress=False, stop=stop).delivered


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
