"""Prometheus: the alert rules checked and unit-tested by promtool (every rule firing and not firing),
the local configuration written from the settings, and the managed service scraping real targets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack import STACK, DeclaredService, services
from clickrec_platform.stack.prometheus import ALERT_RULES, PROMETHEUS, prometheus_config, target_health
from clickrec_platform_tests.support import free_port

RULE_TESTS = PROJECT_ROOT / "infra" / "prometheus" / "alerts_test.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run `clickrec setup` (installs Debian's `prometheus` package)"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_alert_rules_are_valid():
    checked = promtool("check", "rules", ALERT_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rule_unit_tests_pass():
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_rule_is_tested_firing_and_not_firing():
    rules = {rule["alert"] for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]
             for rule in group["rules"] if "alert" in rule}
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert len(rules) >= 12
    assert rules - firing == set(), "alert rules without a firing case"
    assert rules - quiet == set(), "alert rules without a not-firing case"
    assert (firing | quiet) - rules == set(), "cases for rules that do not exist"


def settings_for(tmp_path: Path, **ports: Any) -> Settings:  # ports: int | None, as Settings takes them
    return Settings(home=tmp_path, managed_services=["prometheus"], prometheus_scrape_interval_s=1, **ports)


def test_the_local_configuration_follows_the_settings_and_is_valid(tmp_path):
    s = settings_for(tmp_path, prometheus_port=19090, api_port=18000, producer_metrics_port=19464,
                     stream_metrics_port=None, speed_metrics_port=19466)
    config = prometheus_config(s)
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    # Job names as in infra/prometheus/prometheus.yml: the alert rules select on them.
    assert targets == {"prometheus": ["127.0.0.1:19090"], "clickrec-api": ["127.0.0.1:18000"],
                       "clickrec-producer": ["127.0.0.1:19464"], "clickrec-speed-layer": ["127.0.0.1:19466"]}
    compose_jobs = {job["job_name"] for job in yaml.safe_load(
        (PROJECT_ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    assert set(targets) | {"clickrec-stream"} == compose_jobs
    DeclaredService(s, PROMETHEUS).prepare()
    checked = promtool("check", "config", s.state_dir / "prometheus" / "prometheus.yml")  # rule files included
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_is_a_service_that_up_starts():
    assert PROMETHEUS in STACK
    assert "prometheus" in Settings.model_fields["managed_services"].default


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server interface
        body = b"# TYPE clickrec_api_requests_total counter\nclickrec_api_requests_total{status=\"200\"} 3\n"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_managed_service_scrapes_its_targets_and_status_shows_their_health(tmp_path):
    api = ThreadingHTTPServer(("127.0.0.1", free_port()), _Metrics)  # stands in for the API's /metrics
    threading.Thread(target=api.serve_forever, daemon=True).start()
    s = settings_for(tmp_path, prometheus_port=free_port(), api_port=api.server_address[1],
                     producer_metrics_port=free_port(), stream_metrics_port=None, speed_metrics_port=free_port())
    (service,) = services(s, ["prometheus"])
    assert isinstance(service, DeclaredService) and service.spec is PROMETHEUS
    try:
        assert service.start() is True
        deadline = time.monotonic() + 60
        expected = {"prometheus": "up", "clickrec-api": "up", "clickrec-producer": "down",
                    "clickrec-speed-layer": "down"}
        while (health := target_health(s)) != expected:
            assert time.monotonic() < deadline, f"targets never scraped as expected: {health}"
            time.sleep(0.5)
        detail = service.health()
        assert detail.ok and "clickrec-api up" in detail.detail and "clickrec-producer down" in detail.detail
        assert "12 alert rules" in detail.detail

        environment = {**os.environ, "CLICKREC_HOME": str(tmp_path), "CLICKREC_MANAGED_SERVICES": '["prometheus"]',
                       **{f"CLICKREC_{k.upper()}": str(v) for k, v in s.model_dump(include={
                           "prometheus_port", "api_port", "producer_metrics_port", "speed_metrics_port"}).items()}}
        shown = subprocess.run([str(Path(sys.executable).parent / "clickrec"), "status", "--json"],
                               capture_output=True, text=True, timeout=120, env=environment)
        row = next(r for r in json.loads(shown.stdout) if r["service"] == "prometheus")
        assert row["healthy"] and row["pid"] == service.process().pid()
        assert "clickrec-api up" in row["detail"] and "clickrec-speed-layer down" in row["detail"], row
    finally:
        service.stop()
        api.shutdown()
    assert service.process().pid() is None
