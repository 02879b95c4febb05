"""The recommendation API (`clickrec serve`: uvicorn workers) as a service of the local stack."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.service import Health, LocalService


class ApiService(LocalService):
    name = "api"

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.api_port}"

    def process(self) -> ManagedProcess:
        s = self.settings
        clickrec = Path(sys.executable).with_name("clickrec")
        return ManagedProcess(
            name=self.name, argv=[str(clickrec), "serve"], state_dir=s.state_dir,
            ready=lambda: self.health().ok, ports=[(s.bind_host, s.api_port)], cmdline_marker="serve",
        )

    def health(self) -> Health:
        try:
            response = httpx.get(f"{self.url}/health", timeout=3)
        except httpx.HTTPError as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        published = body.get("published") or {}
        return Health(response.status_code == 200,
                      f"/health {response.status_code}, database {body.get('database', '?')}, "
                      f"{len(published)} published table(s)")
