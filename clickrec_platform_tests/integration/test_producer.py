"""`clickrec produce` against the real local broker, and its Prometheus metrics."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import orjson
import pandas as pd
import pytest
from confluent_kafka.admin import NewTopic

from clickrec_platform.events.codec import decode
from clickrec_platform.events.contract import EVENT_TYPES, frame_to_events
from clickrec_platform.producer.kafka_sink import BrokerUnreachable, KafkaEventSink
from clickrec_platform.producer.metrics import ProducerCollector, serve_producer_metrics
from clickrec_platform.producer.pacing import FastPacer, RatePacer
from clickrec_platform.producer.run import produce_frames
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.stack.kafka import admin_client
from clickrec_platform_tests.support import consume, free_port, metric_samples

pytestmark = pytest.mark.integration


def _sink(settings, topic, tmp_path):
    return KafkaEventSink(settings, topic, tmp_path / "dead-letter.jsonl")


def test_produced_events_come_back_identical_keyed_and_in_per_visitor_order(stack, kafka_topic, tmp_path):
    frames = list(generate_events(GeneratorConfig(events=5_000, seed=11, days=2, chunk_events=2_000)))
    expected = [event for frame in frames for event in frame_to_events(frame)]

    summary = produce_frames(frames, _sink(stack, kafka_topic, tmp_path), FastPacer(), progress=False)

    assert summary.accepted == summary.delivered == len(expected) and summary.failed == 0
    messages = consume(stack.kafka_bootstrap_servers, kafka_topic, expected=len(expected))
    received = [decode(m.value() or b"") for m in messages]
    assert sorted(received, key=lambda e: e.event_id) == sorted(expected, key=lambda e: e.event_id)
    assert len({e.event_id for e in received}) == len(expected)

    partition_of: dict[int, set[int | None]] = {}
    for message, event in zip(messages, received, strict=True):
        assert message.key() == str(event.visitor_id).encode()
        partition_of.setdefault(event.visitor_id, set()).add(message.partition())
    assert all(len(p) == 1 for p in partition_of.values())
    assert len({p for ps in partition_of.values() for p in ps}) == 3  # visitors spread over partitions

    # Within a partition, each visitor's events arrive in the order they were produced.
    produced_order = {e.event_id: i for i, e in enumerate(expected)}
    by_visitor: dict[int, list[int]] = {}
    for _message, event in sorted(zip(messages, received, strict=True),
                                 key=lambda pair: (pair[0].partition(), pair[0].offset())):
        by_visitor.setdefault(event.visitor_id, []).append(produced_order[event.event_id])
    assert all(order == sorted(order) for order in by_visitor.values())


def test_replaying_the_same_source_gives_the_same_event_ids(stack, kafka_topic, tmp_path):
    config = GeneratorConfig(events=1_000, seed=5, days=1)
    for _ in range(2):
        produce_frames(generate_events(config), _sink(stack, kafka_topic, tmp_path), FastPacer(), progress=False)
    total = sum(len(f) for f in generate_events(config))
    ids = [decode(m.value() or b"").event_id for m in consume(stack.kafka_bootstrap_servers, kafka_topic, 2 * total)]
    assert len(set(ids)) == total  # every id exactly twice


def test_unreachable_broker_is_a_clear_error_within_seconds(stack, tmp_path):
    elsewhere = stack.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match="No Kafka broker answered at 127.0.0.1:1"):
        _sink(elsewhere, "clickstream", tmp_path)
    assert time.monotonic() - started < 10

    result = subprocess.run([sys.executable, "-m", "clickrec_platform.cli", "produce", "--events", "100"],
                            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "No Kafka broker answered" in result.stderr and "clickrec up" in result.stderr


def test_sigterm_mid_run_flushes_what_was_accepted_and_reports_counts(stack, kafka_topic):
    """Also: `clickrec produce` serves its metrics while it runs, and they grow as events are acknowledged."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    process = subprocess.Popen(
        [sys.executable, "-m", "clickrec_platform.cli", "produce", "--topic", kafka_topic, "--mode", "rate",
         "--rate", "2000", "--events", "50000", "--no-progress", "--json", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30  # a loaded machine may take seconds to start it
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            early = metric_samples(url)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "no metrics endpoint within 30s"
            time.sleep(0.5)
    time.sleep(3)
    later = metric_samples(url)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped_early"] is True
    assert 0 < summary["delivered"] == summary["accepted"] < 50000
    assert summary["failed"] == 0
    consume(stack.kafka_bootstrap_servers, kafka_topic, expected=summary["delivered"])

    def delivered(samples):
        return sum(v for (name, _), v in samples.items() if name == "clickrec_producer_events_delivered_total")

    assert delivered(early) < delivered(later) <= summary["delivered"]
    assert later[("clickrec_producer_target_rate_events_per_second", ())] == 2000
    assert later[("clickrec_producer_events_failed_total", (("event", "view"),))] == 0
    assert f"metrics: {url}" in stderr
    with pytest.raises(httpx.ConnectError):  # served while it runs, not after
        httpx.get(url, timeout=2)


def test_metrics_count_each_event_type_and_time_every_acknowledgement(stack, kafka_topic, tmp_path):
    frames = list(generate_events(GeneratorConfig(events=6_000, seed=12, days=2, chunk_events=2_000)))
    sink = KafkaEventSink(stack, kafka_topic, tmp_path / "dead-letter.jsonl", track_deliveries=True)
    pacer = RatePacer(20_000)
    with serve_producer_metrics(ProducerCollector(sink, pacer), "127.0.0.1", 0) as url:  # any free port
        summary = produce_frames(frames, sink, pacer, progress=False)
        samples = metric_samples(url)

    by_type = pd.concat(frames)["event"].value_counts().to_dict()
    assert set(by_type) == set(EVENT_TYPES)
    for kind in ("produced", "delivered"):
        counted = {dict(labels)["event"]: value for (name, labels), value in samples.items()
                   if name == f"clickrec_producer_events_{kind}_total"}
        assert counted == by_type, kind
    assert summary.delivered == summary.accepted == sum(by_type.values())
    assert all(value == 0 for (name, _), value in samples.items() if name == "clickrec_producer_events_failed_total")
    assert not any(name == "clickrec_producer_delivery_errors_total" for name, _ in samples)
    assert samples[("clickrec_producer_in_flight_messages", ())] == 0
    assert samples[("clickrec_producer_target_rate_events_per_second", ())] == 20_000
    assert samples[("clickrec_producer_source_rejected_total", ())] == 0

    # Every acknowledgement timed: as many observations as deliveries, cumulative buckets, sane seconds.
    latency = "clickrec_producer_delivery_latency_seconds"
    buckets = sorted(((float(dict(labels)["le"]), value) for (name, labels), value in samples.items()
                      if name == f"{latency}_bucket"))
    assert buckets[-1] == (float("inf"), summary.delivered) == (float("inf"), samples[(f"{latency}_count", ())])
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    assert 0 < samples[(f"{latency}_sum", ())] / summary.delivered < 5  # mean seconds to acks=all, loopback
    consume(stack.kafka_bootstrap_servers, kafka_topic, expected=summary.delivered)


def test_permanent_failures_go_to_the_dead_letter_file_with_the_reason(stack, tmp_path):
    topic = f"test-small-{uuid.uuid4().hex[:8]}"
    admin = admin_client(stack.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})])[topic].result(30)
    try:
        sink = _sink(stack, topic, tmp_path)
        sink.send([b"1"], [b'{"small": true}'])
        assert sink.flush(30) == 0
        # Over the topic's limit even after lz4: random bytes do not compress.
        sink.send([b"2"], [b'{"big": "' + base64.b64encode(os.urandom(20_000)) + b'"}'])
        assert sink.flush(30) == 0
        sink.close()
    finally:
        admin.delete_topics([topic])[topic].result(30)

    assert sink.accepted == 2 and sink.failed == 1
    (letter,) = [orjson.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert letter["key"] == "2" and letter["value"].startswith('{"big"')
    assert letter["error"] == "MSG_SIZE_TOO_LARGE" and letter["reason"]


def test_retailrocket_file_is_produced_with_its_rejects_counted(stack, kafka_topic, tmp_path):
    from clickrec_platform.producer.sources import retailrocket_frames
    from clickrec_platform.settings import PROJECT_ROOT
    from clickrec_platform.sources.rejects import RejectLedger

    events_csv = PROJECT_ROOT / "clickrec_platform_tests" / "fixtures" / "retailrocket" / "events.csv"
    with RejectLedger(tmp_path / "rejects.jsonl") as ledger:
        summary = produce_frames(retailrocket_frames(events_csv, ledger), _sink(stack, kafka_topic, tmp_path),
                                 FastPacer(), progress=False, stop=threading.Event(),
                                 source_rejected=lambda: ledger.summary()["events.csv"]["rejected"])
    tally = ledger.summary()["events.csv"]
    assert summary.delivered == tally["accepted"] > 0
    assert summary.source_rejected == tally["rejected"] > 0
    assert tally["rows_read"] == tally["accepted"] + tally["rejected"]
    assert len((tmp_path / "rejects.jsonl").read_bytes().splitlines()) == tally["rejected"]
    events = [decode(m.value() or b"") for m in consume(stack.kafka_bootstrap_servers, kafka_topic, summary.delivered)]
    assert {e.source for e in events} == {"retailrocket"}
