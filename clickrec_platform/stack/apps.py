"""The platform's own web apps as services of the local stack: the recommendation API (`clickrec serve`:
uvicorn workers) and the live dashboard (`clickrec dashboard`: Streamlit, which the command execs in its
own process, so its command line names the dashboard)."""

from __future__ import annotations

import httpx

from clickrec_platform.settings import Settings
from clickrec_platform.stack.service import Health, ServiceSpec, executable, http_health


def _api_url(s: Settings) -> str:
    return f"http://{s.bind_host}:{s.api_port}"


def _dashboard_url(s: Settings) -> str:
    return f"http://{s.bind_host}:{s.dashboard_port}"


def _api_health(s: Settings) -> Health:
    def describe(response: httpx.Response) -> str:
        json = response.headers.get("content-type", "").startswith("application/json")
        body = response.json() if json else {}
        return (f"/health {response.status_code}, database {body.get('database', '?')}, "
                f"{len(body.get('published') or {})} published table(s)")

    return http_health(f"{_api_url(s)}/health", describe)


def _dashboard_health(s: Settings) -> Health:
    return http_health(f"{_dashboard_url(s)}/_stcore/health",
                       lambda r: f"/_stcore/health {r.status_code}, refreshes every {s.dashboard_refresh_seconds:g}s")


API = ServiceSpec(name="api", command=lambda s: [executable("clickrec"), "serve"], probe=_api_health, url=_api_url,
                  port=lambda s: s.api_port, marker="serve")
DASHBOARD = ServiceSpec(name="dashboard", command=lambda s: [executable("clickrec"), "dashboard"],
                        probe=_dashboard_health, url=_dashboard_url, port=lambda s: s.dashboard_port,
                        marker="dashboard")
