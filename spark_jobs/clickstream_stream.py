"""The streaming lakehouse job: Kafka → Postgres live tables; Kafka → silver/quarantine and bronze; silver → gold.

Structured Streaming queries, each with its own checkpoint under ``<lake>/_checkpoints/``:
- ``live`` (continuous mode with ``--live-query`` only, every ``--trigger`` seconds): each micro-batch
  of Kafka records → the Postgres live tables, in one transaction and without a Delta commit
  (``LiveBatch``), produce → visible in seconds. Off by default: the speed layer (``clickrec speed``,
  ``clickrec_platform/speed/``) keeps the live tables within a second at a fraction of the CPU;
  ``clickrec bench speed`` measures both side by side;
- ``ingest`` (every ``--ingest-trigger`` seconds): Kafka records → silver and quarantine, and
  bronze as received (``IngestBatch``, every write idempotent on the batch id); larger batches
  than the live query's, as Delta commits cost about a second each whatever their size;
- ``gold`` (every ``--gold-trigger`` seconds): new silver rows → the Delta gold tables, the running
  totals and the older windows in Postgres (``GoldBatch``): MERGEs cost seconds.

``--available-now`` catches up with what is there and stops (backfills, tests): ingest first, then
gold over all it wrote, posting every live table. Otherwise the queries run until SIGTERM/Ctrl-C,
which stops them cleanly, in separate fair-scheduler pools. Killed at any moment instead, a
restart resumes from the checkpoints and loses or duplicates nothing. A query that fails stops the job with an alert
(``CLICKREC_ALERT_WEBHOOK_URL``) and a non-zero exit, but for a query of the topic that failed because the brokers
did not answer (Spark's Kafka source gives up after 3 tries of ``stream_kafka_timeout_s``): the job waits for them,
however long, and starts it again from its checkpoint, with an alert when it starts waiting and one when it resumes.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from clickrec_platform.lake.migrations import migrate_quarantine_to_bytes
from clickrec_platform.lake.spark import spark_session
from clickrec_platform.lake.tables import SILVER_EVENTS, STREAM_TABLES, table_path
from clickrec_platform.ops.alerts import send_alert
from clickrec_platform.ops.lifecycle import process_stop_event
from clickrec_platform.serving.live_ddl import ensure_live_tables
from clickrec_platform.settings import Settings
from clickrec_platform.stack.kafka import admin_client
from spark_jobs.gold import GoldBatch
from spark_jobs.ingest import IngestBatch, bronze_columns
from spark_jobs.live import LiveBatch
from spark_jobs.metrics import StreamMetrics

log = logging.getLogger("clickrec.stream")

KAFKA_MAX_POLL_RECORDS = 20_000
# The queries that read the topic, and what their failure says when the brokers did not answer in time (offsets
# on the driver, metadata and records on executors): such a query is started again once Kafka answers.
KAFKA_QUERIES = ("ingest", "live")
KAFKA_TIMEOUT = "TimeoutException"
KAFKA_PROBE_SECONDS = 2.0
RESTART_WINDOW_SECONDS = 600.0
FAIR_POOLS = Path(__file__).with_name("fairscheduler.xml")  # the live query's pool goes first


@dataclass(frozen=True)
class StreamOptions:
    available_now: bool = False
    trigger_seconds: float = 2.0  # the live query's
    ingest_trigger_seconds: float = 20.0
    gold_trigger_seconds: float = 60.0
    max_offsets_per_trigger: int | None = None
    max_files_per_trigger: int = 256
    starting_offsets: str = "earliest"
    # The Spark live query (Kafka → Postgres live tables); off by default: the speed layer keeps them.
    live_query: bool = False


def checkpoint(settings: Settings, query: str) -> str:
    return table_path(settings, "_checkpoints", f"{settings.stream_app_id}/{query}")


def _trigger(options: StreamOptions, seconds: float) -> dict:
    if options.available_now:
        return {"availableNow": True}
    return {"processingTime": f"{seconds} seconds"}


def kafka_options(settings: Settings) -> dict[str, str]:
    """The Kafka source's options, for the stream's queries and for batch reads of the topic alike."""
    timeout_ms = round(settings.stream_kafka_timeout_s * 1000)
    return {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": settings.kafka_topic,
        "failOnDataLoss": "true",
        # Spark's consumer asks the broker for the partition's offset range after every poll:
        # polls of 20,000 records (rather than Kafka's 500) make that a rare cost in catch-up.
        "kafka.max.poll.records": str(KAFKA_MAX_POLL_RECORDS),
        "kafka.max.partition.fetch.bytes": str(8 << 20),
        "kafka.fetch.max.bytes": str(32 << 20),
        # How long the brokers may be silent before a try fails (offsets on the driver, records on executors).
        "kafka.default.api.timeout.ms": str(timeout_ms),
        "kafka.request.timeout.ms": str(min(timeout_ms, 30_000)),
        "kafkaConsumer.pollTimeoutMs": str(timeout_ms),
    }


def kafka_records(spark: SparkSession, settings: Settings, options: StreamOptions) -> DataFrame:
    """The topic as a streaming source (each query that reads it has its own offsets)."""
    reader = (spark.readStream.format("kafka").options(**kafka_options(settings))
              .option("startingOffsets", options.starting_offsets))
    if options.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
    return reader.load()


def start_ingest(spark: SparkSession, settings: Settings, options: StreamOptions,
                 batch: IngestBatch) -> StreamingQuery:
    return (bronze_columns(kafka_records(spark, settings, options)).writeStream.foreachBatch(batch)
            .queryName("ingest").option("checkpointLocation", checkpoint(settings, "ingest"))
            .trigger(**_trigger(options, options.ingest_trigger_seconds)).start())


def start_live(spark: SparkSession, settings: Settings, options: StreamOptions, batch: LiveBatch) -> StreamingQuery:
    return (kafka_records(spark, settings, options).select("value").writeStream.foreachBatch(batch)
            .queryName("live").option("checkpointLocation", checkpoint(settings, "live"))
            .trigger(**_trigger(options, options.trigger_seconds)).start())


def start_gold(spark: SparkSession, settings: Settings, options: StreamOptions, batch: GoldBatch) -> StreamingQuery:
    rows = (spark.readStream.format("delta").option("maxFilesPerTrigger", options.max_files_per_trigger)
            .load(SILVER_EVENTS.path(settings)))
    return (rows.writeStream.foreachBatch(batch).queryName("gold")
            .option("checkpointLocation", checkpoint(settings, "gold"))
            .trigger(**_trigger(options, options.gold_trigger_seconds)).start())


def prepare(spark: SparkSession, settings: Settings) -> None:
    """Every table exists, in its current schema, before a query starts (a Delta stream needs its
    source table)."""
    migrate_quarantine_to_bytes(spark, settings)
    for table in STREAM_TABLES:
        table.ensure(spark, settings)
    with psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
        ensure_live_tables(conn, schema=settings.gold_schema)


def failure_cause(error: BaseException, limit: int = 500) -> str:
    """The most telling line of a failure: a failed query's message holds its Python traceback,
    whose last ``SomeError: ...`` line names the cause; otherwise the message's first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # "psycopg.errors.UndefinedTable: ...", "ValueError: ...": a (qualified) class name, then ": ".
    causes = [line for line in lines
              if re.match(r"^(?:(?:[a-z_]\w*\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception)): ", line)]
    # The Python error that failed a batch, rather than the JVM's wrappers around it.
    python = [line for line in causes if not line.startswith(("org.", "java.", "scala.", "py4j."))]
    picked = python or causes
    return (picked[-1] if picked else lines[0] if lines else "")[:limit]


def kafka_answers(settings: Settings) -> bool:
    """Whether the brokers answer and every partition of the topic has a leader."""
    try:
        metadata = admin_client(settings.kafka_bootstrap_servers).list_topics(settings.kafka_topic, timeout=5)
    except KafkaException:
        return False
    topic = metadata.topics.get(settings.kafka_topic)
    return bool(topic and topic.error is None and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values()))


def restart_after_kafka_outage(settings: Settings, query: StreamingQuery, start, stop: threading.Event,
                               restarted_at: dict[str, float]) -> StreamingQuery:
    """A query of the topic that failed because the brokers did not answer, started again from its checkpoint
    as soon as they do (the checkpoint makes the restart lose and duplicate nothing); while ``stop`` is not set,
    it waits for them however long they take, with an alert when it starts waiting and one when it resumes.
    Any other failure raises: of another query, without a timeout while Kafka answers, or again within
    ``RESTART_WINDOW_SECONDS`` of a restart while Kafka answered throughout (then it is not Kafka).
    ``restarted_at`` keeps each query's last restart."""
    error = query.exception()
    answers = kafka_answers(settings)
    timed_out = KAFKA_TIMEOUT in str(error)
    recurring = answers and time.monotonic() - restarted_at.get(query.name, -math.inf) < RESTART_WINDOW_SECONDS
    if error is None or query.name not in KAFKA_QUERIES or (answers and not timed_out) or recurring:
        raise RuntimeError(f"query {query.name} stopped: {error}")
    where = f"{settings.kafka_bootstrap_servers}, topic {settings.kafka_topic}"
    failed_at = time.monotonic()
    send_alert(settings, f"clickrec stream job: Kafka unreachable, query {query.name} waits for it", [
        failure_cause(error), f"Kafka at {where}; app id {settings.stream_app_id}",
        "It restarts by itself from its checkpoint once the brokers answer; nothing is lost meanwhile."])
    logged_at = failed_at
    while not answers:
        if stop.wait(KAFKA_PROBE_SECONDS):
            return query  # stopping: nothing to resume
        answers = kafka_answers(settings)
        if not answers and time.monotonic() - logged_at >= 30:
            logged_at = time.monotonic()
            log.warning("query %s waits for Kafka at %s (%.0fs)", query.name, where, logged_at - failed_at)
    restarted_at[query.name] = time.monotonic()
    restarted = start()
    send_alert(settings, f"clickrec stream job: Kafka answers, query {query.name} resumed", [
        f"{time.monotonic() - failed_at:.0f}s after it failed, from its checkpoint; Kafka at {where}"])
    return restarted


def run(settings: Settings, options: StreamOptions, spark: SparkSession | None = None,
        stop: threading.Event | None = None, metrics: StreamMetrics | None = None) -> dict[str, float]:
    """Run the job; in available-now mode until caught up (returning seconds per query), else until
    ``stop`` is set. A failed query raises, after an alert."""
    try:
        return _run(settings, options, spark, stop, metrics)
    except Exception as error:
        send_alert(settings, "clickrec stream job failed", [
            f"{type(error).__name__}: {failure_cause(error)}",
            f"topic {settings.kafka_topic}, app id {settings.stream_app_id}, lake {settings.lake_uri}",
            "It stopped; restart it (`clickrec stream`) once the cause is fixed: it resumes from its "
            "checkpoints and loses or duplicates nothing."])
        raise


def spark_master(settings: Settings, options: StreamOptions) -> str:
    """The master the job runs on: in continuous mode a local master gets ``stream_continuous_cores``
    task threads (keeping up with live traffic needs few, and the interactive services want the rest);
    catch-up runs and cluster masters as set."""
    master, cores = settings.spark_master, settings.stream_continuous_cores
    if options.available_now or cores is None or not re.fullmatch(r"local(\[(\*|\d+)(,\s*\d+)?\])?", master):
        return master
    retries = re.search(r",\s*(\d+)\]$", master)  # local[N, F]: F task failures allowed, kept
    return f"local[{cores},{retries.group(1)}]" if retries else f"local[{cores}]"


def _run(settings: Settings, options: StreamOptions, spark: SparkSession | None,
         stop: threading.Event | None, metrics: StreamMetrics | None) -> dict[str, float]:
    if spark is None:
        master = spark_master(settings, options)
        log.info("Spark master %s (%s mode)", master, "catch-up" if options.available_now else "continuous")
        spark = spark_session(settings.model_copy(update={"spark_master": master}), app_name="clickrec-stream", **{
            "spark.scheduler.mode": "FAIR", "spark.scheduler.allocation.file": str(FAIR_POOLS)})
    prepare(spark, settings)
    listener = metrics.listener() if metrics else None
    if listener:
        spark.streams.addListener(listener)
    ingest = IngestBatch(settings, on_batch=metrics.record_ingest if metrics else None)
    starters = {
        "ingest": lambda: start_ingest(spark, settings, options, ingest),
        "gold": lambda: start_gold(spark, settings, options, GoldBatch(settings, catch_up=options.available_now)),
    }
    if options.live_query and not options.available_now:  # in catch-up, the gold query posts the live tables
        starters = {"live": lambda: start_live(spark, settings, options, LiveBatch(settings)), **starters}
    seconds: dict[str, float] = {}
    try:
        if options.available_now:
            for name, start in starters.items():
                started = time.perf_counter()
                start().awaitTermination()
                seconds[name] = time.perf_counter() - started
            return seconds
        stop = stop or threading.Event()
        queries = {name: start() for name, start in starters.items()}
        restarted_at: dict[str, float] = {}
        try:
            while not stop.is_set():
                for name, query in queries.items():
                    if not query.isActive:
                        queries[name] = restart_after_kafka_outage(settings, query, starters[name], stop,
                                                                   restarted_at)
                stop.wait(1.0)
        finally:
            for query in queries.values():
                try:
                    query.stop()
                except Exception as error:  # noqa: BLE001 - an interrupted batch on the way out is no failure
                    log.warning("query %s: %s while stopping", query.name, failure_cause(error))
        return seconds
    finally:
        if listener:
            spark.streams.removeListener(listener)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from clickrec_platform.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="clickrec stream", description=__doc__)
    parser.add_argument("--available-now", action="store_true", help="catch up, then stop")
    parser.add_argument("--live-query", action=argparse.BooleanOptionalAction, default=settings.stream_live_query,
                        help="also run the Spark live query (Kafka → Postgres live tables) in continuous mode; "
                             "off by default, as the speed layer (`clickrec speed`) keeps them")
    parser.add_argument("--trigger", type=float, default=settings.stream_trigger_seconds,
                        help="seconds between live micro-batches (with --live-query) in continuous mode")
    parser.add_argument("--ingest-trigger", type=float, default=settings.stream_ingest_trigger_seconds,
                        help="seconds between ingest micro-batches (Kafka → silver, bronze) in continuous mode")
    parser.add_argument("--gold-trigger", type=float, default=settings.stream_gold_trigger_seconds,
                        help="seconds between gold micro-batches (Delta MERGEs) in continuous mode")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=settings.stream_max_offsets_per_trigger)
    parser.add_argument("--max-files-per-trigger", type=int, default=settings.stream_max_files_per_trigger)
    args = parser.parse_args(argv)
    stop = process_stop_event()
    metrics = StreamMetrics()
    if settings.stream_metrics_port:
        metrics.serve(settings.bind_host, settings.stream_metrics_port)
    options = StreamOptions(available_now=args.available_now, live_query=args.live_query,
                            trigger_seconds=args.trigger,
                            ingest_trigger_seconds=args.ingest_trigger, gold_trigger_seconds=args.gold_trigger,
                            max_offsets_per_trigger=args.max_offsets_per_trigger,
                            max_files_per_trigger=args.max_files_per_trigger)
    try:
        run(settings, options, stop=stop, metrics=metrics)
    except Exception:
        log.exception("stream job failed")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
