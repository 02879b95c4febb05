"""`clickrec`: one command line for the whole platform."""

from __future__ import annotations

import json
import time
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


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
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


@app.command()
def demo() -> None:
    """Run the platform end to end on the local stack (today: bring it up and show where everything is)."""
    up(None)
    status(as_json=False)
    settings = get_settings()
    console.print(f"\nDagster UI  {settings.dagster_url}\nMLflow UI   {settings.tracking_uri}\n"
                  f"Kafka       {settings.kafka_bootstrap_servers} (topic {settings.kafka_topic})\n"
                  f"PostgreSQL  {settings.postgres_host}:{settings.postgres_port} "
                  f"(databases {settings.postgres_db}, {settings.dagster_db}, {settings.mlflow_db})\n"
                  f"Lake        {settings.lake_uri}")


@app.command()
def down(names: ServiceNames = None) -> None:
    """Stop what `clickrec up` started (data is kept)."""
    try:
        chosen = services(get_settings(), names)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    for service in reversed(chosen):
        stopped = service.stop()
        console.print(f"{service.name:<18} {'stopped' if stopped else 'not running'}")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
           ) -> None:
    """Each service: whether it runs, where, and whether it answers. Exit 1 if any is unhealthy."""
    rows = []
    for service in services(get_settings()):
        pid = service.process().pid() if service.managed else None
        health = service.health()
        rows.append({"service": service.name, "managed": service.managed, "pid": pid,
                     "url": service.url, "healthy": health.ok, "detail": health.detail})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table("service", "process", "url", "health", "detail")
        for row in rows:
            process = (f"pid {row['pid']}" if row["pid"] else "stopped") if row["managed"] else "external"
            table.add_row(row["service"], process, row["url"],
                          "[green]healthy[/]" if row["healthy"] else "[red]down[/]", row["detail"])
        console.print(table)
    if not all(row["healthy"] for row in rows):
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


if __name__ == "__main__":
    app()
