"""Kafka fault drills on real services: kill -9 of a broker while `clickrec produce` and the continuous stream job
run against it.

- The local topology's single broker: killed, kept down while the producer accepts thousands more events, then
  restarted. The drill runs a broker of its own (a home under tmp, free ports): the shared stack's is never killed.
- The cluster topology's Kafka: the node that leads the controller quorum (and some of the topic's partitions)
  is killed; the two others go on (RF 3, min.insync.replicas 2) with no restart; then it is restarted and
  rejoins every partition's ISR.

After each: the producer delivered every event it accepted and failed none; an independent read of the topic
finds each of them once; bronze holds every record once; silver holds every event once. Each drill prints its
figures (pytest -s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import KafkaException

from clickrec_platform.events.codec import decode
from clickrec_platform.lake.tables import BRONZE_CLICKSTREAM, SILVER_EVENTS
from clickrec_platform.settings import Settings
from clickrec_platform.stack import services
from clickrec_platform.stack.kafka import KafkaNodeService, KafkaService, admin_client
from clickrec_platform.stack.process import ServiceError, pid_alive
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform.stack.service import executable
from clickrec_platform_tests.support import (
    consume,
    delta_rows,
    free_port,
    metric_samples,
    stream_process,
    wait_for,
)
from clickrec_platform_tests.webhook import webhook_receiver

pytestmark = pytest.mark.integration

CLICKREC = executable("clickrec")
EVENTS = 15_000  # asked of the generator, which makes about as many (its sessions end where they end)
RATE = 750  # events/s: 20 s of traffic, so that the broker dies mid-run
KILL_AFTER = 4_000  # events sent when the broker is killed: both the producer and the (warm) stream job are busy
OUTAGE_EVENTS = 4_000  # the single broker stays down while the producer accepts this many more, at least


@pytest.fixture(scope="module")
def scratch_broker(stack: Settings, tmp_path_factory) -> Iterator[KafkaService]:
    """A single-node broker of the drills' own, as the local topology runs it: its own home (pid, log and data
    files) and free ports; the stack's PostgreSQL serves the stream job."""
    home = tmp_path_factory.mktemp("kafka-home")
    (home / "jars").symlink_to(stack.jars_dir)  # resolved once per machine, by the stack's setup
    broker = KafkaService(stack.model_copy(update={
        "home": home, "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "kafka_controller_port": free_port(),
        "kafka_heap": "512m"}))
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Traffic:
    """Live traffic on a scratch namespace: the stream job in continuous mode and `clickrec produce` at RATE."""

    settings: Settings
    job: subprocess.Popen
    job_log: Path
    producer: subprocess.Popen
    producer_out: Path
    producer_metrics: str
    job_metrics: str

    def alive(self) -> None:
        """Fails, with its log, if the stream job or the producer died."""
        assert self.job.poll() is None, f"the stream job exited {self.job.returncode}:\n{tail(self.job_log)}"
        assert self.producer.poll() in (None, 0), f"the producer exited {self.producer.returncode}:\n" \
                                                  f"{tail(self.producer_out.with_suffix('.err'))}"

    def produced(self) -> int:
        """Events the producer has accepted so far (handed to its Kafka client)."""
        return int(sum(v for (name, _), v in metric_samples(self.producer_metrics).items()
                       if name == "clickrec_producer_events_produced_total"))

    def query(self, metric: str) -> float:
        """One of the stream job's series for its ingest query (``clickrec_stream_query_up``, ``…_failures_total``)."""
        return metric_samples(self.job_metrics).get((metric, (("query", "ingest"),)), 0.0)

    def in_flight(self) -> int:
        return int(metric_samples(self.producer_metrics)[("clickrec_producer_in_flight_messages", ())])

    def silver(self) -> int:
        return delta_rows(SILVER_EVENTS.path(self.settings), "SELECT count(*) FROM t")[0][0]

    def landed(self, delivered: int) -> bool:
        """Whether silver and bronze (written after silver, in the same ingest batch) hold every delivered event."""
        return self.silver() >= delivered and delta_rows(
            BRONZE_CLICKSTREAM.path(self.settings), "SELECT count(*) FROM t")[0][0] >= delivered

    def summary(self) -> dict:
        """The producer's own account, once it finished."""
        assert self.producer.wait(timeout=300) == 0, tail(self.producer_out.with_suffix(".err"))
        return json.loads(self.producer_out.read_text().strip().splitlines()[-1])

    def stop_job(self) -> None:
        # A clean stop: the driver stops its queries. Not to the process group: the JVM would shut Spark down
        # under the queries at the same time.
        os.kill(self.job.pid, signal.SIGTERM)
        assert self.job.wait(timeout=180) == 0, tail(self.job_log)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextmanager
def live_traffic(settings: Settings, tmp_path: Path, **job_environment: str) -> Iterator[Traffic]:
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    job_port, producer_port, job_log = free_port(), free_port(), tmp_path / "stream.log"
    job_metrics = f"http://127.0.0.1:{job_port}/metrics"
    # Gold (silver → gold tables) is not what a broker fault touches: it runs once at the start, not again.
    job = stream_process(settings, job_log, "--ingest-trigger", "1", "--gold-trigger", "3600",
                         "--max-offsets-per-trigger", "20000", metrics_port=job_port, **kafka, **job_environment)
    producer = None
    try:
        # Warm: the first micro-batch of a fresh JVM costs tens of seconds on 2 busy cores.
        wait_for("the stream job's first ingest batch", lambda: _ingest_batches(job_metrics) >= 1, timeout_s=300,
                 interval_s=1, alive=lambda: _alive(job, job_log))
        out = tmp_path / "producer.out"
        with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
            producer = subprocess.Popen(
                [CLICKREC, "produce", "--topic", settings.kafka_topic, "--mode", "rate", "--rate", str(RATE),
                 "--events", str(EVENTS), "--days", "2", "--seed", "17", "--no-progress", "--json",
                 "--metrics", "--metrics-port", str(producer_port)],
                env={**os.environ, **kafka}, stdout=stdout, stderr=stderr, start_new_session=True)
        traffic = Traffic(settings, job, job_log, producer, out, f"http://127.0.0.1:{producer_port}/metrics",
                          job_metrics)
        wait_for("the producer's metrics", lambda: _answers(traffic.produced), timeout_s=60, alive=traffic.alive)
        yield traffic
    finally:
        for process in (job, producer):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def _ingest_batches(url: str) -> float:
    try:
        return metric_samples(url).get(("clickrec_stream_batches_total", (("query", "ingest"),)), 0)
    except Exception:  # noqa: BLE001 - the endpoint comes up with the job
        return 0


def _answers(read) -> bool:
    try:
        read()
    except Exception:  # noqa: BLE001 - not serving yet
        return False
    return True


def _alive(job: subprocess.Popen, log: Path) -> None:
    assert job.poll() is None, f"the stream job exited {job.returncode}:\n{tail(log)}"


def kill_9(pid: int) -> float:
    """SIGKILL, then wait until the process is gone; returns when it was killed (monotonic)."""
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(f"pid {pid} to die", lambda: not pid_alive(pid), timeout_s=30)
    return killed_at


def reconcile(traffic: Traffic) -> dict[str, int]:
    """Producer delivered = an independent read of the topic = bronze = silver, each event once."""
    s, summary = traffic.settings, traffic.summary()
    delivered = summary["delivered"]
    assert summary["accepted"] == delivered > EVENTS * 0.9 and summary["failed"] == 0, summary
    messages = consume(s.kafka_bootstrap_servers, s.kafka_topic, expected=delivered, timeout_s=120)
    ids = {decode(m.value() or b"").event_id for m in messages}
    assert len(ids) == len(messages) == delivered  # none lost, none written twice
    (bronze,) = delta_rows(BRONZE_CLICKSTREAM.path(s), 'SELECT count(*), count(DISTINCT (partition, "offset")) FROM t')
    assert bronze == (len(messages), len(messages))
    (silver,) = delta_rows(SILVER_EVENTS.path(s), "SELECT count(*), count(DISTINCT event_id) FROM t")
    assert silver == (delivered, delivered)
    assert {r[0] for r in delta_rows(SILVER_EVENTS.path(s), "SELECT event_id FROM t")} == ids
    return {"accepted": summary["accepted"], "delivered": summary["delivered"], "failed": summary["failed"],
            "consumed": len(messages), "bronze": bronze[0], "silver": silver[0]}


def test_single_broker_killed_mid_produce_and_mid_stream_then_restarted(scratch_broker, tmp_path):
    """The broker stays down until Spark's Kafka source has given up (3 tries of 5 s here, of 60 s by default):
    the job waits for Kafka and starts the query again from its checkpoint once it answers."""
    broker = scratch_broker
    with webhook_receiver() as (hook, alerts), scratch_settings(broker.settings, "drill") as s, live_traffic(
            s, tmp_path, CLICKREC_STREAM_KAFKA_TIMEOUT_S="5", CLICKREC_ALERT_WEBHOOK_URL=hook) as traffic:
        wait_for(f"the producer to send {KILL_AFTER:,} events", lambda: traffic.produced() >= KILL_AFTER,
                 timeout_s=120, alive=traffic.alive)
        produced_at_kill = traffic.produced()
        killed_at = kill_9(broker.process().pid())
        try:
            wait_for(f"the producer to accept {OUTAGE_EVENTS:,} more events and the ingest query to fail for want "
                     "of Kafka, the broker gone",
                     lambda: traffic.produced() >= produced_at_kill + OUTAGE_EVENTS
                     and traffic.query("clickrec_stream_query_up") == 0, timeout_s=180, alive=traffic.alive)
            waiting = traffic.in_flight()
        finally:
            restarting_at = time.monotonic()
            broker.start()
        back_at = time.monotonic()
        assert waiting >= OUTAGE_EVENTS  # they waited in the producer's queue, unacknowledged

        summary = traffic.summary()
        wait_for("silver and bronze to hold every delivered event", lambda: traffic.landed(summary["delivered"]),
                 timeout_s=300, interval_s=1, alive=traffic.alive)
        caught_up_at = time.monotonic()
        assert traffic.query("clickrec_stream_query_up") == 1 and traffic.query("clickrec_stream_query_failures_total") == 1
        traffic.stop_job()
        figures = reconcile(traffic)
    titles = [alert["text"].splitlines()[0] for alert in alerts]
    assert titles == ["*clickrec stream job: Kafka unreachable, query ingest waits for it*",
                      "*clickrec stream job: Kafka answers, query ingest resumed*"], titles
    print(f"\nsingle-broker drill: broker down {back_at - killed_at:.1f}s (restart {back_at - restarting_at:.1f}s), "
          f"{waiting:,} events waiting in the producer when it came back; {figures}; silver and bronze complete "
          f"{caught_up_at - back_at:.1f}s after the broker was back; the ingest query failed once and was restarted")


def test_cluster_node_killed_mid_produce_and_mid_stream_goes_on_then_rejoins(stack, kafka_cluster, tmp_path):
    on_cluster = stack.model_copy(update={"kafka_bootstrap_servers": kafka_cluster.kafka_bootstrap_servers,
                                          "kafka_replication_factor": kafka_cluster.kafka_replication_factor})
    nodes = {node.node_id: node for node in cast(list[KafkaNodeService], services(kafka_cluster, ["kafka"]))}
    admin = admin_client(kafka_cluster.kafka_bootstrap_servers)
    with scratch_settings(on_cluster, "drill") as s, live_traffic(s, tmp_path) as traffic:

        def partitions() -> dict:
            return admin.list_topics(s.kafka_topic, timeout=10).topics[s.kafka_topic].partitions

        def every_partition(condition) -> bool | None:
            """``condition`` holds for every partition; None while the metadata request times out (the
            admin client may still be asking the node just killed, or a controller mid-election)."""
            try:
                current = partitions()
            except KafkaException:
                return None
            return all(condition(p) for p in current.values())

        wait_for(f"the producer to send {KILL_AFTER:,} events", lambda: traffic.produced() >= KILL_AFTER,
                 timeout_s=120, alive=traffic.alive)
        victim = nodes[1].quorum_leader()
        led = sorted(p.id for p in partitions().values() if p.leader == victim)
        assert led, f"node {victim}, the quorum leader, leads none of {s.kafka_topic}'s partitions"
        victim_pid = nodes[victim].process().pid()
        assert victim_pid is not None, f"node {victim} is not running"
        killed_at = kill_9(victim_pid)
        try:
            wait_for(f"new leaders for partitions {led} of node {victim}",
                     lambda: every_partition(lambda p: p.leader not in (victim, -1)), timeout_s=120)
            failover_s = time.monotonic() - killed_at
            survivor = next(node for node_id, node in nodes.items() if node_id != victim)
            new_quorum_leader = wait_for(f"a quorum leader other than node {victim}, asked through a survivor",
                                         lambda: _quorum_leader_other_than(victim, survivor), timeout_s=120,
                                         interval_s=1)

            # No restart needed: the two others take every write (acks=all, 2 in sync) and serve the job.
            summary = traffic.summary()
            wait_for("silver and bronze to hold every delivered event, one node down",
                     lambda: traffic.landed(summary["delivered"]),
                     timeout_s=300, interval_s=1, alive=traffic.alive)
            caught_up_s = time.monotonic() - killed_at
            assert not nodes[victim].process().is_running()
            assert traffic.query("clickrec_stream_query_failures_total") == 0  # the job never noticed
        finally:
            restarting_at = time.monotonic()
            nodes[victim].start()
        wait_for(f"node {victim} back in the ISR of every partition of {s.kafka_topic}",
                 lambda: every_partition(lambda p: sorted(p.isrs) == [1, 2, 3]), timeout_s=180)
        rejoined_s = time.monotonic() - restarting_at
        assert nodes[victim].health().ok
        traffic.stop_job()
        figures = reconcile(traffic)
    print(f"\ncluster drill: killed node {victim} (quorum leader, leading partitions {led}); new partition leaders "
          f"{failover_s:.1f}s after, quorum leader now node {new_quorum_leader}; every event delivered and in "
          f"silver {caught_up_s:.1f}s after the kill with the node still down; {figures}; restarted, back in every "
          f"ISR in {rejoined_s:.1f}s")


def _quorum_leader_other_than(victim: int, node: KafkaNodeService) -> int | None:
    """The quorum leader named by ``node`` when it is not ``victim``; None while an election is under way."""
    try:
        leader = node.quorum_leader()
    except ServiceError:
        return None
    return leader if leader != victim else None
