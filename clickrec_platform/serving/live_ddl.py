"""The live tables' DDL and catalogue comments, and `ensure_live_tables`, which creates what is missing."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from clickrec_platform.events.contract import EVENT_TYPES, INTERACTION_WEIGHTS
from clickrec_platform.serving.pg_copy import comment_on

GOLD_SCHEMA = "gold"
BATCHES_TABLE = "stream_sink_batches"

# {schema} is the only placeholder; everything else is constant text.
_TABLE_DDL = (
    """CREATE TABLE IF NOT EXISTS {schema}.windowed_stats (
        window_start timestamptz NOT NULL,
        window_end timestamptz,
        event text NOT NULL,
        event_count bigint,
        unique_users bigint,
        unique_items bigint,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (window_start, event)
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.trending_items (
        window_start timestamptz NOT NULL,
        window_end timestamptz,
        item_id bigint NOT NULL,
        score double precision,
        event_count bigint,
        rank integer,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (window_start, item_id)
    )""",
    """CREATE INDEX IF NOT EXISTS trending_items_window_end_rank_idx
        ON {schema}.trending_items (window_end DESC, rank)""",
    """CREATE TABLE IF NOT EXISTS {schema}.event_statistics (
        event text PRIMARY KEY,
        event_count bigint NOT NULL,
        first_event_at timestamptz,
        last_event_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.user_recent_items (
        visitor_id bigint NOT NULL,
        item_id bigint NOT NULL,
        last_event text,
        last_seen_at timestamptz NOT NULL,
        PRIMARY KEY (visitor_id, item_id)
    )""",
    """CREATE INDEX IF NOT EXISTS user_recent_items_visitor_recency_idx
        ON {schema}.user_recent_items (visitor_id, last_seen_at DESC)""",
    """CREATE TABLE IF NOT EXISTS {schema}.live_clickstream_events (
        event_id text PRIMARY KEY,
        ts timestamptz,
        visitor_id bigint,
        event text,
        item_id bigint,
        session_id text,
        source text,
        ingested_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE INDEX IF NOT EXISTS live_clickstream_events_ingested_at_idx
        ON {schema}.live_clickstream_events (ingested_at)""",
    """CREATE INDEX IF NOT EXISTS live_clickstream_events_visitor_ts_idx
        ON {schema}.live_clickstream_events (visitor_id, ts DESC)""",
    """CREATE INDEX IF NOT EXISTS live_clickstream_events_ts_idx
        ON {schema}.live_clickstream_events (ts)""",
    """CREATE TABLE IF NOT EXISTS {schema}.stream_sink_batches (
        sink text NOT NULL,
        batch_id bigint NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, batch_id)
    )""",
)

_UPDATED_AT = "When the values of this row last changed (a replayed batch leaves it as it was)."
_EVENT_DOC = f"Event type: {', '.join(EVENT_TYPES[:-1])} or {EVENT_TYPES[-1]}."
_COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "windowed_stats": (
        "Live event counts per 5-minute event-time window and event type, from the Spark stream "
        "(silver.events). A recomputed window replaces the old one wholesale.",
        {
            "window_start": "Start of the event-time window (inclusive).",
            "window_end": "End of the event-time window (exclusive).",
            "event": _EVENT_DOC,
            "event_count": "Events of this type in the window.",
            "unique_users": "Distinct visitors with this event type in the window.",
            "unique_items": "Distinct items with this event type in the window.",
            "updated_at": _UPDATED_AT,
        },
    ),
    "trending_items": (
        "Top items per event-time window by weighted interactions ("
        + ", ".join(f"{event} {weight}" for event, weight in INTERACTION_WEIGHTS.items())
        + "), from the Spark stream. A recomputed window replaces the old one wholesale, "
        "so an item that left the top N disappears. Latest: ORDER BY window_end DESC, rank.",
        {
            "window_start": "Start of the event-time window (inclusive).",
            "window_end": "End of the event-time window (exclusive).",
            "item_id": "RetailRocket item id.",
            "score": "Weighted interaction score in the window.",
            "event_count": "Events on the item in the window.",
            "rank": "1 = most trending item of the window.",
            "updated_at": _UPDATED_AT,
        },
    ),
    "event_statistics": (
        "Running totals per event type since the stream started; each micro-batch is added once "
        "(see stream_sink_batches).",
        {
            "event": _EVENT_DOC,
            "event_count": "Events of this type seen so far.",
            "first_event_at": "Earliest event time seen for this type.",
            "last_event_at": "Latest event time seen for this type.",
            "updated_at": "When a micro-batch last added to this row.",
        },
    ),
    "user_recent_items": (
        "The most recent items each visitor interacted with (a bounded number per visitor), from "
        "the Spark stream; newest first via ORDER BY last_seen_at DESC.",
        {
            "visitor_id": "RetailRocket visitor id.",
            "item_id": "RetailRocket item id.",
            "last_event": "Event type of the latest interaction with the item.",
            "last_seen_at": "Event time of the latest interaction; never moves backwards.",
        },
    ),
    "live_clickstream_events": (
        "Recent clickstream events as parsed by the stream: every valid event whose event time was "
        "within the live window span when it arrived, once per event_id, kept for a retention period "
        "after ingestion. The live windowed_stats and trending_items are computed from it; the full "
        "history is in the Delta lake (silver.events).",
        {
            "event_id": "Deterministic event id (replaying a source yields the same ids).",
            "ts": "Event time.",
            "visitor_id": "RetailRocket visitor id.",
            "event": _EVENT_DOC,
            "item_id": "RetailRocket item id; null for search events.",
            "session_id": "Session the event belongs to.",
            "source": "Where the event came from (e.g. retailrocket replay or synthetic generator).",
            "ingested_at": "When the row was written here; rows older than the retention are pruned.",
        },
    ),
    BATCHES_TABLE: (
        "Bookkeeping for idempotent streaming sinks: one row per micro-batch applied per sink, so "
        "a replayed batch is recognised and skipped. Internal; not for analysis.",
        {
            "sink": "Name of the sink, unique per streaming query and checkpoint.",
            "batch_id": "Spark Structured Streaming micro-batch id.",
            "committed_at": "When the batch was applied.",
        },
    ),
}


def ensure_live_tables(conn: psycopg.Connection, schema: str = GOLD_SCHEMA, attempts: int = 6) -> None:
    """Create the schema, the live tables, their indexes and comments where missing (idempotent).

    Even when everything exists, ``CREATE INDEX IF NOT EXISTS`` takes a share lock on its table, table after
    table, while a writer (the speed layer, a stream batch) may hold row locks on them and want another: then
    Postgres aborts one of the two as a deadlock's victim. When that is this transaction, it runs again after a
    short wait (the writer's transaction is short), so the stream job, the API or a publish starting beside
    live traffic does not fail on it."""
    for attempt in range(1, attempts + 1):
        try:
            _ensure_live_tables(conn, schema)
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def _ensure_live_tables(conn: psycopg.Connection, schema: str) -> None:
    schema_id = sql.Identifier(schema)
    with conn.transaction(), conn.cursor() as cur:
        # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue: serialise them.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.live_tables.{schema}",))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema_id))
        cur.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            schema_id, sql.Literal("clickrec gold tables: live stream results and published "
                                   "recommendations, for the API, dashboard and SQL consumers.")))
        for statement in _TABLE_DDL:
            cur.execute(sql.SQL(statement).format(schema=schema_id))
        for table, (table_comment, column_comments) in _COMMENTS.items():
            comment_on(cur, "TABLE", sql.Identifier(schema, table), table_comment, column_comments)
