"""Live traffic that `clickrec demo` leaves running: a paced producer of generated events stamped now, the
speed layer that keeps the Postgres live tables current within a second, and the stream job in continuous
mode that keeps the lake, so that the live tables, `/trending`, `/recommendations` and the dashboard keep
moving.

They are services of the local stack that only start on request (`clickrec demo`, or `clickrec up
stream speed-layer live-producer`): a plain `clickrec up` and the tests never start a Spark job.
`clickrec down` stops them, `clickrec status` shows them while they run.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from clickrec_platform.settings import Settings
from clickrec_platform.stack.process import pid_alive
from clickrec_platform.stack.service import DeclaredService, Health, ServiceSpec, executable

# Days of generated traffic the live producer has ahead of it: "until stopped", in practice.
LIVE_DAYS = 30


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


def _pid(s: Settings, spec: ServiceSpec) -> int | None:
    return DeclaredService(s, spec).process().pid()


def _running_metrics(s: Settings, spec: ServiceSpec) -> dict[str, float] | Health:
    """A running service's metrics endpoint (its url), or the unhealthy state that says why not."""
    if _pid(s, spec) is None:
        return Health(False, "not running")
    try:
        return scrape_metrics(spec.url(s))
    except httpx.HTTPError as exc:
        return Health(False, f"metrics: {type(exc).__name__}: {exc}")


def _producer_command(s: Settings) -> list[str]:
    return [executable("clickrec"), "produce", "--source", "synthetic", "--mode", "live",
            "--rate", f"{s.demo_live_rate:g}", "--events", str(s.demo_events), "--days", str(LIVE_DAYS),
            "--no-progress", "--metrics", "--metrics-port", str(s.producer_metrics_port)]


def _producer_health(s: Settings) -> Health:
    metrics = _running_metrics(s, LIVE_PRODUCER)
    if isinstance(metrics, Health):
        return metrics
    delivered = metrics.get("clickrec_producer_events_delivered_total", 0)
    failed = metrics.get("clickrec_producer_events_failed_total", 0)
    target = metrics.get("clickrec_producer_target_rate_events_per_second", float("nan"))
    return Health(True, f"{delivered:,.0f} delivered, {failed:,.0f} failed, target {target:.1f} ev/s "
                        f"now (average {s.demo_live_rate:g}), topic {s.kafka_topic}")


# `clickrec produce --mode live`: the demo's world (`demo_events`, seed 42), traffic from now on that averages
# `demo_live_rate` events/s over the day's curve; healthy while it serves its metrics.
LIVE_PRODUCER = ServiceSpec(
    name="live-producer", command=_producer_command, probe=_producer_health,
    url=lambda s: f"http://{s.bind_host}:{s.producer_metrics_port}/metrics", port=lambda s: s.producer_metrics_port,
    marker="produce", on_request=True)


def _stream_started(s: Settings) -> bool:
    pid = _pid(s, STREAM_JOB)
    return pid is not None and bool(_java_children(pid))


def _stream_health(s: Settings) -> Health:
    pid = _pid(s, STREAM_JOB)
    if pid is None:
        return Health(False, "not running")
    if not _java_children(pid):
        return Health(False, "running, but its Spark driver (JVM) is not")
    return Health(True, f"Spark driver running, ingest every {s.stream_ingest_trigger_seconds:g}s; "
                        f"{_last_commit(s)}")


def _last_commit(s: Settings) -> str:
    """How long ago a query of this app id last committed a micro-batch (from its checkpoints)."""
    root = Path(s.lake_uri) / "_checkpoints" / s.stream_app_id
    if "://" in s.lake_uri or not root.is_dir():
        return "no local checkpoint to read"
    commits = [path.stat().st_mtime for path in root.glob("*/commits/*") if path.name.isdigit()]
    if not commits:
        return "no micro-batch committed yet"
    return f"last micro-batch committed {time.time() - max(commits):.0f}s ago"


# `clickrec stream` in continuous mode: Kafka → silver → gold and the Postgres live tables. `down` signals
# the driver alone: a clean stop, not a failure with an alert.
STREAM_JOB = ServiceSpec(
    name="stream", command=lambda s: [executable("clickrec"), "stream"], probe=_stream_health,
    url=lambda s: f"{s.kafka_topic} → {s.lake_uri}", port=lambda s: s.stream_metrics_port or None, marker="stream",
    ready=_stream_started, on_request=True, signal_leader_only=True)


def _speed_url(s: Settings) -> str:
    port = s.speed_metrics_port
    return f"http://{s.bind_host}:{port}/metrics" if port else f"{s.kafka_topic} → Postgres"


def _speed_health(s: Settings) -> Health:
    if not s.speed_metrics_port:
        pid = _pid(s, SPEED_LAYER)
        return Health(pid is not None, "running (no metrics port to ask)" if pid else "not running")
    metrics = _running_metrics(s, SPEED_LAYER)
    if isinstance(metrics, Health):
        return metrics
    last = metrics.get("clickrec_speed_last_commit_timestamp_seconds", 0.0)
    committed = f"last commit {time.time() - last:.0f}s ago" if last else "no batch committed yet"
    return Health(True, f"lag {metrics.get('clickrec_speed_kafka_lag_records', 0):,.0f} records, {committed}, "
                        f"{metrics.get('clickrec_speed_records_total', 0):,.0f} records consumed "
                        f"({metrics.get('clickrec_speed_rejected_total', 0):,.0f} rejected), "
                        f"group {s.speed_consumer_group}")


# `clickrec speed`: one speed-layer consumer (Kafka → Postgres live tables); healthy while it serves its
# metrics, which say how far behind the topic's end it is and when it last committed.
SPEED_LAYER = ServiceSpec(
    name="speed-layer", command=lambda s: [executable("clickrec"), "speed", "--metrics-port",
                                           str(s.speed_metrics_port or 0)],
    probe=_speed_health, url=_speed_url, port=lambda s: s.speed_metrics_port or None, marker="speed",
    on_request=True)


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
