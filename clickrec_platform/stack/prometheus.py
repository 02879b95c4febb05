"""Prometheus from Debian's package: scrapes the API, the producer, the stream job and the speed layer
on their configured ports, with the alert rules of ``infra/prometheus/alerts.yml``, UI on :9090.

The configuration is written from the settings at each start (``<home>/state/prometheus/prometheus.yml``);
``infra/prometheus/prometheus.yml`` is the compose deployment's, with compose host names. Both use the
same job names, which the alert rules select on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.process import ManagedProcess, ServiceError
from clickrec_platform.stack.service import Health, LocalService

ALERT_RULES = PROJECT_ROOT / "infra" / "prometheus" / "alerts.yml"


def scrape_targets(settings: Settings) -> dict[str, str]:
    """Job name → ``host:port`` of each service whose metrics are scraped (those with a port set)."""
    host = settings.bind_host
    ports = {"prometheus": settings.prometheus_port, "clickrec-api": settings.api_port,
             "clickrec-producer": settings.producer_metrics_port, "clickrec-stream": settings.stream_metrics_port,
             "clickrec-speed-layer": settings.speed_metrics_port}
    return {job: f"{host}:{port}" for job, port in ports.items() if port}


def prometheus_config(settings: Settings) -> dict:
    interval = f"{settings.prometheus_scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"platform": "clickrec"}},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
                           for job, target in scrape_targets(settings).items()],
    }


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise ServiceError("Prometheus not found: run `clickrec setup` (installs Debian's `prometheus` package) "
                           "or `apt-get install prometheus`.")
    return found


class PrometheusService(LocalService):
    name = "prometheus"

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.prometheus_port}"

    @property
    def folder(self) -> Path:
        return self.settings.state_dir / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.folder / "prometheus.yml"

    def prepare(self) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by `clickrec up` from the settings at each start; edits are overwritten.\n"
            + yaml.safe_dump(prometheus_config(self.settings), sort_keys=False))

    def process(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name=self.name,
            argv=lambda: [prometheus_binary(), f"--config.file={self.config_file}",
                          f"--storage.tsdb.path={self.folder / 'data'}",
                          f"--storage.tsdb.retention.time={s.prometheus_retention}",
                          f"--web.listen-address={s.bind_host}:{s.prometheus_port}"],
            state_dir=s.state_dir, ready=self._ready, ports=[(s.bind_host, s.prometheus_port)],
            cmdline_marker="prometheus",
        )

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=3).status_code == 200

    def health(self) -> Health:
        """Ready, its alert rules loaded, and each scrape target's health (a target that is down, such
        as the producer when no live traffic runs, is reported, not counted against Prometheus)."""
        try:
            ready = httpx.get(f"{self.url}/-/ready", timeout=3)
            if ready.status_code != 200:
                return Health(False, f"/-/ready {ready.status_code}")
            targets = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=3).json()
            rules = httpx.get(f"{self.url}/api/v1/rules", params={"type": "alert"}, timeout=3).json()
        except (httpx.HTTPError, ValueError) as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        alerts = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
        firing = [rule["name"] for rule in alerts if rule.get("state") == "firing"]
        jobs = [f"{t['labels']['job']} {t['health']}" for t in
                sorted(targets["data"]["activeTargets"], key=lambda t: t["labels"]["job"])]
        return Health(True, f"targets: {', '.join(jobs) or 'none'}; {len(alerts)} alert rules, "
                            f"firing: {', '.join(firing) or 'none'}")

    def target_health(self) -> dict[str, str]:
        """Job → ``up``/``down``/``unknown`` (not scraped yet) of each active scrape target."""
        targets = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=3).json()
        return {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
