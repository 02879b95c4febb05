"""`clickrec`'s commands (typer); what they print is in `terminal`, the demo's steps in `demo`.

Over 400 lines on purpose: this is the CLI's whole surface, one typer function per command with its
options declared in its signature (typer's way), so `clickrec --help` and this file read the same. Each
command's work lives in the package it belongs to; what stays here is options and wiring."""

from __future__ import annotations

import json
import os
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from clickrec_platform.cli.demo import run_demo
from clickrec_platform.cli.terminal import (
    console,
    err,
    fail,
    print_query,
    print_run_report,
    print_status,
    start_stack,
)
from clickrec_platform.settings import get_settings
from clickrec_platform.stack import services
from clickrec_platform.stack.process import ServiceError, log_tail
from clickrec_platform.stack.setup import run_setup

app = typer.Typer(help="clickrec: clickstream recommendation lakehouse.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

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


@app.command()
def setup() -> None:
    """Install what the platform needs on this machine (Debian packages, Kafka and Spark jars)."""
    started = time.monotonic()
    try:
        run_setup(get_settings(), report=lambda line: console.print(f"[cyan]setup[/] {line}"))
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    console.print(f"setup took {time.monotonic() - started:.1f}s")


@app.command()
def up(names: ServiceNames = None) -> None:
    """Start the local stack (idempotent): PostgreSQL, Kafka, MLflow, Dagster webserver and daemon."""
    start_stack(get_settings(), names)


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
    settings = get_settings()
    run_demo(settings, settings.demo_events if events is None else events,
             settings.demo_days if days is None else days, live)


@app.command()
def down(names: ServiceNames = None) -> None:
    """Stop what `clickrec up` or `clickrec demo` started, live traffic included (data is kept)."""
    try:
        chosen = services(get_settings(), names, on_request=True)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    for service in reversed(chosen):
        stopped = service.stop()
        console.print(f"{service.name:<18} {'stopped' if stopped else 'not running'}")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
           ) -> None:
    """Each service: whether it runs, where, and whether it answers. Exit 1 if any is unhealthy (live
    traffic, started only on request, counts only while it runs)."""
    if not print_status(get_settings(), as_json):
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
        raise fail(str(exc)) from exc
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

    start = parse_date(start_date)
    try:
        if start is None:
            return GeneratorConfig(events=events, seed=seed, days=days)
        return GeneratorConfig(events=events, seed=seed, days=days, start_date=start)
    except ValueError as exc:
        raise fail(str(exc)) from exc


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
    from clickrec_platform.producer.pacing import FastPacer, Pacer, RatePacer, ReplayPacer
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
        raise fail(str(exc)) from exc
    config = _generator_config(events, seed, days, start_date)
    pacer: Pacer
    if mode is Mode.live:
        now_ms = int(time.time() * 1000)
        traffic = live_config(config, rate, days)
        frames = live_frames(traffic, now_ms)
        pacer = live_pacer(traffic, now_ms)
    else:
        if source is Source.retailrocket:
            if input_path is None:
                raise fail("--source retailrocket needs --input (events.csv or its folder)")
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
        raise fail(str(exc)) from exc
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
    print_query(get_settings(), query, output, limit)


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
        raise fail(str(exc)) from exc
    print_run_report(report)
    if not report.success:
        raise typer.Exit(code=1)


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
        raise fail(str(exc)) from exc
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

    header_shown: list[bool] = []
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
            raise fail(str(exc)) from exc
    for line in report_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if report.failed:
        raise fail("growth beyond its bound: " + ", ".join(t.series for t in report.failed))


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
        raise fail(str(exc)) from exc
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
        raise fail(f"{type(exc).__name__}: {exc}") from exc


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
        raise fail(str(exc)) from exc
