"""Prometheus metrics of `clickrec produce`, served on ``bind_host:producer_metrics_port`` (9464) while it runs.

Everything is read at scrape time from the sink's own tallies (``KafkaEventSink.deliveries``: plain
integers that each message's delivery report bumps), so producing costs no Prometheus client call per
event, and a scrape sees counts that only ever grow.

| metric | type | labels |
|---|---|---|
| ``clickrec_producer_events_produced_total`` | counter | ``event``: handed to the Kafka client |
| ``clickrec_producer_events_delivered_total`` | counter | ``event``: acknowledged by the broker (acks=all) |
| ``clickrec_producer_events_failed_total`` | counter | ``event``: failed, written to the dead-letter file |
| ``clickrec_producer_delivery_errors_total`` | counter | ``error``: librdkafka's error name |
| ``clickrec_producer_source_rejected_total`` | counter | source rows rejected before producing |
| ``clickrec_producer_target_rate_events_per_second`` | gauge | the pacer's current target; NaN: unpaced |
| ``clickrec_producer_in_flight_messages`` | gauge | accepted, neither acknowledged nor failed yet |
| ``clickrec_producer_delivery_latency_seconds`` | histogram | produce() to the broker's acknowledgement |
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import accumulate

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from clickrec_platform.producer.kafka_sink import LATENCY_BUCKETS, TYPE_LABELS, UNKNOWN_TYPE, KafkaEventSink
from clickrec_platform.producer.pacing import Pacer

PREFIX = "clickrec_producer_"


class ProducerCollector(Collector):
    """The metric families of one running producer (a sink that tracks deliveries, and its pacer)."""

    def __init__(self, sink: KafkaEventSink, pacer: Pacer, source_rejected: Callable[[], int] = lambda: 0,
                 wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)):
        self.sink, self.pacer = sink, pacer
        self.source_rejected, self.wall_clock_ms = source_rejected, wall_clock_ms

    def collect(self) -> Iterator[Metric]:
        tally = self.sink.deliveries
        help_texts = {
            "produced": "Events handed to the Kafka client for sending",
            "delivered": "Events acknowledged by the broker (acks=all)",
            "failed": "Events whose delivery failed (each written to the dead-letter file with the reason)",
        }
        for name, counts in (("produced", list(tally.produced)), ("delivered", list(tally.delivered)),
                             ("failed", list(tally.failed))):
            family = CounterMetricFamily(f"{PREFIX}events_{name}", help_texts[name], labels=["event"])
            for code, (label, count) in enumerate(zip(TYPE_LABELS, counts, strict=True)):
                if code != UNKNOWN_TYPE or count:  # every contract type, from zero; "unknown" once seen
                    family.add_metric([label], count)
            yield family

        errors = CounterMetricFamily(f"{PREFIX}delivery_errors", "Failed deliveries by librdkafka error",
                                     labels=["error"])
        for reason, count in sorted(dict(self.sink.failed_by_reason).items()):
            errors.add_metric([reason], count)
        yield errors

        yield CounterMetricFamily(f"{PREFIX}source_rejected",
                                  "Source rows rejected before producing (malformed input, in the rejects file)",
                                  value=self.source_rejected())
        target = self.pacer.target_events_per_second(self.wall_clock_ms())
        yield GaugeMetricFamily(f"{PREFIX}target_rate_events_per_second",
                                "The rate the producer currently aims at (NaN: as fast as it can)",
                                value=math.nan if target is None else target)
        yield GaugeMetricFamily(f"{PREFIX}in_flight_messages",
                                "Messages accepted by the Kafka client, neither acknowledged nor failed yet",
                                value=self.sink.in_flight)

        counts = list(tally.latency_counts)
        cumulative = list(accumulate(counts))
        buckets = [(f"{bound:g}", count) for bound, count in zip(LATENCY_BUCKETS, cumulative, strict=False)]
        yield HistogramMetricFamily(f"{PREFIX}delivery_latency_seconds",
                                    "Seconds from handing an event to the Kafka client to the broker's acknowledgement",
                                    buckets=[*buckets, ("+Inf", cumulative[-1])], sum_value=tally.latency_sum)


@contextmanager
def serve_producer_metrics(collector: ProducerCollector, host: str, port: int) -> Iterator[str]:
    """Serve ``collector`` at ``http://host:port/metrics`` (port 0: any free one) until the block ends;
    yields the URL. An occupied port raises ``OSError`` before anything is served."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield f"http://{host}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
