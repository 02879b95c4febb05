"""The live dashboard (`clickrec dashboard`: Streamlit) as a service of the local stack."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.service import Health, LocalService


class DashboardService(LocalService):
    name = "dashboard"

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.dashboard_port}"

    def process(self) -> ManagedProcess:
        s = self.settings
        clickrec = Path(sys.executable).with_name("clickrec")
        # `clickrec dashboard` execs Streamlit in the same process, whose command line names the
        # dashboard's app (clickrec_platform/dashboard/app.py).
        return ManagedProcess(
            name=self.name, argv=[str(clickrec), "dashboard"], state_dir=s.state_dir,
            ready=lambda: self.health().ok, ports=[(s.bind_host, s.dashboard_port)], cmdline_marker="dashboard",
        )

    def health(self) -> Health:
        try:
            response = httpx.get(f"{self.url}/_stcore/health", timeout=3)
        except httpx.HTTPError as exc:
            return Health(False, f"{type(exc).__name__}: {exc}")
        return Health(response.status_code == 200,
                      f"/_stcore/health {response.status_code}, refreshes every "
                      f"{self.settings.dashboard_refresh_seconds:g}s")
