"""Running the API: `clickrec serve` prepares the database, then runs uvicorn in the foreground."""

from __future__ import annotations

import os
import shutil

import psycopg

from clickrec_platform.serving.api.metrics import MULTIPROCESS_ENV
from clickrec_platform.serving.gold_tables import prepare_gold_schema
from clickrec_platform.settings import Settings

APP_FACTORY = "clickrec_platform.serving.api.app:app_from_environment"


def prepare_database(settings: Settings) -> None:
    """As the platform's owner role: the read-only role, the gold tables readers expect, grants."""
    with psycopg.connect(settings.postgres_dsn(), autocommit=True, connect_timeout=10) as conn:
        prepare_gold_schema(conn, settings)


def run_server(settings: Settings, *, host: str | None = None, port: int | None = None,
               workers: int | None = None, log_level: str = "info") -> None:
    """Serve the API until interrupted (uvicorn with httptools and uvloop, no access log)."""
    import uvicorn

    prepare_database(settings)
    workers = workers or settings.api_workers
    if workers > 1:
        # Each worker is a process of its own: they share metrics through files in this folder.
        metrics_dir = settings.state_dir / "api-metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ[MULTIPROCESS_ENV] = str(metrics_dir)
    uvicorn.run(APP_FACTORY, factory=True, host=host or settings.bind_host, port=port or settings.api_port,
                workers=workers, http="httptools", loop="uvloop", access_log=False, log_level=log_level,
                timeout_graceful_shutdown=5)
