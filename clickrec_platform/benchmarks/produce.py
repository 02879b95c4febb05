"""`clickrec bench produce`: acknowledged events/s to the broker, beside the ceilings of its parts.

Three figures from one run over the same pre-generated events, so their ratios mean something:
- encode only: contract frames -> Kafka (key, value) bytes, the serialisation ceiling;
- send only: pre-encoded bytes -> broker, acknowledged (acks=all, idempotent);
- end to end: what `clickrec produce` does, encode + send + flush, acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import pandas as pd
from confluent_kafka.admin import NewTopic

from clickrec_platform.events.batch import encode_batch
from clickrec_platform.producer.kafka_sink import KafkaEventSink
from clickrec_platform.producer.pacing import FastPacer
from clickrec_platform.producer.run import produce_frames
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.stack.kafka import admin_client


@dataclass
class ProduceBenchmark:
    events: int
    generate_s: float
    encode_s: float
    send_s: list[float]
    end_to_end_s: list[float]
    failed: int
    config: dict[str, object]

    def rate(self, seconds: float) -> float:
        return self.events / seconds

    def lines(self) -> list[str]:
        best_send, best_e2e = min(self.send_s), min(self.end_to_end_s)
        encode_rate = self.rate(self.encode_s)
        return [
            f"events: {self.events:,} (generated in {self.generate_s:.1f}s, "
            f"{self.rate(self.generate_s):,.0f} ev/s)",
            "producer: " + ", ".join(f"{k}={v}" for k, v in self.config.items()
                                     if k not in ("bootstrap.servers", "on_delivery")),
            f"encode only (serialisation ceiling): {encode_rate:>12,.0f} ev/s  ({self.encode_s:.2f}s)",
            "send only, acknowledged:             "
            + "  ".join(f"{self.rate(s):,.0f}" for s in self.send_s) + f" ev/s  (best {best_send:.2f}s)",
            "end to end (encode+send), acked:     "
            + "  ".join(f"{self.rate(s):,.0f}" for s in self.end_to_end_s)
            + f" ev/s  (best {best_e2e:.2f}s)",
            f"end to end / serialisation ceiling: {self.rate(best_e2e) / encode_rate:.0%}",
            f"failed deliveries: {self.failed}",
        ]


def run_produce_benchmark(settings: Settings, events: int, repeats: int = 3, seed: int = 7) -> ProduceBenchmark:
    t0 = time.perf_counter()
    frames: list[pd.DataFrame] = list(generate_events(GeneratorConfig(events=events, seed=seed)))
    generate_s = time.perf_counter() - t0
    total = sum(len(f) for f in frames)

    t0 = time.perf_counter()
    encoded = [encode_batch(frame) for frame in frames]
    encode_s = time.perf_counter() - t0

    admin = admin_client(settings.kafka_bootstrap_servers)
    send_s, end_to_end_s, failed, config = [], [], 0, {}
    for _ in range(repeats):
        for kind in ("send", "e2e"):
            topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
            admin.create_topics([NewTopic(topic, settings.kafka_topic_partitions, 1)])[topic].result(30)
            try:
                sink = KafkaEventSink(settings, topic, settings.state_dir / "bench" / f"{topic}.dlq.jsonl")
                config = sink.config
                t0 = time.perf_counter()
                if kind == "send":
                    for keys, values in encoded:
                        sink.send(keys, values)
                    sink.flush(120)
                    sink.close()
                    send_s.append(time.perf_counter() - t0)
                else:
                    produce_frames(frames, sink, FastPacer(), progress=False, stop=threading.Event())
                    end_to_end_s.append(time.perf_counter() - t0)
                failed += sink.failed
            finally:
                admin.delete_topics([topic])[topic].result(30)
    return ProduceBenchmark(total, generate_s, encode_s, send_s, end_to_end_s, failed, config)
