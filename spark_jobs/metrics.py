"""Prometheus metrics of the stream job, from Spark's query progress and the ingest batches.

``clickrec stream`` serves them on ``stream_metrics_port`` (9465); infra/prometheus scrapes them
and alerts on lag and failures. Per query (``ingest``, ``gold``): micro-batch duration, input and
processing rates, rows; Kafka consumer lag per partition (offsets behind the latest); and from
the ingest batches, records by layer (bronze = silver + quarantine + duplicate) and quarantined
records by reason.
"""

from __future__ import annotations

import json
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pyspark.sql.streaming import StreamingQueryListener

from clickrec_platform.events.contract import FIELD_NAMES

log = logging.getLogger("clickrec.stream")

BATCH_SECONDS_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)


class StreamMetrics:
    """The job's metrics in a registry of their own (tests read them without a server)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_seconds = Histogram(
            "clickrec_stream_batch_duration_seconds", "Wall time of a micro-batch (trigger execution).",
            ["query"], buckets=BATCH_SECONDS_BUCKETS, registry=r)
        self.input_rate = Gauge("clickrec_stream_input_rows_per_second",
                                "Rows per second arriving, over the last micro-batch.", ["query"], registry=r)
        self.processed_rate = Gauge("clickrec_stream_processed_rows_per_second",
                                    "Rows per second processed, over the last micro-batch.", ["query"], registry=r)
        self.input_rows = Counter("clickrec_stream_input_rows", "Rows read by the query.", ["query"], registry=r)
        self.batches = Counter("clickrec_stream_batches", "Micro-batches completed.", ["query"], registry=r)
        self.consumer_lag = Gauge("clickrec_stream_kafka_lag_records",
                                  "Kafka offsets behind the latest after the query's last micro-batch.",
                                  ["query", "topic", "partition"], registry=r)
        self.rows = Counter("clickrec_stream_rows", "Records by the layer they went to (bronze: every record; "
                            "silver, quarantine, duplicate: what became of it).", ["layer"], registry=r)
        self.quarantined = Counter("clickrec_stream_quarantined", "Records quarantined, by reason.", ["reason"],
                                   registry=r)
        self.last_batch = Gauge("clickrec_stream_last_batch_timestamp_seconds",
                                "Unix time the query last completed a micro-batch.", ["query"], registry=r)
        self.up = Gauge("clickrec_stream_query_up", "1 while the query runs, 0 once it stopped.", ["query"],
                        registry=r)
        self.failures = Counter("clickrec_stream_query_failures", "Queries that stopped with an error.",
                                ["query"], registry=r)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
        log.info("stream metrics on http://%s:%d/metrics", host, port)

    def record_ingest(self, batch_id: int, summary, silver_rows: int, seconds: float) -> None:
        """The ``on_batch`` hook of ``IngestBatch``: its reconciliation as counters."""
        self.rows.labels("bronze").inc(summary.records)
        self.rows.labels("silver").inc(silver_rows)
        self.rows.labels("quarantine").inc(summary.quarantined)
        self.rows.labels("duplicate").inc(summary.records - silver_rows - summary.quarantined)
        for reason, count in summary.reasons.items():
            self.quarantined.labels(reason_label(reason)).inc(count)

    def listener(self) -> StreamingQueryListener:
        return _ProgressListener(self)


def reason_label(reason: str) -> str:
    """A quarantine reason as a label of bounded cardinality: the code and the contract's field name
    stay (``missing_field:ts``), an echo of the record's own text goes (``unknown_event:<name>``)."""
    code, _, detail = reason.partition(":")
    return reason if detail in FIELD_NAMES else code


def kafka_lag(end_offset: str | None, latest_offset: str | None) -> dict[tuple[str, str], int] | None:
    """Offsets behind the latest per (topic, partition), from a Kafka source's progress: its end
    offset (what the batch read up to) and the latest offsets it saw, both JSON
    ``{"topic": {"partition": offset}}``. None for a source that is not Kafka."""
    try:
        end, latest = json.loads(end_offset or "null"), json.loads(latest_offset or "null")
    except ValueError:
        return None
    if not isinstance(end, dict) or not isinstance(latest, dict):
        return None
    lag = {}
    for topic, partitions in latest.items():
        if not isinstance(partitions, dict):
            return None
        read = end.get(topic) or {}
        for partition, offset in partitions.items():
            lag[(topic, str(partition))] = max(0, int(offset) - int(read.get(partition, 0)))
    return lag


class _ProgressListener(StreamingQueryListener):
    def __init__(self, metrics: StreamMetrics):
        self.metrics = metrics
        self.names: dict[str, str] = {}

    def onQueryStarted(self, event) -> None:
        self.names[str(event.id)] = event.name or str(event.id)
        self.metrics.up.labels(self.names[str(event.id)]).set(1)

    def onQueryProgress(self, event) -> None:
        p, m = event.progress, self.metrics
        name = p.name or str(p.id)
        m.batch_seconds.labels(name).observe(p.durationMs.get("triggerExecution", 0) / 1000)
        m.input_rate.labels(name).set(p.inputRowsPerSecond or 0.0)
        m.processed_rate.labels(name).set(p.processedRowsPerSecond or 0.0)
        m.input_rows.labels(name).inc(p.numInputRows)
        m.batches.labels(name).inc()
        m.last_batch.labels(name).set_to_current_time()
        for source in p.sources:
            for (topic, partition), behind in (kafka_lag(source.endOffset, source.latestOffset) or {}).items():
                m.consumer_lag.labels(name, topic, partition).set(behind)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        name = self.names.get(str(event.id), str(event.id))
        self.metrics.up.labels(name).set(0)
        if event.exception:
            self.metrics.failures.labels(name).inc()
