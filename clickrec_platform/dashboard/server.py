"""Running the dashboard: the `streamlit run` command line that `clickrec dashboard` replaces itself with."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from clickrec_platform.settings import Settings

APP_PATH = Path(__file__).resolve().with_name("app.py")

# The MLflow client retries a failed request for minutes by default; the dashboard would rather say
# at once that the registry is not there (data.require_tracking_server checks first, this bounds the rest).
MLFLOW_CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def streamlit_argv(settings: Settings, *, host: str | None = None, port: int | None = None) -> list[str]:
    """``python -m streamlit run app.py`` bound to the settings' address and dashboard port: headless,
    no file watcher (nothing reloads in production), no usage statistics sent anywhere."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host or settings.bind_host,
        "--server.port", str(port or settings.dashboard_port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
    ]


def dashboard_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The dashboard's environment: this one, with the MLflow client's retries bounded unless set."""
    return {**MLFLOW_CLIENT_ENVIRONMENT, **environ}


def exec_dashboard(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Become the Streamlit server (same pid, so `clickrec up`'s pid file and signals reach it)."""
    argv = streamlit_argv(settings, host=host, port=port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, dashboard_environment(os.environ))
