"""The confluent-kafka producer, tuned for throughput, with exact delivery accounting.

Only failures call back into Python (``delivery.report.only.error``): a callback per message
would cost more than the send itself. Every accepted message is either acknowledged by the
broker (acks=all, idempotent, so retries never duplicate) or reported as failed and written to
the dead-letter file with its reason, so after a flush
``delivered = accepted - failed - still queued``.

With ``track_deliveries`` (what `clickrec produce` does while it serves its Prometheus metrics) every
message reports back instead, to a callback of its event type that counts it and files its
produce-to-acknowledgement latency into histogram buckets: plain integers, read at scrape time. That
costs the fast mode a fifth to a quarter of its throughput; paced modes never notice it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from clickrec_platform.events.contract import EVENT_TYPES
from clickrec_platform.settings import Settings
from clickrec_platform.stack.kafka import admin_client

# Delivery accounting by event type: the contract's types, then messages sent without a known type.
TYPE_LABELS: tuple[str, ...] = (*EVENT_TYPES, "unknown")
UNKNOWN_TYPE = len(EVENT_TYPES)
# Upper bounds (seconds) of the produce-to-acknowledgement latency histogram; messages time out at 120 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                      60.0, 120.0)


def event_type_codes(event_types: Sequence[str] | np.ndarray | pd.Series) -> np.ndarray:
    """Each event's index in ``TYPE_LABELS`` (``UNKNOWN_TYPE`` for a type outside the contract)."""
    codes = pd.Categorical(np.asarray(event_types), categories=EVENT_TYPES).codes.astype(np.intp)
    codes[codes < 0] = UNKNOWN_TYPE
    return codes


def _zeros() -> list[int]:
    return [0] * len(TYPE_LABELS)


@dataclass
class DeliveryTally:
    """What became of a tracking sink's messages, by event type (``TYPE_LABELS`` order), and how long the
    broker took to acknowledge them. Written by delivery reports (the producing thread), read by scrapes."""

    produced: list[int] = field(default_factory=_zeros)
    delivered: list[int] = field(default_factory=_zeros)
    failed: list[int] = field(default_factory=_zeros)
    # Per LATENCY_BUCKETS bound (not cumulative), then one for what exceeds the last.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0


class BrokerUnreachable(RuntimeError):
    """No Kafka broker answered at the configured bootstrap servers."""


def producer_config(settings: Settings, overrides: Mapping[str, object] | None = None) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.producer_compression,
        "linger.ms": settings.producer_linger_ms,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "delivery.report.only.error": True,
        # A message not acknowledged within 2 minutes of produce() fails (dead-lettered, with its reason): a
        # broker restart, or a cluster's leader election, take seconds; retries are unbounded until then.
        "message.timeout.ms": 120_000,
        **settings.producer_overrides,
        **(overrides or {}),
    }


def check_broker(settings: Settings, topic: str, timeout_s: float = 5.0) -> int:
    """Fail fast, with a clear message, if the broker or topic is not there; return its partitions."""
    try:
        metadata = admin_client(settings.kafka_bootstrap_servers).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"No Kafka broker answered at {settings.kafka_bootstrap_servers} within {timeout_s:.0f}s "
            f"({exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else exc}). "
            "Start the local stack with `clickrec up`, or set KAFKA_BOOTSTRAP_SERVERS."
        ) from exc
    if topic not in metadata.topics:
        raise BrokerUnreachable(f"Topic {topic!r} does not exist on {settings.kafka_bootstrap_servers}; "
                                "`clickrec up` creates the platform's topics.")
    return len(metadata.topics[topic].partitions)


class KafkaEventSink:
    """Sends keyed values to one topic; counts what was accepted, failed and dead-lettered (and, when
    tracking deliveries, what was acknowledged, by event type, and how fast)."""

    def __init__(self, settings: Settings, topic: str, dead_letter_path: Path,
                 overrides: Mapping[str, object] | None = None, *, track_deliveries: bool = False):
        self.topic = topic
        self.partitions = check_broker(settings, topic)
        self.tracks_deliveries = track_deliveries
        self.config = {**producer_config(settings, overrides),
                       **({"delivery.report.only.error": False} if track_deliveries else {})}
        self.accepted = 0
        self.failed_by_reason: Counter[str] = Counter()
        self.deliveries = DeliveryTally()
        self.dead_letter_path = dead_letter_path
        self._dead_letters: BinaryIO | None = None
        self._reports = [self._report_for(code) for code in range(len(TYPE_LABELS))]
        default = self._reports[UNKNOWN_TYPE] if track_deliveries else self._on_failure
        self._producer = Producer({**self.config, "on_delivery": default})

    @property
    def delivery_timeout_s(self) -> float:
        """How long a message may wait for the broker's acknowledgement, from ``produce()``, before the client
        fails it (``message.timeout.ms``): the longest broker outage a send rides out."""
        return float(cast("str | float", self.config["message.timeout.ms"])) / 1000  # an override may be text

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    @property
    def in_flight(self) -> int:
        """Messages accepted and neither acknowledged nor failed yet (queued, or awaiting the broker)."""
        return len(self._producer)

    def send(self, keys: Sequence[bytes], values: Sequence[bytes], event_types: Sequence[int] | None = None
             ) -> None:
        """Hand messages to the client. ``event_types`` (codes from ``event_type_codes``) label the
        delivery accounting of a tracking sink; an untracking one ignores them."""
        produce, poll, topic = self._producer.produce, self._producer.poll, self.topic
        if self.tracks_deliveries and event_types is not None:
            reports = self._reports
            for key, value, code in zip(keys, values, event_types, strict=True):
                while True:
                    try:
                        produce(topic, value, key, on_delivery=reports[code])
                        break
                    except BufferError:  # local queue full: let librdkafka drain some, then retry
                        poll(0.05)
            counts = np.bincount(np.asarray(event_types, dtype=np.intp), minlength=len(TYPE_LABELS))
            for code, count in enumerate(counts.tolist()):
                self.deliveries.produced[code] += count
        else:
            for key, value in zip(keys, values, strict=True):
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        poll(0.05)
            self.deliveries.produced[UNKNOWN_TYPE] += len(keys)
        self.accepted += len(keys)
        poll(0)

    def wait(self, seconds: float) -> None:
        """Idle for up to ``seconds`` while serving delivery reports (returns early when one arrives)."""
        self._producer.poll(max(seconds, 0.0))

    def flush(self, timeout_s: float) -> int:
        """Wait for every accepted message to be acknowledged or failed; give up after the timeout:
        whatever is still queued then is purged, and so reported failed and dead-lettered."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            self._producer.purge()
            self._producer.flush(5)
        return remaining

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()

    def _report_for(self, code: int) -> Callable[[KafkaError | None, Message], None]:
        """The delivery report of one event type: plain counters, no allocation (it runs per message)."""
        tally, bounds = self.deliveries, LATENCY_BUCKETS
        delivered, failed, latency_counts = tally.delivered, tally.failed, tally.latency_counts

        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                delivered[code] += 1
                latency = message.latency()
                if latency is not None:
                    latency_counts[bisect_left(bounds, latency)] += 1
                    tally.latency_sum += latency
            else:
                failed[code] += 1
                self._on_failure(error, message)

        return report

    def _on_failure(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        self.failed_by_reason[error.name()] += 1
        if self._dead_letters is None:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            self._dead_letters = self.dead_letter_path.open("ab")
        record = {
            "topic": message.topic(), "key": (message.key() or b"").decode("utf-8", "backslashreplace"),
            "value": (message.value() or b"").decode("utf-8", "backslashreplace"),
            "error": error.name(), "reason": error.str(), "retriable": error.retriable(),
        }
        self._dead_letters.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
