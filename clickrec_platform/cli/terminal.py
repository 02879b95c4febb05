"""What the command line prints, shared by its commands and the demo: the consoles, a failure as one
line and exit 1, services started one by one, a query's rows, the stack's health, a run's report."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from clickrec_platform.settings import Settings
from clickrec_platform.stack import services
from clickrec_platform.stack.process import ServiceError
from clickrec_platform.stack.setup import run_setup

console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (code 1) to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def start_stack(settings: Settings, names: list[str] | None = None) -> None:
    """Set up what is missing, then start the services (all, or ``names``), each reported as it answers."""
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
        raise fail(str(exc)) from exc
    console.print(f"stack up in {time.monotonic() - started_at:.1f}s")


def print_query(settings: Settings, query: str, output: str = "table", limit: int = 50) -> None:
    """A DuckDB query over the lake's tables, printed as a table, CSV or JSON; a failure is one line."""
    import duckdb

    from clickrec_platform.lake.duck import lake_connection

    if output not in ("table", "csv", "json"):
        raise fail(f"unknown --format {output!r}: use table, csv or json")
    # DuckDB runs a query when its rows are read, so reading them is inside the try too: any failure
    # is one line naming the problem, not a traceback.
    try:
        con = lake_connection(settings)
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
        raise fail(one_line_error(exc)) from None
    if output == "table":
        console.print(table)
    else:
        typer.echo(text, nl=False)


def print_status(settings: Settings, as_json: bool = False) -> bool:
    """Each service: whether it runs, where, and whether it answers; False when any is unhealthy (live
    traffic, started only on request, counts only while it runs)."""
    rows: list[dict[str, Any]] = []
    for service in services(settings, on_request=True):
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
    return not any(row["healthy"] is False for row in rows)


def print_run_report(report) -> None:
    table = Table(title=f"run {report.run_id} ({report.partitions}): {report.seconds:.1f}s")
    for column in ("asset", "seconds", "rows", "checks"):
        table.add_column(column)
    for step in report.steps:
        table.add_row(step.asset, f"{step.seconds:.1f}", f"{step.rows:,}" if step.rows is not None else "",
                      step.checks_summary, style=None if step.ok else "red")
    console.print(table)
    for failure in report.failures:
        err.print(f"[red]{failure}[/]", highlight=False)


def one_line_error(exc: BaseException) -> str:
    """``Kind: message`` on one line: DuckDB's messages span lines (the query, a caret under the fault)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'failed'}"
