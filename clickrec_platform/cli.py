"""`clickrec`: one command line for the whole platform."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clickrec_platform.settings import get_settings
from clickrec_platform.stack import services
from clickrec_platform.stack.process import ServiceError, log_tail
from clickrec_platform.stack.setup import run_setup

app = typer.Typer(help="clickrec: clickstream recommendation lakehouse.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)

ServiceNames = Annotated[list[str] | None, typer.Argument(help="Services (default: all).")]


@app.callback()
def _global_options(
    topology: Annotated[str | None, typer.Option(
        help="local (one broker, Spark in the driver, a local lake) or cluster (3 Kafka nodes, a Spark standalone "
             "master and workers, the lake on S3Proxy); default CLICKREC_TOPOLOGY, else local.")] = None,
) -> None:
    """Options for every command; set in the environment so the processes a command starts see them too."""
    if topology is not None:
        if topology not in ("local", "cluster"):
            raise typer.BadParameter("local or cluster", param_hint="--topology")
        os.environ["CLICKREC_TOPOLOGY"] = topology
        get_settings.cache_clear()


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@app.command()
def setup() -> None:
    """Install what the platform needs on this machine (Debian packages, Kafka and Spark jars)."""
    started = time.monotonic()
    try:
        run_setup(get_settings(), report=lambda line: console.print(f"[cyan]setup[/] {line}"))
    except ServiceError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"setup took {time.monotonic() - started:.1f}s")


@app.command()
def up(names: ServiceNames = None) -> None:
    """Start the local stack (idempotent): PostgreSQL, Kafka, MLflow, Dagster webserver and daemon."""
    settings = get_settings()
    started_at = time.monotonic()
    try:
        run_setup(settings, report=lambda line: console.print(f"[cyan]setup[/] {line}"))
        for service in services(settings, names):
            t0 = time.monotonic()
            with console.status(f"starting {service.name}…"):
                started = service.start()
            state = "started" if started else ("already running" if service.managed else "external")
            console.print(f"[green]✓[/] {service.name:<18} {state:<16} {service.url}  "
                          f"({time.monotonic() - t0:.1f}s)")
    except (ServiceError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"stack up in {time.monotonic() - started_at:.1f}s")


def _fit_session_split_to(days: int) -> None:
    """A short demo history cannot hold the session protocol's default 2 days of test and 2 of
    validation before some training: unless set, each gets a third of the history (at most 2 days).
    The Dagster assets read the settings from the environment, hence the variables."""
    share = min(2.0, days / 3)
    for name in ("CLICKREC_SESSION_TEST_DAYS", "CLICKREC_SESSION_VALIDATION_DAYS"):
        os.environ.setdefault(name, f"{share:g}")
    get_settings.cache_clear()


@app.command()
def demo(
    events: Annotated[int | None, typer.Option(
        help="Generated events of history to stream through the lakehouse (0: skip; default CLICKREC_DEMO_EVENTS, "
             "200,000).")] = None,
    days: Annotated[int | None, typer.Option(
        help="Days of history they span, up to yesterday (default CLICKREC_DEMO_DAYS, 7).")] = None,
    live: Annotated[bool, typer.Option(
        help="Leave live traffic running in the background: a producer of events stamped now, the speed layer "
             "and the stream job in continuous mode (`clickrec down` stops them).")] = True,
) -> None:
    """Run the platform end to end on the local stack: services up, generated traffic through Kafka
    into the lake (bronze → silver → gold) and Postgres, the Dagster graph (features → models →
    publish), answers from the API; then live traffic left running, and where to look."""
    started = time.monotonic()
    settings = get_settings()
    events = settings.demo_events if events is None else events
    days = settings.demo_days if days is None else days
    up(None)
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
        sql("SELECT sum(bronze_rows) AS bronze, sum(silver_rows) AS silver, sum(quarantined_rows) AS quarantined, "
            "sum(duplicate_rows) AS duplicates FROM ops.stream_batches", output="table", limit=5)
        sql("SELECT event, event_count, first_event_at, last_event_at FROM gold.event_statistics "
            "ORDER BY event_count DESC", output="table", limit=10)
        console.rule("materialising the Dagster graph (reference data → features → models → publish)")
        _fit_session_split_to(days)
        report = materialize_and_report(settings)
        _print_run_report(report)
        if not report.success:
            raise _fail("the Dagster run failed: see above, or the run in the Dagster UI")
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
    status(as_json=False)


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
            raise _fail(str(exc)) from exc
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


@app.command()
def down(names: ServiceNames = None) -> None:
    """Stop what `clickrec up` or `clickrec demo` started, live traffic included (data is kept)."""
    try:
        chosen = services(get_settings(), names, on_request=True)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    for service in reversed(chosen):
        stopped = service.stop()
        console.print(f"{service.name:<18} {'stopped' if stopped else 'not running'}")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
           ) -> None:
    """Each service: whether it runs, where, and whether it answers. Exit 1 if any is unhealthy (live
    traffic, started only on request, counts only while it runs)."""
    rows = []
    for service in services(get_settings(), on_request=True):
        pid = service.process().pid() if service.managed else None
        if service.on_request and pid is None:
            rows.append({"service": service.name, "managed": True, "pid": None, "url": service.url,
                         "healthy": None, "detail": f"not running (`clickrec demo` or `clickrec up {service.name}`)"})
            continue
        health = service.health()
        rows.append({"service": service.name, "managed": service.managed, "pid": pid,
                     "url": service.url, "healthy": health.ok, "detail": health.detail})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table("service", "process", "url", "health", "detail")
        labels = {True: "[green]healthy[/]", False: "[red]down[/]", None: "[dim]off[/]"}
        for row in rows:
            process = (f"pid {row['pid']}" if row["pid"] else "stopped") if row["managed"] else "external"
            table.add_row(row["service"], process, row["url"], labels[row["healthy"]], row["detail"])
        console.print(table)
    if any(row["healthy"] is False for row in rows):
        raise typer.Exit(code=1)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Service name, e.g. kafka.")],
    lines: Annotated[int, typer.Option("-n", "--lines")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
) -> None:
    """Show the end of a service's log (`-f` to follow)."""
    try:
        (service,) = services(get_settings(), [name])
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    path = service.process().log_file
    typer.echo(log_tail(path, lines))
    if follow:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            while True:
                chunk = handle.read()
                if chunk:
                    typer.echo(chunk.decode(errors="replace"), nl=False)
                else:
                    time.sleep(0.5)


class Source(StrEnum):
    synthetic = "synthetic"
    retailrocket = "retailrocket"


class Mode(StrEnum):
    fast = "fast"
    rate = "rate"
    replay = "replay"
    live = "live"


Events = Annotated[int, typer.Option(help="How many events to generate (approximate).")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same events and ids.")]
Days = Annotated[int, typer.Option(help="Days of traffic.")]
StartDate = Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (default 2015-05-04).")]


def _generator_config(events: int, seed: int, days: int, start_date: str | None):
    from clickrec_platform.producer.sources import parse_date
    from clickrec_platform.sources.generator import GeneratorConfig

    kwargs = {"start_date": parse_date(start_date)} if start_date else {}
    try:
        return GeneratorConfig(events=events, seed=seed, days=days, **kwargs)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for the RetailRocket-shaped files.")] = Path(
        "data/generated/synthetic"),
    events: Events = 1_000_000, seed: Seed = 42, days: Days = 14, start_date: StartDate = None,
) -> None:
    """Write RetailRocket-shaped files (events, item properties, category tree) and the planted truth."""
    from clickrec_platform.sources.generator import write_retailrocket_files

    summary = write_retailrocket_files(_generator_config(events, seed, days, start_date), out)
    for name, rows in summary.rows_written.items():
        console.print(f"{rows:>12,}  {out / name}")
    console.print(f"{summary.events:,} events ({summary.events_by_type}) in {summary.seconds:.1f}s: "
                  f"{summary.events_per_second:,.0f} events/s")


@app.command()
def produce(
    source: Annotated[Source, typer.Option(help="Generated events, or RetailRocket files.")] = Source.synthetic,
    input_path: Annotated[Path | None, typer.Option("--input", help="RetailRocket events.csv or its folder.")
                          ] = None,
    mode: Annotated[Mode, typer.Option(help="fast: as fast as possible; rate: --rate events/s; replay: event "
                                            "time sped up by --speedup; live: generated traffic in wall-clock "
                                            "time, averaging --rate events/s.")] = Mode.fast,
    rate: Annotated[float, typer.Option(help="Events/s for --mode rate (average for live).")] = 100.0,
    speedup: Annotated[float, typer.Option(help="Event-time speed-up for --mode replay.")] = 3600.0,
    events: Events = 1_000_000, seed: Seed = 42, days: Days = 14, start_date: StartDate = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    topic: Annotated[str | None, typer.Option(help="Topic (default: the settings' event topic).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    metrics: Annotated[bool | None, typer.Option(
        help="Serve Prometheus metrics at /metrics while producing (default CLICKREC_PRODUCER_METRICS).")
                       ] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Port of the metrics endpoint (default CLICKREC_PRODUCER_METRICS_PORT, 9464).")] = None,
) -> None:
    """Send events to Kafka: keyed by visitor, idempotent, acks=all; failures to a dead-letter file.
    While it runs, Prometheus metrics on CLICKREC_BIND_HOST:9464/metrics (produced, delivered and failed
    events by type, delivery errors, target rate, acknowledgement latency, messages in flight)."""
    from contextlib import ExitStack

    from clickrec_platform.producer.kafka_sink import BrokerUnreachable, KafkaEventSink
    from clickrec_platform.producer.metrics import ProducerCollector, serve_producer_metrics
    from clickrec_platform.producer.pacing import FastPacer, RatePacer, ReplayPacer
    from clickrec_platform.producer.run import produce_frames
    from clickrec_platform.producer.sources import live_config, live_frames, live_pacer, retailrocket_frames
    from clickrec_platform.sources.generator import generate_events
    from clickrec_platform.sources.rejects import RejectLedger

    settings = get_settings()
    topic = topic or settings.kafka_topic
    metrics = settings.producer_metrics if metrics is None else metrics
    run_dir = settings.state_dir / "producer"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    ledger = RejectLedger(run_dir / f"rejects-{stamp}.jsonl")
    try:
        sink = KafkaEventSink(settings, topic, run_dir / f"dead-letter-{stamp}.jsonl", track_deliveries=metrics)
    except BrokerUnreachable as exc:
        raise _fail(str(exc)) from exc
    config = _generator_config(events, seed, days, start_date)
    if mode is Mode.live:
        now_ms = int(time.time() * 1000)
        traffic = live_config(config, rate, days)
        frames = live_frames(traffic, now_ms)
        pacer = live_pacer(traffic, now_ms)
    else:
        if source is Source.retailrocket:
            if input_path is None:
                raise _fail("--source retailrocket needs --input (events.csv or its folder)")
            frames = retailrocket_frames(input_path, ledger)
        else:
            frames = generate_events(config)
        pacer = (RatePacer(rate) if mode is Mode.rate
                 else ReplayPacer(speedup) if mode is Mode.replay else FastPacer())
    def rejected() -> int:
        return sum(t["rejected"] for t in ledger.summary().values())

    try:
        with ExitStack() as serving:
            if metrics:
                port = settings.producer_metrics_port if metrics_port is None else metrics_port
                try:
                    url = serving.enter_context(serve_producer_metrics(
                        ProducerCollector(sink, pacer, rejected), settings.bind_host, port))
                    err.print(f"metrics: {url}", highlight=False)
                except OSError as exc:  # the events matter more than their metrics: go on without
                    err.print(f"[yellow]warning:[/] no metrics endpoint: {settings.bind_host}:{port} "
                              f"({exc.strerror or exc}); choose another with --metrics-port, or --no-metrics",
                              highlight=False)
            summary = produce_frames(frames, sink, pacer, limit=limit, progress=progress,
                                     stop=threading.Event(), source_rejected=rejected)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from exc
    finally:
        ledger.close()
    report = summary.as_dict() | {"rejects_path": str(ledger.rejects_path) if summary.source_rejected else None}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        console.print(f"sent {summary.delivered:,} (acknowledged) of {summary.accepted:,} accepted, "
                      f"failed {summary.failed:,}, rejected at source {summary.source_rejected:,}, "
                      f"{summary.events_per_second:,.0f} events/s in {summary.seconds:.1f}s"
                      + (" (stopped early)" if summary.stopped_early else ""))
        for key in ("dead_letter_path", "rejects_path"):
            if report[key]:
                console.print(f"{key.replace('_', ' ')}: {report[key]}")
    if summary.failed:
        raise typer.Exit(code=2)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def stream(ctx: typer.Context) -> None:
    """Run the streaming job (Kafka → bronze → silver/quarantine → gold, Postgres live tables).

    Options: --available-now (catch up, then stop), --trigger SECONDS (the live query: Kafka → Postgres
    live tables), --ingest-trigger SECONDS, --gold-trigger SECONDS, --max-offsets-per-trigger N,
    --max-files-per-trigger N. Stops cleanly on SIGTERM/Ctrl-C.
    """
    from spark_jobs.clickstream_stream import main as stream_main

    stream_main(list(ctx.args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def speed(ctx: typer.Context) -> None:
    """Run one speed-layer consumer (Kafka → Postgres live tables within a second, exactly once).

    Options: --group NAME (consumers of one group share the partitions), --max-batch N,
    --window-refresh SECONDS, --metrics-port P (0: none), --log-every SECONDS. Stops on SIGTERM/Ctrl-C.
    """
    from clickrec_platform.speed.run import main as speed_main

    speed_main(list(ctx.args))


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the lake's tables, e.g. 'SELECT count(*) FROM silver.events'.")],
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show at most (table format).")] = 50,
) -> None:
    """Query the Delta tables with DuckDB; every table is a view named <layer>.<name>."""
    import duckdb

    from clickrec_platform.lake.duck import lake_connection

    if output not in ("table", "csv", "json"):
        raise _fail(f"unknown --format {output!r}: use table, csv or json")
    # DuckDB runs a query when its rows are read, so reading them is inside the try too: any failure
    # is one line naming the problem, not a traceback.
    try:
        con = lake_connection(get_settings())
        result = con.sql(query)
        if result is None:
            return
        if output == "csv":
            text = result.df().to_csv(index=False)
        elif output == "json":
            text = result.df().to_json(orient="records", date_format="iso", default_handler=str) + "\n"
        else:
            table = Table(*result.columns)
            for row in result.fetchmany(limit):
                table.add_row(*("" if v is None else str(v) for v in row))
    except (duckdb.Error, OSError, ValueError) as exc:
        raise _fail(one_line_error(exc)) from None
    if output == "table":
        console.print(table)
    else:
        typer.echo(text, nl=False)


def one_line_error(exc: BaseException) -> str:
    """``Kind: message`` on one line: DuckDB's messages span lines (the query, a caret under the fault)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'failed'}"


@app.command()
def optimize(
    vacuum_hours: Annotated[int | None, typer.Option(help="Also VACUUM files older than this many hours.")] = None,
) -> None:
    """Compact the small files streaming leaves in bronze, silver, quarantine and ops.stream_batches (Delta
    OPTIMIZE); the Dagster schedule `optimize_lake_every_30_minutes` runs the same when they need it."""
    from clickrec_platform.lake.maintenance import compact

    for line in compact(get_settings(), vacuum_hours=vacuum_hours):
        console.print(line)


@app.command()
def materialize(
    select: Annotated[str | None, typer.Option(
        help="Dagster asset selection, e.g. 'group:features', 'key:delta/gold/interactions+' "
             "(default: the whole training graph).")] = None,
    partition: Annotated[str | None, typer.Option(
        help="Event date, or a range FIRST...LAST, run in one go (default: every date in silver.events).")
                         ] = None,
) -> None:
    """Materialise assets of the Dagster graph from the command line, recorded in the Dagster instance
    (the run shows up in the UI like one launched there)."""
    from clickrec_platform.orchestration import PartitionRange, materialize_and_report

    settings = get_settings()
    try:
        report = materialize_and_report(settings, select, PartitionRange.parse(partition) if partition else None)
    except (RuntimeError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _print_run_report(report)
    if not report.success:
        raise typer.Exit(code=1)


def _print_run_report(report) -> None:
    table = Table(title=f"run {report.run_id} ({report.partitions}): {report.seconds:.1f}s")
    for column in ("asset", "seconds", "rows", "checks"):
        table.add_column(column)
    for step in report.steps:
        table.add_row(step.asset, f"{step.seconds:.1f}", f"{step.rows:,}" if step.rows is not None else "",
                      step.checks_summary, style=None if step.ok else "red")
    console.print(table)
    for failure in report.failures:
        err.print(f"[red]{failure}[/]", highlight=False)


bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench, name="bench")


@bench.command("produce")
def bench_produce(
    events: Annotated[int, typer.Option(help="Events per round.")] = 2_000_000,
    repeats: Annotated[int, typer.Option(help="Rounds of each measurement.")] = 3,
) -> None:
    """Acknowledged events/s to the broker, and the serialisation ceiling from the same run."""
    from clickrec_platform.benchmarks.produce import run_produce_benchmark
    from clickrec_platform.producer.kafka_sink import BrokerUnreachable, check_broker

    settings = get_settings()
    try:
        check_broker(settings, settings.kafka_topic)
    except BrokerUnreachable as exc:
        raise _fail(str(exc)) from exc
    for line in run_produce_benchmark(settings, events, repeats).lines():
        console.print(line, highlight=False)


@bench.command("stream-catchup")
def bench_stream_catchup(
    events: Annotated[int, typer.Option(help="Events to ingest.")] = 2_000_000,
    floors: Annotated[bool, typer.Option(help="Then time each stage alone on the same events.")] = True,
    topology: Annotated[str | None, typer.Option(
        help="'cluster': the same events on the local topology, then on the cluster one (`clickrec --topology "
             "cluster up` first), side by side, with events/s per executor core.")] = None,
) -> None:
    """Catch-up ingest Kafka → silver (+ gold): events/s of an available-now run on a fresh lake, per
    batch, and the floors: each stage every event goes through, timed alone."""
    from clickrec_platform.benchmarks.stream import run_catchup_benchmark, run_topology_comparison

    if topology not in (None, "local", "cluster"):
        raise typer.BadParameter("local or cluster", param_hint="--topology")
    lines = run_topology_comparison(events) if topology == "cluster" else \
        run_catchup_benchmark(get_settings(), events, floors)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)  # a table's rows stay whole in a narrow terminal


@bench.command("speed")
def bench_speed(
    probes: Annotated[int, typer.Option(help="Probe events to time, per live path.")] = 40,
    background_rate: Annotated[float, typer.Option(help="Background events/s while probing.")] = 500.0,
    throughput_events: Annotated[int, typer.Option(
        help="Events for one consumer's throughput (0: skip).")] = 500_000,
    spark_trigger: Annotated[float, typer.Option(help="The Spark live query's trigger interval in seconds.")] = 1.0,
    spark: Annotated[bool, typer.Option(help="Measure the Spark live query beside the speed layer.")] = True,
    linger_ms: Annotated[list[float] | None, typer.Option(
        help="The speed layer's linger (ms); repeat to compare several (default CLICKREC_SPEED_LINGER_MS).")] = None,
) -> None:
    """The live path: produce → visible in Postgres p50/p95 and CPU per 1,000 events, speed layer and Spark
    live query side by side; one speed-layer consumer's throughput."""
    from clickrec_platform.benchmarks.live_path import run_speed_benchmark

    for line in run_speed_benchmark(get_settings(), probes, background_rate, throughput_events, spark_trigger,
                                    spark=spark, lingers_ms=tuple(linger_ms or ())):
        console.print(line, highlight=False)


@bench.command("soak")
def bench_soak(
    minutes: Annotated[int, typer.Option(help="How long to run, sampling once a minute.")] = 30,
    rate: Annotated[float, typer.Option(help="Live traffic, events/s (each stamped when sent).")] = 300.0,
    optimize_every: Annotated[int, typer.Option(
        help="Minutes between the maintenance schedule's checks (compaction when due); 0: never.")] = 10,
    warmup: Annotated[int | None, typer.Option(
        help="Minutes left out of the trends (default: a third of the run, at most 5).")] = None,
) -> None:
    """Live traffic against the continuous stream job and the speed layer (a scratch namespace): memory of every
    service, Kafka lag, produce → Postgres p95 and Delta file counts once a minute, then each one's trend;
    exit 1 when one grows beyond its bound."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from clickrec_platform.benchmarks.soak import Bounds, report_lines, run_soak, sample_header, sample_line

    header_shown = []
    with Progress(TextColumn("soak"), BarColumn(), TextColumn("{task.completed}/{task.total} min"),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("soak", total=minutes)

        def on_sample(sample) -> None:
            if not header_shown:
                bar.console.print(sample_header(sample), highlight=False, soft_wrap=True)
                header_shown.append(True)
            bar.console.print(sample_line(sample), highlight=False, soft_wrap=True)
            bar.advance(task)

        try:
            report = run_soak(get_settings(), minutes, rate, optimize_every=optimize_every, bounds=Bounds(),
                              warmup_minutes=warmup, on_sample=on_sample,
                              say=lambda line: bar.console.print(line, highlight=False, soft_wrap=True))
        except RuntimeError as exc:
            raise _fail(str(exc)) from exc
    for line in report_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if report.failed:
        raise _fail("growth beyond its bound: " + ", ".join(t.series for t in report.failed))


@bench.command("graph")
def bench_graph(
    events: Annotated[int, typer.Option(help="Generated events (RetailRocket has 2.76M).")] = 2_760_000,
    days: Annotated[int, typer.Option(help="Days they span (RetailRocket: 138).")] = 138,
    select: Annotated[str | None, typer.Option(help="Dagster selection (default: the whole graph).")] = None,
) -> None:
    """The Dagster graph (reference data, features, training sets, models) in one run: seconds per asset."""
    from clickrec_platform.benchmarks.graph import run_graph_benchmark

    for line in run_graph_benchmark(events, days, select):
        console.print(line, highlight=False)


@bench.command("sessions")
def bench_sessions(
    events: Events = 400_000, days: Days = 27, seed: Seed = 42,
    test_days: Annotated[float, typer.Option(help="Sessions ending in the last N days are test.")] = 2.0,
    session_ids: Annotated[bool, typer.Option(help="Also cut sessions at the generator's session ids.")] = False,
    models: Annotated[list[str] | None, typer.Option("--model", help="Only these (repeatable).")] = None,
) -> None:
    """Session-based next-item models (SKNN, V-SKNN, STAN, SR, baselines) on generated sessions:
    HR/MRR/NDCG@20 with bootstrap CIs, fit and predict seconds (issue #18's protocol)."""
    from clickrec_platform.benchmarks.sessions import run
    from clickrec_platform.recommend.session.protocol import SessionProtocol

    protocol = SessionProtocol(split_on_session_id=session_ids, test_days=test_days, validation_days=0)
    try:
        result = run(events, days, seed, protocol, models)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    for line in result.lines():
        console.print(line, highlight=False, soft_wrap=True)  # a table: never wrapped


@app.command()
def serve(
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes (default CLICKREC_API_WORKERS).")
                       ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default CLICKREC_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CLICKREC_API_PORT).")] = None,
) -> None:
    """Run the recommendation API in the foreground (uvicorn): docs at /docs, metrics at /metrics.

    First creates what it reads where missing (the read-only role, the gold tables, grants)."""
    import psycopg

    from clickrec_platform.serving.api.server import run_server

    settings = get_settings()
    console.print(f"API on http://{host or settings.bind_host}:{port or settings.api_port} "
                  f"(docs /docs, metrics /metrics), schema {settings.gold_schema}")
    try:
        run_server(settings, host=host, port=port, workers=workers)
    except (psycopg.Error, RuntimeError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc


@app.command()
def dashboard(
    host: Annotated[str | None, typer.Option(help="Address to bind (default CLICKREC_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CLICKREC_DASHBOARD_PORT).")] = None,
) -> None:
    """Run the live dashboard in the foreground (Streamlit): event counts, live windows, trending and
    popular items, traffic by hour, the funnel, the champion model; redrawn every
    CLICKREC_DASHBOARD_REFRESH_SECONDS."""
    from clickrec_platform.dashboard.server import exec_dashboard

    settings = get_settings()
    console.print(f"dashboard on http://{host or settings.bind_host}:{port or settings.dashboard_port} "
                  f"(refreshes every {settings.dashboard_refresh_seconds:g}s), schema {settings.gold_schema}")
    exec_dashboard(settings, host=host, port=port)


@bench.command("api")
def bench_api(
    visitors: Annotated[int, typer.Option(help="Visitors with recommendations in the test data.")] = 100_000,
    items: Annotated[int, typer.Option(help="Items in the test catalogue.")] = 50_000,
    duration: Annotated[float, typer.Option(help="Seconds of load per endpoint.")] = 10.0,
    connections: Annotated[int, typer.Option(help="Concurrent connections of the load generator.")] = 16,
    workers: Annotated[int | None, typer.Option(help="uvicorn workers (default CLICKREC_API_WORKERS).")] = None,
    only: Annotated[str | None, typer.Option(help="Only endpoints containing this text, e.g. recommendations.")
                    ] = None,
    session_model: Annotated[bool, typer.Option(help="Register a session champion (V-SKNN) the workers load "
                                                     "and blend in.")] = True,
    with_live_traffic: Annotated[bool, typer.Option(
        help="Then measure the same endpoints again while the demo's live traffic runs (a live producer, the "
             "speed layer and the continuous stream job, started as the stack starts them), side by side.")] = False,
    live_rate: Annotated[float, typer.Option(
        help="Events/s of that live traffic (default: the demo's live producer at its evening peak).")] = 200.0,
    batch_nice: Annotated[int | None, typer.Option(
        help="Niceness of the stream job for this run (default CLICKREC_BATCH_NICE; 0 to compare).")] = None,
) -> None:
    """Load-test the API with wrk on loopback, against generated data in a scratch schema:
    requests/s and p50/p95/p99 per endpoint; with --with-live-traffic, also beside live traffic."""
    from clickrec_platform.benchmarks.api import LiveTrafficOptions, run_api_benchmark

    settings = get_settings()
    live = LiveTrafficOptions(rate=live_rate, batch_nice=batch_nice) if with_live_traffic else None
    try:
        for line in run_api_benchmark(settings, visitors=visitors, items=items, duration_s=duration,
                                      connections=connections, workers=workers or settings.api_workers,
                                      only=only, session_model=session_model, live=live):
            console.print(line, highlight=False, soft_wrap=True)
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc


if __name__ == "__main__":
    app()
