"""Prometheus metrics of the speed layer, served on ``speed_metrics_port`` (9466) while it runs.

| metric | type | labels |
|---|---|---|
| ``clickrec_speed_records_total`` | counter | ``outcome``: ``valid`` (applied) or ``rejected`` |
| ``clickrec_speed_rejected_total`` | counter | ``reason``: the contract's reason code |
| ``clickrec_speed_live_events_inserted_total`` | counter | new rows in ``live_clickstream_events`` |
| ``clickrec_speed_batch_duration_seconds`` | histogram | decode + one Postgres transaction |
| ``clickrec_speed_windows_refreshed_total`` | counter | live windows recomputed |
| ``clickrec_speed_kafka_lag_records`` | gauge | ``partition``: records behind the partition's end |
| ``clickrec_speed_last_commit_timestamp_seconds`` | gauge | Unix time of the last committed batch |
| ``clickrec_speed_problems_total`` | counter | ``kind``: ``postgres`` (outage, reconnected), ``fenced`` (partition taken over, batch rolled back), ``kafka`` |
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from clickrec_platform.speed.consumer import BatchApplied

log = logging.getLogger("clickrec.speed")

BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class SpeedMetrics:
    """The speed layer's metrics in a registry of their own; its hooks plug into ``SpeedLayer``."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.records = Counter("clickrec_speed_records", "Kafka records consumed, by outcome.", ["outcome"], registry=r)
        self.rejected = Counter("clickrec_speed_rejected", "Records that are not valid events, by reason.",
                                ["reason"], registry=r)
        self.inserted = Counter("clickrec_speed_live_events_inserted",
                                "New rows in live_clickstream_events (events of the live span, once per id).",
                                registry=r)
        self.batch_seconds = Histogram("clickrec_speed_batch_duration_seconds",
                                       "Wall time of a batch: decode and its Postgres transaction.",
                                       buckets=BATCH_SECONDS_BUCKETS, registry=r)
        self.windows = Counter("clickrec_speed_windows_refreshed", "Live windows recomputed (stats and trending).",
                               registry=r)
        self.lag = Gauge("clickrec_speed_kafka_lag_records", "Records behind the end of each assigned partition.",
                         ["partition"], registry=r)
        self.last_commit = Gauge("clickrec_speed_last_commit_timestamp_seconds",
                                 "Unix time the speed layer last committed a batch.", registry=r)
        self.problems = Counter("clickrec_speed_problems", "Batches rolled back or retried, by kind.", ["kind"],
                                registry=r)
        for outcome in ("valid", "rejected"):
            self.records.labels(outcome)
        for kind in ("postgres", "fenced", "kafka"):
            self.problems.labels(kind)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
        log.info("speed layer metrics on http://%s:%d/metrics", host, port)

    def record_batch(self, batch: BatchApplied) -> None:
        self.records.labels("valid").inc(batch.valid)
        self.records.labels("rejected").inc(sum(batch.rejected.values()))
        for reason, count in batch.rejected.items():
            self.rejected.labels(reason).inc(count)
        self.inserted.inc(batch.live.inserted)
        self.windows.inc(batch.windows_refreshed)
        self.batch_seconds.observe(batch.seconds)
        self.last_commit.set(time.time())

    def record_lag(self, lag: dict[int, int]) -> None:
        self.lag.clear()
        for partition, records in lag.items():
            self.lag.labels(str(partition)).set(records)

    def record_problem(self, kind: str) -> None:
        self.problems.labels(kind).inc()
