"""What the dashboard shows, read and shaped by plain functions (no Streamlit here).

Three sources, each read on its own so that one being down never hides the others:

- PostgreSQL, schema ``settings.gold_schema``, as the read-only role: the stream's live tables
  (``event_statistics``, ``windowed_stats``, ``trending_items``) and the published ``popular_items``.
  Trending and popular items run the API's own statements, so the dashboard shows what
  ``/trending`` and ``/popular-products`` answer.
- the lake's ``silver.events`` through DuckDB: traffic by hour of day and the conversion funnel,
  over the whole history.
- the MLflow model registry: the champion's validation metrics, and every registered version's gate
  metric over time (which became champion, which stayed challenger).

A section whose data is not there yet (no table, no rows, no champion, a service down) comes back as
:class:`Missing` with a sentence saying why and what to run, which the app shows as a note.

Over 400 lines because it is every section's reader and shaper (one function each, most a few lines of
SQL); splitting them per source would scatter what one page shows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from clickrec_platform.events.contract import EVENT_TYPES
from clickrec_platform.settings import Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("clickrec.dashboard")

# The purchase funnel: (event, label). Each step counts the distinct visitors with that event.
FUNNEL_STEPS = (("view", "viewed"), ("addtocart", "added to cart"), ("transaction", "bought"))
TOP_N = 10
TRENDING_SPAN = timedelta(minutes=30)  # "trending now": windows that ended this close to the latest one
LIVE_WINDOWS_SPAN = timedelta(hours=2)  # the latest 24 five-minute windows
HISTORY_VERSIONS = 200  # newest registry versions read for the history
STATEMENT_TIMEOUT_MS = 5_000

STREAM_HINT = "produce events (`clickrec produce`) and run the stream job (`clickrec stream`)"
TRAINING_HINT = "materialise the training graph (`clickrec materialize`)"

# Registry version statuses, best first.
CHAMPION_NOW, FORMER_CHAMPION, CHALLENGER, CANDIDATE = "champion", "former champion", "challenger", "candidate"


class Unavailable(Exception):
    """A section's data is not there (yet); the message says why and what to do."""


@dataclass(frozen=True)
class Missing:
    """Stands in for a section's data: shown as a note instead of a chart."""

    reason: str
    error: bool = False  # something failed unexpectedly, rather than "not there yet"


T = TypeVar("T")


def attempt(read: Callable[[], T], what: str) -> T | Missing:
    """``read()``, or :class:`Missing` saying why not: a section never takes the page down."""
    try:
        return read()
    except Unavailable as exc:
        return Missing(str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of one section becomes a note on that section
        log.warning("dashboard: %s could not be read", what, exc_info=True)
        return Missing(f"{what.capitalize()} could not be read: {type(exc).__name__}: {_first_line(exc)}",
                       error=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# ------------------------------------------------------------------------------------ shaping (pure)
def order_events(frame: pd.DataFrame, column: str = "event") -> pd.DataFrame:
    """Rows in the contract's event order (view, addtocart, transaction, like, search; others last)."""
    rank = {event: i for i, event in enumerate(EVENT_TYPES)}
    order = frame[column].map(lambda e: (rank.get(e, len(rank)), str(e)))
    return frame.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order").reset_index(
        drop=True)


def event_types_in(events: Sequence[str]) -> list[str]:
    """The distinct event types of ``events`` in the contract's order (unknown ones last, by name)."""
    present = set(events)
    return [e for e in EVENT_TYPES if e in present] + sorted(present - set(EVENT_TYPES))


def hourly_traffic(counts: pd.DataFrame) -> pd.DataFrame:
    """Events per hour of day (0–23, UTC) and event type, from rows (hour, event, events): every hour
    of every type present, 0 where there were none, so a quiet hour shows as a gap, not a missing bar."""
    events = event_types_in(counts["event"].tolist())
    grid = pd.MultiIndex.from_product([range(24), events], names=["hour", "event"])
    summed = counts.groupby(["hour", "event"])["events"].sum()
    return summed.reindex(grid, fill_value=0).astype("int64").reset_index()


def complete_windows(frame: pd.DataFrame) -> pd.DataFrame:
    """Every window from the first to the last, for every event type present, with 0 where the stream
    wrote no row (a window without an event type has no row), so lines drop to 0 instead of skipping."""
    if frame.empty:
        return frame
    step = pd.Timedelta(minutes=5)
    starts = pd.date_range(frame["window_start"].min(), frame["window_start"].max(), freq=step)
    events = event_types_in(frame["event"].tolist())
    grid = pd.MultiIndex.from_product([starts, events], names=["window_start", "event"])
    counts = ["event_count", "unique_users", "unique_items"]
    out = frame.set_index(["window_start", "event"])[counts].reindex(grid, fill_value=0).astype("int64").reset_index()
    out.insert(1, "window_end", out["window_start"] + step)
    return out


def conversion_funnel(counts: pd.DataFrame) -> pd.DataFrame:
    """The view → addtocart → transaction funnel from per-event rows (event, events, visitors).

    One row per step: its label, visitors and events, and the share of the previous step's visitors
    and of the first step's (NaN where that step has none). Each step counts the visitors who did it
    at all, in the whole history; RetailRocket also has purchases with no cart event before them.
    """
    by_event = counts.set_index("event")
    rows: list[dict[str, Any]] = []
    first = previous = None
    for event, label in FUNNEL_STEPS:
        visitors = int(by_event["visitors"].get(event, 0))
        events = int(by_event["events"].get(event, 0))
        first = visitors if first is None else first
        rows.append({"step": len(rows) + 1, "event": event, "label": label, "visitors": visitors, "events": events,
                     "of_previous": _share(visitors, previous), "of_first": _share(visitors, first)})
        previous = visitors
    return pd.DataFrame(rows)


def _share(part: int, whole: int | None) -> float:
    if whole is None:
        return 1.0
    return part / whole if whole else math.nan


def version_status(gate_note: str | None, is_champion: bool) -> str:
    """What a registry version is now: the champion, a former champion (the gate promoted it), a
    challenger the gate kept out, or a candidate the gate never judged (not the best of its training)."""
    if is_champion:
        return CHAMPION_NOW
    if not gate_note:
        return CANDIDATE
    return FORMER_CHAMPION if gate_note.rstrip().endswith("-> promote") else CHALLENGER


@dataclass(frozen=True)
class RegistryVersion:
    """One registered model version as the dashboard charts it."""

    version: int
    registered_at: datetime
    model: str
    run_id: str
    metrics: Mapping[str, float]  # validation, all visitors, in the evaluator's names ("ndcg@20")
    gate_note: str  # the gate's reason, on the version the gate judged; "" otherwise


def version_history(versions: Sequence[RegistryVersion], champion_version: int | None, metric: str) -> pd.DataFrame:
    """One row per version, oldest first: when it was registered, the model, ``metric``'s value and its
    status (see :func:`version_status`)."""
    rows = [{"version": v.version, "registered_at": v.registered_at, "model": v.model,
             "metric": v.metrics.get(metric, math.nan),
             "status": version_status(v.gate_note, v.version == champion_version),
             "gate": v.gate_note, "run_id": v.run_id} for v in versions]
    columns = ["version", "registered_at", "model", "metric", "status", "gate", "run_id"]
    return pd.DataFrame(rows, columns=columns).sort_values("version", kind="stable").reset_index(drop=True)


_METRIC_ORDER = ("ndcg", "recall", "precision", "hitrate", "coverage", "map", "mrr")


def headline_metrics(metrics: Mapping[str, float], gate_metric: str) -> dict[str, float]:
    """The gate metric first, then the other metrics at its cut-off (``recall@20``, ``precision@20``…,
    the usual ones in a fixed order, any others after them by name)."""
    k = gate_metric.partition("@")[2]
    rank = {name: i for i, name in enumerate(_METRIC_ORDER)}
    others = sorted((name for name in metrics if name != gate_metric and name.partition("@")[2] == k),
                    key=lambda name: (rank.get(name.partition("@")[0], len(rank)), name))
    return {name: metrics[name] for name in ([gate_metric] if gate_metric in metrics else []) + others}


# ------------------------------------------------------------------------------------ PostgreSQL
@contextmanager
def gold_connection(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection to the gold database as the read-only role (autocommit, a statement timeout)."""
    import psycopg

    from clickrec_platform.serving.roles import reader_dsn

    try:
        dsn = reader_dsn(settings)
    except RuntimeError as exc:
        raise Unavailable(f"{exc} (`clickrec up` does both.)") from exc
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3,
                               options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
    except psycopg.OperationalError as exc:
        raise Unavailable(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} is not reachable "
                          f"({_first_line(exc)}): start it with `clickrec up postgres`.") from exc
    with conn:
        yield conn


def _read(conn: psycopg.Connection, query, params: Mapping[str, object], table: str, hint: str) -> pd.DataFrame:
    from psycopg import errors

    try:
        cur = conn.execute(query, params)
    except errors.UndefinedTable as exc:
        raise Unavailable(f"{table} does not exist yet: {hint}.") from exc
    except errors.InsufficientPrivilege as exc:
        raise Unavailable(f"The read-only role may not read {table}: `clickrec serve` (or `clickrec up`) "
                          f"grants it.") from exc
    assert cur.description is not None  # a query that returns rows describes them
    return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


def event_counts(conn: psycopg.Connection, schema: str) -> pd.DataFrame:
    """Events counted by the stream since it started, per type: event, event_count, first/last event
    time, updated_at (when a micro-batch last added to the row)."""
    from psycopg import sql

    table = f"{schema}.event_statistics"
    frame = _read(conn, sql.SQL("SELECT event, event_count, first_event_at, last_event_at, updated_at FROM {}")
                  .format(sql.Identifier(schema, "event_statistics")), {}, table, STREAM_HINT)
    if frame.empty:
        raise Unavailable(f"No events counted yet in {table}: {STREAM_HINT}.")
    return order_events(frame)


def live_windows(conn: psycopg.Connection, schema: str, span: timedelta = LIVE_WINDOWS_SPAN) -> pd.DataFrame:
    """The 5-minute windows of event time that started within ``span`` of the latest one, per type."""
    from psycopg import sql

    table = f"{schema}.windowed_stats"
    frame = _read(conn, sql.SQL("""
        SELECT window_start, window_end, event, event_count, unique_users, unique_items FROM {table}
        WHERE window_start > (SELECT max(window_start) FROM {table}) - %(span)s::interval
        ORDER BY window_start, event
    """).format(table=sql.Identifier(schema, "windowed_stats")), {"span": span}, table, STREAM_HINT)
    if frame.empty:
        raise Unavailable(f"No 5-minute windows yet in {table}: {STREAM_HINT}.")
    return complete_windows(frame)


def trending_now(conn: psycopg.Connection, schema: str, limit: int = TOP_N,
                 span: timedelta = TRENDING_SPAN) -> pd.DataFrame:
    """The API's /trending: item_id, score (weighted interactions), events, as_of (the latest window's end)."""
    from clickrec_platform.serving.api.queries import GoldQueries

    table = f"{schema}.trending_items"
    frame = _read(conn, GoldQueries(schema).trending, {"window": span, "limit": limit}, table, STREAM_HINT)
    if frame.empty:
        raise Unavailable(f"No trending items yet in {table}: {STREAM_HINT}.")
    return frame.assign(rank=range(1, len(frame) + 1))


def popular_overall(conn: psycopg.Connection, schema: str, limit: int = TOP_N) -> pd.DataFrame:
    """The API's /popular-products: the published overall list of the shortest window (item_id, rank,
    score, window_days, model_version, run_id)."""
    from clickrec_platform.serving.api.queries import GoldQueries

    table = f"{schema}.popular_items"
    frame = _read(conn, GoldQueries(schema).popular_overall, {"window_days": None, "limit": limit}, table,
                  TRAINING_HINT)
    if frame.empty:
        raise Unavailable(f"Nothing published to {table} yet: {TRAINING_HINT}.")
    return frame


@dataclass(frozen=True)
class LiveSnapshot:
    event_counts: pd.DataFrame | Missing
    windows: pd.DataFrame | Missing
    trending: pd.DataFrame | Missing
    popular: pd.DataFrame | Missing


def live_snapshot(settings: Settings) -> LiveSnapshot:
    """Every PostgreSQL section, over one connection."""
    schema = settings.gold_schema

    def read() -> LiveSnapshot:
        with gold_connection(settings) as conn:
            return LiveSnapshot(
                event_counts=attempt(lambda: event_counts(conn, schema), "event counts"),
                windows=attempt(lambda: live_windows(conn, schema), "5-minute windows"),
                trending=attempt(lambda: trending_now(conn, schema), "trending items"),
                popular=attempt(lambda: popular_overall(conn, schema), "popular items"),
            )

    found = attempt(read, "PostgreSQL")
    return LiveSnapshot(found, found, found, found) if isinstance(found, Missing) else found


# ------------------------------------------------------------------------------------ the lake
@dataclass(frozen=True)
class LakeSnapshot:
    hourly: pd.DataFrame | Missing
    funnel: pd.DataFrame | Missing


def silver_counts(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From silver.events: events per (hour of day UTC, event), and events and distinct visitors per
    funnel event."""
    from clickrec_platform.lake import duck
    from clickrec_platform.lake.storage import table_exists
    from clickrec_platform.lake.tables import SILVER_EVENTS

    path = SILVER_EVENTS.path(settings)
    if not table_exists(path, settings):
        raise Unavailable(f"silver.events does not exist yet at {path}: {STREAM_HINT}.")
    scan = duck.scan(path)
    funnel_events = ", ".join(f"'{event}'" for event, _ in FUNNEL_STEPS)
    with duck.connect(settings) as con:
        # `ts` is epoch milliseconds: the hour of day in UTC needs no time zone support.
        hourly = con.execute(f"SELECT CAST((ts // 3600000) % 24 AS INTEGER) AS hour, event, count(*) AS events "
                             f"FROM {scan} GROUP BY ALL").df()
        funnel = con.execute(f"SELECT event, count(*) AS events, count(DISTINCT visitor_id) AS visitors "
                             f"FROM {scan} WHERE event IN ({funnel_events}) GROUP BY event").df()
    return hourly, funnel


def lake_snapshot(settings: Settings) -> LakeSnapshot:
    def read() -> LakeSnapshot:
        hourly, funnel = silver_counts(settings)
        if hourly.empty:
            missing = Missing(f"silver.events has no events yet: {STREAM_HINT}.")
            return LakeSnapshot(missing, missing)
        return LakeSnapshot(
            hourly=hourly_traffic(hourly),
            funnel=conversion_funnel(funnel) if not funnel.empty
            else Missing("silver.events has no view, addtocart or transaction events yet."))

    found = attempt(read, "silver.events")
    return LakeSnapshot(found, found) if isinstance(found, Missing) else found


# ------------------------------------------------------------------------------------ the model registry
@dataclass(frozen=True)
class RegistrySnapshot:
    name: str  # the registered model
    champion: RegistryVersion | Missing
    history: pd.DataFrame | Missing  # version_history(); its "metric" column is the gate metric


def require_tracking_server(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with a clear reason, when an HTTP tracking server does not answer (the MLflow client
    would retry for minutes)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        response = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise Unavailable(f"MLflow at {tracking_uri} is not reachable ({type(exc).__name__}): start it with "
                          f"`clickrec up mlflow`.") from exc
    if response.status_code != 200:
        raise Unavailable(f"MLflow at {tracking_uri} answered /health with {response.status_code}.")


def registry_versions(client, name: str, limit: int = HISTORY_VERSIONS) -> tuple[list[RegistryVersion], int | None]:
    """The newest ``limit`` versions of registered model ``name`` with their runs' validation metrics,
    and the champion's version number (None without one)."""
    from mlflow.exceptions import MlflowException

    from clickrec_platform.recommend.tracking import CHAMPION, gate_metrics
    from clickrec_platform.recommend.training import CANDIDATE_TAG, GATE_TAG

    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise Unavailable(f"No model is registered as {name!r} yet: {TRAINING_HINT}.") from exc
        raise
    champion = registered.aliases.get(CHAMPION)
    quoted = name.replace("'", "\\'")
    found = client.search_model_versions(f"name = '{quoted}'", max_results=limit,
                                         order_by=["version_number DESC"])
    if champion is not None and all(str(v.version) != str(champion) for v in found):
        found = [*found, client.get_model_version(name, champion)]  # older than the newest `limit`

    def described(version) -> RegistryVersion:
        try:
            run = client.get_run(version.run_id) if version.run_id else None
        except MlflowException:  # the run was deleted: keep the version, without metrics
            run = None
        tags = run.data.tags if run else {}
        return RegistryVersion(
            version=int(version.version),
            registered_at=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
            model=tags.get(CANDIDATE_TAG) or tags.get("model_name") or "?",
            run_id=version.run_id or "",
            metrics=gate_metrics(run.data.metrics) if run else {},
            gate_note=version.tags.get(GATE_TAG, ""),
        )

    return [described(version) for version in found], None if champion is None else int(champion)


def registry_snapshot(settings: Settings) -> RegistrySnapshot:
    name = settings.registered_model_name

    def read() -> RegistrySnapshot:
        require_tracking_server(settings.tracking_uri)
        from mlflow import MlflowClient

        versions, champion = registry_versions(MlflowClient(settings.tracking_uri), name)
        if not versions:
            raise Unavailable(f"Model {name!r} has no versions yet: {TRAINING_HINT}.")
        current = next((v for v in versions if v.version == champion), None)
        return RegistrySnapshot(
            name=name,
            champion=current or Missing(
                f"No champion yet: no version of {name!r} has beaten the popularity baseline and the gate's "
                f"other conditions (the gate's notes are in the history below)."),
            history=version_history(versions, champion, settings.gate_metric))

    found = attempt(read, "the model registry")
    return RegistrySnapshot(name, found, found) if isinstance(found, Missing) else found
