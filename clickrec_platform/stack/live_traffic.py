"""Live traffic that `clickrec demo` leaves running: a paced producer of generated events stamped now, the
speed layer that keeps the Postgres live tables current within a second, and the stream job in continuous
mode that keeps the lake, so that the live tables, `/trending`, `/recommendations` and the dashboard keep
moving.

They are services of the local stack that only start on request (`clickrec demo`, or `clickrec up
stream speed-layer live-producer`): a plain `clickrec up` and the tests never start a Spark job.
`clickrec down` stops them, `clickrec status` shows them while they run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from clickrec_platform.stack.process import ManagedProcess, pid_alive
from clickrec_platform.stack.service import Health, LocalService

# Days of generated traffic the live producer has ahead of it: "until stopped", in practice.
LIVE_DAYS = 30


def _clickrec() -> str:
    return str(Path(sys.executable).with_name("clickrec"))


def scrape_metrics(url: str, timeout_s: float = 3.0) -> dict[str, float]:
    """A Prometheus metrics endpoint (the live producer's, the speed layer's) as {series name (labels
    summed): value}."""
    response = httpx.get(url, timeout=timeout_s)
    response.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def _running_metrics(service: LocalService) -> dict[str, float] | Health:
    """A running service's metrics endpoint (its ``url``), or the unhealthy state that says why not."""
    if service.process().pid() is None:
        return Health(False, "not running")
    try:
        return scrape_metrics(service.url)
    except httpx.HTTPError as exc:
        return Health(False, f"metrics: {type(exc).__name__}: {exc}")


class LiveProducerService(LocalService):
    """`clickrec produce --mode live`: the demo's world (`demo_events`, seed 42), traffic from now on that
    averages `demo_live_rate` events/s over the day's curve; healthy while it serves its metrics."""

    name = "live-producer"
    on_request = True

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.producer_metrics_port}/metrics"

    def process(self) -> ManagedProcess:
        s = self.settings
        argv = [_clickrec(), "produce", "--source", "synthetic", "--mode", "live",
                "--rate", f"{s.demo_live_rate:g}", "--events", str(s.demo_events), "--days", str(LIVE_DAYS),
                "--no-progress", "--metrics", "--metrics-port", str(s.producer_metrics_port)]
        return ManagedProcess(name=self.name, argv=argv, state_dir=s.state_dir, ready=lambda: self.health().ok,
                              ports=[(s.bind_host, s.producer_metrics_port)], cmdline_marker="produce")

    def health(self) -> Health:
        metrics = _running_metrics(self)
        if isinstance(metrics, Health):
            return metrics
        delivered = metrics.get("clickrec_producer_events_delivered_total", 0)
        failed = metrics.get("clickrec_producer_events_failed_total", 0)
        target = metrics.get("clickrec_producer_target_rate_events_per_second", float("nan"))
        return Health(True, f"{delivered:,.0f} delivered, {failed:,.0f} failed, target {target:.1f} ev/s "
                            f"now (average {self.settings.demo_live_rate:g}), topic {self.settings.kafka_topic}")


class StreamJobService(LocalService):
    """`clickrec stream` in continuous mode: Kafka → silver → gold and the Postgres live tables."""

    name = "stream"
    on_request = True

    @property
    def url(self) -> str:
        return f"{self.settings.kafka_topic} → {self.settings.lake_uri}"

    def process(self) -> ManagedProcess:
        s = self.settings
        metrics_port = s.stream_metrics_port
        return ManagedProcess(
            name=self.name, argv=[_clickrec(), "stream"],
            state_dir=s.state_dir, ready=self._spark_started,
            ports=[(s.bind_host, metrics_port)] if metrics_port else [], cmdline_marker="stream",
            signal_leader_only=True,  # `down` is a clean stop, not a failure with an alert
        )

    def _spark_started(self) -> bool:
        pid = self.process().pid()
        return pid is not None and bool(_java_children(pid))

    def health(self) -> Health:
        pid = self.process().pid()
        if pid is None:
            return Health(False, "not running")
        if not _java_children(pid):
            return Health(False, "running, but its Spark driver (JVM) is not")
        return Health(True, f"Spark driver running, ingest every {self.settings.stream_ingest_trigger_seconds:g}s; "
                            f"{self._last_commit()}")

    def _last_commit(self) -> str:
        """How long ago a query of this app id last committed a micro-batch (from its checkpoints)."""
        root = Path(self.settings.lake_uri) / "_checkpoints" / self.settings.stream_app_id
        if "://" in self.settings.lake_uri or not root.is_dir():
            return "no local checkpoint to read"
        commits = [path.stat().st_mtime for path in root.glob("*/commits/*") if path.name.isdigit()]
        if not commits:
            return "no micro-batch committed yet"
        return f"last micro-batch committed {time.time() - max(commits):.0f}s ago"


class SpeedLayerService(LocalService):
    """`clickrec speed`: one speed-layer consumer (Kafka → Postgres live tables); healthy while it serves its
    metrics, which say how far behind the topic's end it is and when it last committed."""

    name = "speed-layer"
    on_request = True

    @property
    def url(self) -> str:
        port = self.settings.speed_metrics_port
        return f"http://{self.settings.bind_host}:{port}/metrics" if port else f"{self.settings.kafka_topic} → Postgres"

    def process(self) -> ManagedProcess:
        s = self.settings
        port = s.speed_metrics_port
        return ManagedProcess(name=self.name, argv=[_clickrec(), "speed", "--metrics-port", str(port or 0)],
                              state_dir=s.state_dir, ready=lambda: self.health().ok,
                              ports=[(s.bind_host, port)] if port else [], cmdline_marker="speed")

    def health(self) -> Health:
        if not self.settings.speed_metrics_port:
            pid = self.process().pid()
            return Health(pid is not None, "running (no metrics port to ask)" if pid else "not running")
        metrics = _running_metrics(self)
        if isinstance(metrics, Health):
            return metrics
        last = metrics.get("clickrec_speed_last_commit_timestamp_seconds", 0.0)
        committed = f"last commit {time.time() - last:.0f}s ago" if last else "no batch committed yet"
        return Health(True, f"lag {metrics.get('clickrec_speed_kafka_lag_records', 0):,.0f} records, {committed}, "
                            f"{metrics.get('clickrec_speed_records_total', 0):,.0f} records consumed "
                            f"({metrics.get('clickrec_speed_rejected_total', 0):,.0f} rejected), "
                            f"group {self.settings.speed_consumer_group}")


def _java_children(pid: int) -> list[int]:
    """Processes named java whose parent is ``pid`` (PySpark's driver JVM, launched by the job)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        if name == "java" and len(fields) > 1 and fields[1] == str(pid) and pid_alive(int(stat.parent.name)):
            children.append(int(stat.parent.name))
    return children
