"""The confluent-kafka producer, tuned for throughput, with exact delivery accounting.

Only failures call back into Python (``delivery.report.only.error``): a callback per message
would cost more than the send itself. Every accepted message is either acknowledged by the
broker (acks=all, idempotent, so retries never duplicate) or reported as failed and written to
the dead-letter file with its reason, so after a flush
``delivered = accepted - failed - still queued``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from clickrec_platform.settings import Settings
from clickrec_platform.stack.kafka import admin_client


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
    """Sends keyed values to one topic; counts what was accepted, failed and dead-lettered."""

    def __init__(self, settings: Settings, topic: str, dead_letter_path: Path,
                 overrides: Mapping[str, object] | None = None):
        self.topic = topic
        self.partitions = check_broker(settings, topic)
        self.config = producer_config(settings, overrides)
        self.accepted = 0
        self.failed_by_reason: Counter[str] = Counter()
        self.dead_letter_path = dead_letter_path
        self._dead_letters = None
        self._producer = Producer({**self.config, "on_delivery": self._on_failure})

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def send(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        produce, poll, topic = self._producer.produce, self._producer.poll, self.topic
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:  # local queue full: let librdkafka drain some, then retry
                    poll(0.05)
        self.accepted += len(keys)
        poll(0)

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
