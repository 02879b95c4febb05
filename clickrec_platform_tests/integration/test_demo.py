"""`make demo`'s work, end to end at CI size: the real `clickrec demo --events 20000 --days 2` as a process,
in a namespace of its own, so the developer's data, topics, models and services are never touched.

The namespace: a home of its own (pid and log files, so the API, the dashboard and the live traffic it
starts are its own processes, on free ports), a Kafka topic and stream app id, a lake and reference folder,
a Postgres schema, an MLflow experiment and registered model. PostgreSQL, Kafka, MLflow and Dagster are
the running stack's, used as external services (as in a deployment that manages them elsewhere); the
Dagster run is recorded in the platform's instance like any `clickrec materialize`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from clickrec_platform.serving.roles import reader_password
from clickrec_platform.settings import Settings
from clickrec_platform.stack import services
from clickrec_platform.stack.kafka import admin_client
from clickrec_platform.stack.scratch import scratch_process_settings
from clickrec_platform.stack.service import executable
from clickrec_platform_tests.support import free_port, metric_samples

pytestmark = pytest.mark.integration

CLICKREC = executable("clickrec")
EVENTS, DAYS = 20_000, 2
LIVE_RATE = 50  # events/s on average: even at 3 am (0.1x the evening peak) more than one a second
LIVE_WAIT_S = 180  # for the continuous stream job's first micro-batches, on 2 busy cores


@dataclass
class Demo:
    settings: Settings
    env: dict[str, str]

    def clickrec(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([CLICKREC, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def producer_metrics(self) -> str:
        return f"http://127.0.0.1:{self.settings.producer_metrics_port}/metrics"


@pytest.fixture
def demo(stack: Settings, tmp_path: Path) -> Iterator[Demo]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "jars").symlink_to(stack.jars_dir)  # resolved once per machine, by the stack's setup
    tag = f"demo-{uuid.uuid4().hex[:8]}"
    environment = {
        "CLICKREC_HOME": str(home), "CLICKREC_KAFKA_TOPIC": tag, "CLICKREC_STREAM_APP_ID": tag,
        # The stack's servers, found by their addresses; this home manages only what the demo starts.
        "CLICKREC_MANAGED_SERVICES": json.dumps(["api", "dashboard", "prometheus"]),
        "CLICKREC_PROMETHEUS_PORT": str(free_port()),
        "CLICKREC_POSTGRES_PASSWORD": stack.ensure_local_password(),
        "CLICKREC_READER_PASSWORD": reader_password(stack, create=False),
        "DAGSTER_HOME": str(stack.dagster_home_dir),
        "CLICKREC_API_PORT": str(free_port()), "CLICKREC_API_WORKERS": "1",
        "CLICKREC_DASHBOARD_PORT": str(free_port()), "CLICKREC_PRODUCER_METRICS_PORT": str(free_port()),
        "CLICKREC_STREAM_METRICS_PORT": str(free_port()), "CLICKREC_DEMO_LIVE_RATE": str(LIVE_RATE),
        "CLICKREC_SPEED_METRICS_PORT": str(free_port()), "CLICKREC_SPEED_CONSUMER_GROUP": tag,
    }
    with scratch_process_settings(tmp_path, "demo", **environment) as settings:
        demo = Demo(settings, {**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        try:
            yield demo
        finally:
            try:
                # `clickrec down` in this home stops what the demo started, by the pids it recorded; the
                # stack's own servers are external here and left alone.
                down = demo.clickrec("down")
                leftover = [s.name for s in services(settings, on_request=True) if s.managed and s.process().pid()]
            finally:
                for service in services(settings, on_request=True):  # whatever is left, by its pid
                    if service.managed:
                        service.stop()
                admin = admin_client(stack.kafka_bootstrap_servers)
                admin.delete_topics([tag])[tag].result(30)
            assert down.returncode == 0 and not leftover, (down.stdout, down.stderr, leftover)


def test_the_demo_runs_end_to_end_and_leaves_live_traffic_running(demo, capsys):
    started, started_at = time.monotonic(), datetime.now(UTC)
    result = demo.clickrec("demo", "--events", str(EVENTS), "--days", str(DAYS), timeout_s=900)
    demo_s = time.monotonic() - started
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    out = result.stdout

    # Every service answers: the stack's, and the demo's own API, dashboard, stream job, speed layer and live
    # producer.
    status = demo.clickrec("status", "--json")
    rows = {row["service"]: row for row in json.loads(status.stdout)}
    assert status.returncode == 0 and all(row["healthy"] for row in rows.values()), rows
    assert all(rows[name]["pid"] for name in ("stream", "speed-layer", "live-producer")), \
        "live traffic runs in the background"
    # The demo's Prometheus scrapes its API (started minutes ago: scraped many times since).
    assert rows["prometheus"]["pid"] and "clickrec-api up" in rows["prometheus"]["detail"], rows["prometheus"]

    # Real answers from the demo's API, over what this demo published.
    schema = sql.Identifier(demo.settings.gold_schema)
    with psycopg.connect(demo.settings.postgres_dsn()) as conn:
        row = conn.execute(sql.SQL("SELECT visitor_id FROM {}.user_recommendations LIMIT 1").format(schema)).fetchone()
        assert row is not None, "the demo published no recommendations"
        (visitor,) = row
    recommendations = httpx.get(f"{demo.api}/recommendations/{visitor}?k=5", timeout=10).json()
    trending = httpx.get(f"{demo.api}/trending?limit=5&window=7d", timeout=10).json()
    search = httpx.get(f"{demo.api}/search?q=available&limit=3", timeout=10).json()
    assert recommendations["items"] and recommendations["source"] in {"blended", "model"}, recommendations
    assert trending["items"], trending
    assert search["items"], search

    # The live producer keeps delivering, and says so on its metrics endpoint.
    def delivered() -> float:
        return sum(value for (name, _), value in metric_samples(demo.producer_metrics).items()
                   if name == "clickrec_producer_events_delivered_total")

    first = delivered()
    deadline = time.monotonic() + 30
    while (later := delivered()) <= first and time.monotonic() < deadline:
        time.sleep(1)
    assert later > first, f"no live deliveries in 30s ({first})"

    # The speed layer carries them on, into the live tables that the API and the dashboard read: events
    # stamped after the demo began (its history ends yesterday) reach them.
    def latest_event() -> datetime | None:
        with psycopg.connect(demo.settings.postgres_dsn()) as conn:
            row = conn.execute(sql.SQL("SELECT max(ts) FROM {}.live_clickstream_events").format(schema)).fetchone()
            assert row is not None
            return row[0]

    waited = time.monotonic()
    while (latest := latest_event()) is None or latest < started_at:
        assert time.monotonic() - waited < LIVE_WAIT_S, f"no live event in the live tables in {LIVE_WAIT_S}s"
        time.sleep(2)
    live_s = time.monotonic() - waited

    # The demo says where to look and how to stop it.
    for text in (f"{demo.api}/docs", f":{demo.settings.dashboard_port}", demo.producer_metrics, f"{demo.api}/metrics",
                 "make down", "clickrec down", "demo took"):
        assert text in out, text
    with capsys.disabled():
        print(f"\nclickrec demo --events {EVENTS} --days {DAYS}: {demo_s:.0f}s; then {later:,.0f} live events "
              f"delivered, the first in the live tables {live_s:.0f}s after the checks began")
