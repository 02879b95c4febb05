"""The recommendation API (FastAPI): ``create_app(settings)``; ``clickrec serve`` runs it under uvicorn.

Every request borrows a connection from an async pool (psycopg 3, autocommit, statements prepared
on first use, a statement timeout) and runs one or two indexed queries. Handlers write JSON with
orjson straight into the response; the pydantic models in ``schemas.py`` document the shapes.

A connection the server dropped (a PostgreSQL restart or failover, an idle-session kill) costs no
failed request: the pool's idle connections are checked, and the read, which changes nothing, runs
once more on a fresh connection.

Errors are answered as JSON, never with a stack trace: bad parameters 422 (which parameter and
why), unknown items or visitors 404, the database unreachable, too slow or its tables missing 503
(with ``Retry-After``), anything else 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import orjson
import psycopg
from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import Request

from clickrec_platform.serving.api import queries, schemas
from clickrec_platform.serving.api.blend import Blend, SimilarRow, blend, top_up
from clickrec_platform.serving.api.metrics import ApiMetrics, MetricsMiddleware
from clickrec_platform.serving.api.params import WINDOW_PATTERN, parse_window
from clickrec_platform.serving.api.session_model import SessionModelHolder, current_session
from clickrec_platform.serving.roles import reader_dsn
from clickrec_platform.settings import Settings, get_settings

log = logging.getLogger("clickrec.api")
T = TypeVar("T")

MAX_ID = 2**63 - 1
UserId = Annotated[int, Path(ge=0, le=MAX_ID, description="RetailRocket visitor id.")]
ItemId = Annotated[int, Path(ge=0, le=MAX_ID, description="RetailRocket item id.")]
CategoryId = Annotated[int | None, Query(ge=0, le=MAX_ID, description="Category id (any level of the tree).")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many items, 1–100.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": schemas.InvalidRequest, "description": "A parameter is missing or invalid."},
    503: {"model": schemas.Error, "description": "The database is unreachable, too slow, or not set up."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": schemas.Error, "description": "Unknown id."}}


def _json(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json",
                    headers=headers)


def create_app(settings: Settings, *, conninfo: str | None = None) -> FastAPI:
    """The API over ``settings.gold_schema``, connecting as the read-only role (or with ``conninfo``)."""
    metrics = ApiMetrics()
    gold = queries.GoldQueries(settings.gold_schema)
    pool = AsyncConnectionPool(
        conninfo or reader_dsn(settings), min_size=settings.api_pool_min_size,
        max_size=settings.api_pool_max_size, timeout=settings.api_pool_timeout_s, open=False,
        name="clickrec-api",
        kwargs={"autocommit": True, "prepare_threshold": 0, "connect_timeout": 3,
                "options": f"-c statement_timeout={int(settings.api_statement_timeout_ms)} "
                           "-c default_transaction_read_only=on",
                "application_name": "clickrec-api"})
    seen_limit = settings.recent_items_per_visitor

    async def read(query: Callable[[psycopg.AsyncConnection], Awaitable[T]], timeout: float | None = None) -> T:
        """``query`` on a pooled connection; on a connection the server had dropped, once more on a
        fresh one after the pool has replaced its dead idle connections."""
        async with pool.connection(timeout=timeout) as conn:
            try:
                return await query(conn)
            except psycopg.OperationalError as exc:
                if not conn.broken:  # a statement timeout or a real error: answer it
                    raise
                log.warning("database connection dropped (%s); checking the pool and retrying", exc)
        metrics.dropped_connections.inc()
        await pool.check()
        async with pool.connection(timeout=timeout) as conn:
            return await query(conn)

    session_model = SessionModelHolder(settings.session_registered_model_name, settings.tracking_uri,
                                       settings.api_session_model_refresh_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)  # start even while the database is down: requests answer 503
        refresher = asyncio.create_task(session_model.refresh_forever()) if session_model.enabled else None
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            await pool.close()

    app = FastAPI(
        title="clickrec recommendation API", version="1.0", lifespan=lifespan,
        description="Real-time recommendations from the clickrec lakehouse: the champion model's lists "
                    "(published atomically to PostgreSQL) blended with each visitor's live activity.")
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.session_model = session_model
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app)

    @app.get("/recommendations/{user_id}", response_model=schemas.Recommendations, responses=_ERRORS,
             summary="Recommendations for a visitor, live")
    async def recommendations(
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=100, description="How many items, 1–100.")] = 10,
        exclude_seen: Annotated[bool, Query(description="Leave out the visitor's recent items.")] = True,
    ) -> Response:
        """The champion model's list blended with what the session champion puts next after the
        visitor's current session (their recent items, updated within seconds of an event; items
        similar to the recent ones when no session model is loaded). Visitors with neither get
        trending, then popular items. `source` says what produced the list; the model version and run
        come with it, and the session model's with `session_model_*`."""
        async def personal(conn: psycopg.AsyncConnection) -> tuple[Blend, list[int]]:
            held = session_model.loaded is not None
            model, seen, similar, seen_ms = await queries.personal_rows(conn, gold, user_id, k, seen_limit,
                                                                        neighbours=not held)
            if held:
                items, stamps = current_session(seen, seen_ms, settings.session_gap_minutes)
                # Ask for more than k: the session's own items may come back and be excluded as seen.
                ranked = session_model.recommend(items, stamps, k + (len(items) if exclude_seen else 0))
                if ranked is not None:
                    provenance = session_model.provenance
                    similar = [SimilarRow(item, 1, rank, provenance) for rank, item in enumerate(ranked, start=1)]
            result = blend(model, similar, seen, k, exclude_seen)
            if len(result.items) < k:
                fallback = await queries.fallback_rows(conn, gold, k + (len(seen) if exclude_seen else 0))
                result = top_up(result, fallback, seen, k, exclude_seen)
            return result, seen

        result, seen = await read(personal)
        metrics.recommendation_source.labels(result.source).inc()
        provenance = result.provenance
        live = session_model.provenance if result.source in ("session", "blended") else None
        return _json({
            "user_id": user_id, "source": result.source,
            "model_name": provenance.model_name if provenance else None,
            "model_version": provenance.model_version if provenance else None,
            "run_id": provenance.run_id if provenance else None,
            "session_model_name": live.model_name if live else None,
            "session_model_version": live.model_version if live else None,
            "based_on_recent_items": seen[:5],
            "items": [{"item_id": i.item_id, "score": i.score, "source": i.source} for i in result.items]})

    @app.get("/similar-items/{item_id}", response_model=schemas.SimilarItems, responses=_ERRORS | _NOT_FOUND,
             summary="Items similar to an item")
    async def similar_items(item_id: ItemId, k: Limit = 10) -> Response:
        rows = await read(lambda conn: queries.similar_items(conn, gold, item_id, k))
        if rows is None:
            raise HTTPException(404, f"unknown item {item_id}: not in the catalogue and no similar items")
        return _json({"item_id": item_id, "items": rows})

    @app.get("/trending", response_model=schemas.Trending, responses=_ERRORS, summary="Trending items, live")
    async def trending(
        limit: Limit = 20,
        window: Annotated[str, Query(description="How far back from the latest window: minutes (30, 30m, "
                                     "30min), hours (1h) or days (2d), 1 minute … 7 days.",
                                     # Stated, and checked by parse_window for a clearer message.
                                     json_schema_extra={"pattern": WINDOW_PATTERN})] = "1h",
    ) -> Response:
        """Items with the most weighted interactions in the event-time windows of the stream that
        ended within `window` before the latest one."""
        try:
            span = parse_window(window)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        rows = await read(lambda conn: queries.trending(conn, gold, span, limit))
        as_of = rows[0].pop("as_of") if rows else None
        for row in rows[1:]:
            row.pop("as_of")
        return _json({"window": window, "as_of": as_of, "items": rows})

    @app.get("/popular-products", response_model=schemas.PopularProducts, responses=_ERRORS,
             summary="Popular items, overall or in a category")
    async def popular_products(
        limit: Limit = 20, category: CategoryId = None,
        window_days: Annotated[int | None, Query(ge=1, le=3650, description="Popularity window in days "
                                                 "(default: the shortest one published).")] = None,
    ) -> Response:
        source, rows = await read(lambda conn: queries.popular(conn, gold, category, window_days, limit))
        return _json({"category": category, "source": source, "items": rows})

    @app.get("/user-stats/{user_id}", response_model=schemas.UserStats, responses=_ERRORS | _NOT_FOUND,
             summary="A visitor's behaviour statistics")
    async def user_stats(user_id: UserId) -> Response:
        row = await read(lambda conn: queries.user_stats(conn, gold, user_id))
        if row is None:
            raise HTTPException(404, f"unknown visitor {user_id}: no published statistics")
        return _json(row)

    @app.get("/search", response_model=schemas.SearchResults, responses=_ERRORS, summary="Search the catalogue",
             openapi_extra={"x-constraints": [{"rule": "min_price <= max_price", "when": "both are given",
                                               "otherwise": 422}]})
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                                description="Words to find (web-search syntax: quotes, OR, -word), no NUL "
                                "character. Item ids and category ids are the words items have.")],
        category: CategoryId = None,
        min_price: Annotated[float | None, Query(ge=0, description="Lowest price. Must not exceed max_price "
                                                 "when both are given (422 otherwise).")] = None,
        max_price: Annotated[float | None, Query(ge=0, description="Highest price; at least min_price when "
                                                 "both are given (422 otherwise).")] = None,
        available: Annotated[bool | None, Query(description="Only available (true) or unavailable items.")] = None,
        limit: Limit = 20,
    ) -> Response:
        """PostgreSQL full-text search over the catalogue, filters combined with AND, best match first
        (then by interaction weight over 30 days).

        One rule spans two parameters, which OpenAPI cannot state as a schema: **`min_price` ≤
        `max_price`** when both are given; otherwise the answer is 422 naming both values. The
        document carries it as `x-constraints` too, for tools that read extensions."""
        if min_price is not None and max_price is not None and min_price > max_price:
            raise HTTPException(422, f"min_price ({min_price:g}) is greater than max_price ({max_price:g})")
        rows = await read(lambda conn: queries.search(conn, gold, q, category, min_price, max_price, available,
                                                      limit))
        return _json({"q": q, "items": rows})

    @app.get("/health", response_model=schemas.Health, responses={503: {"model": schemas.Health}},
             summary="Whether the API can read the database")
    async def health() -> Response:
        try:
            published = await read(lambda conn: queries.live_versions(conn, gold),
                                   timeout=min(1.0, settings.api_pool_timeout_s))
        except (psycopg.Error, PoolTimeout) as exc:
            return _json({"status": "unavailable", "database": _reason(exc), "published": {}}, 503,
                         {"Retry-After": "1"})
        held = session_model.provenance
        return _json({"status": "ok", "database": "ok", "published": published,
                      "session_model": None if held is None else {"name": held.model_name,
                                                                  "version": held.model_version,
                                                                  "run_id": held.run_id}})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def app_from_environment() -> FastAPI:
    """The app from the environment's settings: uvicorn's factory for `clickrec serve` workers."""
    return create_app(get_settings())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PoolTimeout):
        return "no database connection available in time (is PostgreSQL up?)"
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return "gold tables missing: run `clickrec serve` once (creates them) or publish them"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "query timed out"
    return f"database error ({type(exc).__name__})"


def _add_error_handlers(app: FastAPI) -> None:
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = [{"parameter": str(e["loc"][-1]) if e.get("loc") else None,
                   "in": e["loc"][0] if e.get("loc") else None, "message": e.get("msg")} for e in exc.errors()]
        summary = "; ".join(f"{e['in']} parameter {e['parameter']!r}: {e['message']}" for e in errors)
        return _json({"detail": summary or "invalid request", "errors": errors}, 422)

    async def unavailable(_request: Request, exc: Exception) -> Response:
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return _json({"detail": f"database unavailable: {_reason(exc)}"}, 503, {"Retry-After": "1"})

    async def failed(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return _json({"detail": "internal error"}, 500)

    # Starlette types every handler as taking any Exception; it calls this one with its class's only.
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    for unavailable_error in (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError,
                              psycopg.errors.UndefinedTable):
        app.add_exception_handler(unavailable_error, unavailable)
    app.add_exception_handler(psycopg.Error, failed)
    app.add_exception_handler(Exception, failed)
