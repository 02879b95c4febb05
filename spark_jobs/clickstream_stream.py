"""The streaming lakehouse job: Kafka → bronze → silver/quarantine → gold (Delta and Postgres).

Three Structured Streaming queries, each with its own checkpoint under ``<lake>/_checkpoints/``:
- ``bronze``: every Kafka record as received, through Delta's exactly-once streaming sink;
- ``refine``: new bronze rows → silver and quarantine (``RefineBatch``, idempotent on the batch id);
- ``gold``: new silver rows → streaming gold in Delta and the Postgres live tables (``GoldBatch``).

``--available-now`` catches up with what is there and stops (backfills, tests); otherwise the
queries run every ``--trigger`` seconds until SIGTERM/Ctrl-C, which stops them cleanly. Killed
at any moment instead, a restart resumes from the checkpoints and loses or duplicates nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import psycopg
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from clickrec_platform.lake.spark import spark_session
from clickrec_platform.lake.tables import (
    BRONZE_CLICKSTREAM,
    SILVER_EVENTS,
    STREAM_TABLES,
    LakeTable,
    table_path,
)
from clickrec_platform.serving.live_tables import ensure_live_tables
from clickrec_platform.settings import Settings
from spark_jobs.gold import GoldBatch
from spark_jobs.refine import RefineBatch

log = logging.getLogger("clickrec.stream")


@dataclass(frozen=True)
class StreamOptions:
    available_now: bool = False
    trigger_seconds: float = 2.0
    max_offsets_per_trigger: int | None = None
    max_files_per_trigger: int = 64
    starting_offsets: str = "earliest"


def checkpoint(settings: Settings, query: str) -> str:
    return table_path(settings, "_checkpoints", f"{settings.stream_app_id}/{query}")


def _trigger(options: StreamOptions) -> dict:
    if options.available_now:
        return {"availableNow": True}
    return {"processingTime": f"{options.trigger_seconds} seconds"}


def start_bronze(spark: SparkSession, settings: Settings, options: StreamOptions) -> StreamingQuery:
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
              .option("subscribe", settings.kafka_topic)
              .option("startingOffsets", options.starting_offsets)
              .option("failOnDataLoss", "true"))
    if options.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
    records = reader.load().select(
        "key", "value", "topic", "partition", "offset",
        F.col("timestamp").alias("kafka_timestamp"), F.col("timestampType").alias("kafka_timestamp_type"),
        F.current_timestamp().alias("ingested_at"), F.current_date().alias("ingest_date"))
    return (records.writeStream.format("delta").outputMode("append").queryName("bronze")
            .option("checkpointLocation", checkpoint(settings, "bronze"))
            .trigger(**_trigger(options)).start(BRONZE_CLICKSTREAM.path(settings)))


def start_foreach_batch(spark: SparkSession, settings: Settings, options: StreamOptions, name: str,
                        source: LakeTable, function) -> StreamingQuery:
    """A query over the new rows of a Delta table, handed to ``function`` micro-batch by micro-batch."""
    rows = (spark.readStream.format("delta").option("maxFilesPerTrigger", options.max_files_per_trigger)
            .load(source.path(settings)))
    return (rows.writeStream.foreachBatch(function).queryName(name)
            .option("checkpointLocation", checkpoint(settings, name))
            .trigger(**_trigger(options)).start())


def prepare(spark: SparkSession, settings: Settings) -> None:
    """Every table exists before a query starts (a Delta stream needs its source table)."""
    for table in STREAM_TABLES:
        table.ensure(spark, settings)
    with psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
        ensure_live_tables(conn, schema=settings.gold_schema)


def run(settings: Settings, options: StreamOptions, spark: SparkSession | None = None,
        stop: threading.Event | None = None) -> dict[str, float]:
    """Run the job; in available-now mode until caught up (returning seconds per query), else until
    ``stop`` is set."""
    spark = spark or spark_session(settings, app_name="clickrec-stream")
    prepare(spark, settings)
    refine, gold = RefineBatch(settings), GoldBatch(settings)
    starters = {
        "bronze": lambda: start_bronze(spark, settings, options),
        "refine": lambda: start_foreach_batch(spark, settings, options, "refine", BRONZE_CLICKSTREAM, refine),
        "gold": lambda: start_foreach_batch(spark, settings, options, "gold", SILVER_EVENTS, gold),
    }
    seconds: dict[str, float] = {}
    if options.available_now:
        # One catch-up pass per layer, each over all that the layer before it wrote.
        for name, start in starters.items():
            started = time.perf_counter()
            start().awaitTermination()
            seconds[name] = time.perf_counter() - started
        return seconds
    stop = stop or threading.Event()
    queries = [start() for start in starters.values()]
    try:
        while not stop.is_set():
            for query in queries:
                if not query.isActive:
                    raise RuntimeError(f"query {query.name} stopped: {query.exception()}")
            stop.wait(1.0)
    finally:
        for query in queries:
            query.stop()
    return seconds


def main(argv: list[str] | None = None) -> None:
    import argparse

    from clickrec_platform.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="clickrec stream", description=__doc__)
    parser.add_argument("--available-now", action="store_true", help="catch up, then stop")
    parser.add_argument("--trigger", type=float, default=settings.stream_trigger_seconds,
                        help="seconds between micro-batches in continuous mode")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=settings.stream_max_offsets_per_trigger)
    parser.add_argument("--max-files-per-trigger", type=int, default=settings.stream_max_files_per_trigger)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(settings, StreamOptions(available_now=args.available_now, trigger_seconds=args.trigger,
                                max_offsets_per_trigger=args.max_offsets_per_trigger,
                                max_files_per_trigger=args.max_files_per_trigger), stop=stop)


if __name__ == "__main__":
    main()
