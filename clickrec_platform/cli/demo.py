"""`clickrec demo`: the platform end to end on the local stack, as plain steps the command calls: services
up, generated traffic through Kafka into the lake (bronze → silver → gold) and Postgres, the Dagster graph
(features → models → publish), answers from the API; then live traffic left running, and where to look."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from clickrec_platform.cli.terminal import (
    console,
    err,
    fail,
    print_query,
    print_run_report,
    print_status,
    start_stack,
)
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.stack import services
from clickrec_platform.stack.process import ServiceError


def run_demo(settings: Settings, events: int, days: int, live: bool = True) -> None:
    """The demo's steps with ``events`` generated events over ``days`` days (0 events: skip to live traffic)."""
    started = time.monotonic()
    start_stack(settings)
    if events > 0:
        from clickrec_platform.orchestration import materialize_and_report
        from clickrec_platform.producer.run import produce_generated
        from clickrec_platform.sources.generator import GeneratorConfig
        from spark_jobs.clickstream_stream import StreamOptions, run

        _stop_live_traffic(settings)  # a continuous job of an earlier demo would share the checkpoints
        # The same world every time, its traffic over the last `days` days (a re-run on the same day
        # repeats the same events, which the stream job deduplicates).
        start = datetime.now(UTC).date() - timedelta(days=days)
        console.rule(f"producing {events:,} generated events to Kafka ({days} days from {start})")
        summary = produce_generated(settings, GeneratorConfig(events=events, days=days, start_date=start))
        console.print(f"sent {summary.delivered:,} events at {summary.events_per_second:,.0f}/s")
        console.rule("streaming Kafka → bronze → silver → gold (available-now)")
        seconds = run(settings, StreamOptions(available_now=True,
                                             max_offsets_per_trigger=settings.stream_max_offsets_per_trigger,
                                             max_files_per_trigger=settings.stream_max_files_per_trigger))
        console.print("seconds per query: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        console.rule("what landed")
        print_query(settings, "SELECT sum(bronze_rows) AS bronze, sum(silver_rows) AS silver, "
                    "sum(quarantined_rows) AS quarantined, sum(duplicate_rows) AS duplicates FROM ops.stream_batches",
                    limit=5)
        print_query(settings, "SELECT event, event_count, first_event_at, last_event_at FROM gold.event_statistics "
                    "ORDER BY event_count DESC", limit=10)
        console.rule("materialising the Dagster graph (reference data → features → models → publish)")
        _fit_session_split_to(days)
        report = materialize_and_report(settings)
        print_run_report(report)
        if not report.success:
            raise fail("the Dagster run failed: see above, or the run in the Dagster UI")
        console.rule("a few answers from the recommendation API")
        _show_api_answers(settings)
    if live:
        console.rule("live traffic, left running in the background")
        _start_live_traffic(settings.model_copy(update={"demo_events": events or settings.demo_events}))
    api = f"http://{settings.bind_host}:{settings.api_port}"
    console.rule("where to look")
    console.print(f"Dagster UI  {settings.dagster_url}\nMLflow UI   {settings.tracking_uri}\n"
                  f"API docs    {api}/docs\n"
                  f"Dashboard   http://{settings.bind_host}:{settings.dashboard_port}\n"
                  f"Kafka       {settings.kafka_bootstrap_servers} (topic {settings.kafka_topic})\n"
                  f"PostgreSQL  {settings.postgres_host}:{settings.postgres_port} "
                  f"(databases {settings.postgres_db}, {settings.dagster_db}, {settings.mlflow_db}; "
                  f"schema {settings.gold_schema})\n"
                  f"Lake        {settings.lake_uri}  (clickrec sql \"SELECT count(*) FROM silver.events\")\n"
                  f"Metrics     {api}/metrics (API)" + "".join(
                      f", {url} ({what})" for what, url in _live_metrics_urls(settings) if live),
                  highlight=False, soft_wrap=True)
    if live:
        console.print("Live traffic keeps the live tables, /trending and the dashboard moving until stopped: "
                      "[bold]make down[/] (or [bold]clickrec down[/]) stops it with the stack; "
                      "[bold]clickrec down live-producer speed-layer stream[/] stops only the live traffic.", highlight=False)
    console.print(f"demo took {time.monotonic() - started:.0f}s")
    print_status(settings)


def _fit_session_split_to(days: int) -> None:
    """A short demo history cannot hold the session protocol's default 2 days of test and 2 of
    validation before some training: unless set, each gets a third of the history (at most 2 days).
    The Dagster assets read the settings from the environment, hence the variables."""
    share = min(2.0, days / 3)
    for name in ("CLICKREC_SESSION_TEST_DAYS", "CLICKREC_SESSION_VALIDATION_DAYS"):
        os.environ.setdefault(name, f"{share:g}")
    get_settings.cache_clear()


def _live_metrics_urls(settings) -> list[tuple[str, str]]:
    urls = [("live producer", f"http://{settings.bind_host}:{settings.producer_metrics_port}/metrics")]
    if settings.speed_metrics_port:
        urls.append(("speed layer", f"http://{settings.bind_host}:{settings.speed_metrics_port}/metrics"))
    if settings.stream_metrics_port:
        urls.append(("stream job", f"http://{settings.bind_host}:{settings.stream_metrics_port}/metrics"))
    return urls


def _stop_live_traffic(settings) -> None:
    for service in reversed(services(settings, on_request=True)):
        if service.on_request and service.stop():
            console.print(f"stopped {service.name}: live traffic of an earlier demo (its stream job would share "
                          "this run's checkpoints)")


def _start_live_traffic(settings) -> None:
    """The on-request services (stream job, live producer): started, ready, left running."""
    for service in services(settings, on_request=True):
        if not service.on_request:
            continue
        t0 = time.monotonic()
        try:
            with console.status(f"starting {service.name}…"):
                started = service.start()
        except ServiceError as exc:
            raise fail(str(exc)) from exc
        console.print(f"[green]✓[/] {service.name:<18} {'started' if started else 'already running':<16} "
                      f"{service.url}  ({time.monotonic() - t0:.1f}s)", highlight=False)


def _show_api_answers(settings) -> None:
    """Real answers from the running API, for a visitor who has published recommendations."""
    import httpx
    import psycopg
    from psycopg import sql as pgsql

    base = f"http://{settings.bind_host}:{settings.api_port}"
    with psycopg.connect(settings.postgres_dsn()) as conn:
        row = conn.execute(pgsql.SQL("SELECT visitor_id FROM {}.user_recommendations ORDER BY visitor_id LIMIT 1")
                           .format(pgsql.Identifier(settings.gold_schema))).fetchone()
    paths = [f"/recommendations/{row[0] if row else 1}?k=5", "/trending?limit=5", "/popular-products?limit=5",
             "/search?q=available&limit=3"]
    for path in paths:
        try:
            response = httpx.get(base + path, timeout=10)
            console.print(f"GET {path} → {response.status_code}\n{response.text[:600]}", highlight=False)
        except httpx.HTTPError as exc:
            err.print(f"GET {path}: {exc}", highlight=False)
