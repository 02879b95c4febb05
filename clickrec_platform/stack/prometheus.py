"""Prometheus from Debian's package: scrapes the API, the producer, the stream job and the speed layer
on their configured ports, with the alert rules of ``infra/prometheus/alerts.yml``, UI on :9090.

The configuration is written from the settings at each start (``<home>/state/prometheus/prometheus.yml``);
``infra/prometheus/prometheus.yml`` is the compose deployment's, with compose host names. Both use the
same job names, which the alert rules select on.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.process import installed
from clickrec_platform.stack.service import Health, ServiceSpec

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
    return installed("prometheus", "Prometheus not found: run `clickrec setup` (installs Debian's `prometheus` "
                                   "package) or `apt-get install prometheus`.")


def prometheus_url(s: Settings) -> str:
    return f"http://{s.bind_host}:{s.prometheus_port}"


def _folder(s: Settings) -> Path:
    return s.state_dir / "prometheus"


def _prepare(s: Settings) -> None:
    (_folder(s) / "data").mkdir(parents=True, exist_ok=True)
    (_folder(s) / "prometheus.yml").write_text(
        "# Written by `clickrec up` from the settings at each start; edits are overwritten.\n"
        + yaml.safe_dump(prometheus_config(s), sort_keys=False))


def _command(s: Settings) -> list[str]:
    return [prometheus_binary(), f"--config.file={_folder(s) / 'prometheus.yml'}",
            f"--storage.tsdb.path={_folder(s) / 'data'}", f"--storage.tsdb.retention.time={s.prometheus_retention}",
            f"--web.listen-address={s.bind_host}:{s.prometheus_port}"]


def _ready(s: Settings) -> bool:
    return httpx.get(f"{prometheus_url(s)}/-/ready", timeout=3).status_code == 200


def _health(s: Settings) -> Health:
    """Ready, its alert rules loaded, and each scrape target's health (a target that is down, such
    as the producer when no live traffic runs, is reported, not counted against Prometheus)."""
    url = prometheus_url(s)
    try:
        ready = httpx.get(f"{url}/-/ready", timeout=3)
        if ready.status_code != 200:
            return Health(False, f"/-/ready {ready.status_code}")
        targets = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=3).json()
        rules = httpx.get(f"{url}/api/v1/rules", params={"type": "alert"}, timeout=3).json()
    except (httpx.HTTPError, ValueError) as exc:
        return Health(False, f"{type(exc).__name__}: {exc}")
    alerts = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
    firing = [rule["name"] for rule in alerts if rule.get("state") == "firing"]
    jobs = [f"{t['labels']['job']} {t['health']}" for t in
            sorted(targets["data"]["activeTargets"], key=lambda t: t["labels"]["job"])]
    return Health(True, f"targets: {', '.join(jobs) or 'none'}; {len(alerts)} alert rules, "
                        f"firing: {', '.join(firing) or 'none'}")


def target_health(s: Settings) -> dict[str, str]:
    """Job → ``up``/``down``/``unknown`` (not scraped yet) of each active scrape target."""
    targets = httpx.get(f"{prometheus_url(s)}/api/v1/targets", params={"state": "active"}, timeout=3).json()
    return {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}


PROMETHEUS = ServiceSpec(name="prometheus", command=_command, probe=_health, url=prometheus_url,
                         port=lambda s: s.prometheus_port, marker="prometheus", prepare=_prepare, ready=_ready)
