"""PostgreSQL sinks for the streaming gold tables (schema ``gold``).

The Spark job's ``foreachBatch`` computes small result sets, turns them into pyarrow Tables on the
driver and hands them here with a psycopg connection. Every loader

- runs in one transaction (``conn.transaction()``), so a reader sees a batch whole or not at all;
  called inside a transaction of the caller's, it becomes a savepoint and commits with the caller's;
- bulk-loads with ``COPY`` (CSV written by Arrow's C++ writer) into a temporary staging table and
  applies it with set-based SQL, never row by row;
- is idempotent: called again with the same arguments it leaves the tables as they were, so a
  replayed micro-batch changes nothing. Overwrites only touch rows whose values differ, so even
  ``updated_at`` keeps its value on a replay. Additive increments, which are not idempotent by
  nature, are guarded by ``(sink, batch_id)`` bookkeeping in ``stream_sink_batches``.

``apply_live_events`` is the stream job's latency path: one transaction that records a batch of
events, merges each visitor's recent items and recomputes the recent windows in Postgres itself.

Timestamps must be timezone-aware (any unit, any zone; stored as ``timestamptz``): a naive
timestamp is ambiguous and is rejected with ``ValueError``, as are missing columns and nulls in key
columns, all before anything is written. Call :func:`ensure_live_tables` once before loading.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from clickrec_platform.events.contract import EVENT_TYPES, INTERACTION_WEIGHTS

GOLD_SCHEMA = "gold"
BATCHES_TABLE = "stream_sink_batches"

# Postgres keeps microseconds; every timestamp column is converted to this before COPY.
_TIMESTAMP = pa.timestamp("us", tz="UTC")
# Rows per CSV chunk handed to COPY: bounds the driver's memory for large batches.
_COPY_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class _Column:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    required: bool = False  # nulls are rejected before anything is written


_WINDOWED_STATS_COLUMNS = (
    _Column("window_start", "timestamptz", _TIMESTAMP, required=True),
    _Column("window_end", "timestamptz", _TIMESTAMP),
    _Column("event", "text", pa.string(), required=True),
    _Column("event_count", "bigint", pa.int64()),
    _Column("unique_users", "bigint", pa.int64()),
    _Column("unique_items", "bigint", pa.int64()),
)
_TRENDING_ITEMS_COLUMNS = (
    _Column("window_start", "timestamptz", _TIMESTAMP, required=True),
    _Column("window_end", "timestamptz", _TIMESTAMP),
    _Column("item_id", "bigint", pa.int64(), required=True),
    _Column("score", "double precision", pa.float64()),
    _Column("event_count", "bigint", pa.int64()),
    _Column("rank", "integer", pa.int32()),
)
_EVENT_STATISTICS_COLUMNS = (
    _Column("event", "text", pa.string(), required=True),
    _Column("event_count", "bigint", pa.int64(), required=True),
    _Column("first_event_at", "timestamptz", _TIMESTAMP),
    _Column("last_event_at", "timestamptz", _TIMESTAMP),
)
_RECENT_ITEMS_COLUMNS = (
    _Column("visitor_id", "bigint", pa.int64(), required=True),
    _Column("item_id", "bigint", pa.int64(), required=True),
    _Column("last_event", "text", pa.string()),
    _Column("last_seen_at", "timestamptz", _TIMESTAMP, required=True),
)
_LIVE_EVENTS_COLUMNS = (
    _Column("event_id", "text", pa.string(), required=True),
    _Column("ts", "timestamptz", _TIMESTAMP),
    _Column("visitor_id", "bigint", pa.int64()),
    _Column("event", "text", pa.string()),
    _Column("item_id", "bigint", pa.int64()),
    _Column("session_id", "text", pa.string()),
    _Column("source", "text", pa.string()),
)

LIVE_EVENT_COLUMNS = tuple(column.name for column in _LIVE_EVENTS_COLUMNS)  # what apply_live_events takes

# A batch for apply_live_events: valid events, so time, visitor and type are always there.
_LIVE_BATCH_COLUMNS = tuple(
    _Column(c.name, c.sql_type, c.arrow_type, required=c.name in ("event_id", "ts", "visitor_id", "event"))
    for c in _LIVE_EVENTS_COLUMNS)

# Tables whose rows belong to a time window and are replaced a window at a time: columns and key.
_WINDOWED_TABLES: dict[str, tuple[tuple[_Column, ...], tuple[str, ...]]] = {
    "windowed_stats": (_WINDOWED_STATS_COLUMNS, ("window_start", "event")),
    "trending_items": (_TRENDING_ITEMS_COLUMNS, ("window_start", "item_id")),
}

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


def comment_on(cur: psycopg.Cursor, kind: str, target: sql.Composable, comment: str,
               column_comments: Mapping[str, str]) -> None:
    """Describe a table or view (`kind`) and its columns in the catalogue, for SQL consumers."""
    cur.execute(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), target, sql.Literal(comment)))
    for column, column_comment in column_comments.items():
        if column_comment:
            cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                target, sql.Identifier(column), sql.Literal(column_comment)))


def replace_windows(
    conn: psycopg.Connection,
    table: str,
    rows: pa.Table,
    window_starts: Sequence[datetime],
    schema: str = GOLD_SCHEMA,
) -> int:
    """Make the windows starting at ``window_starts`` hold exactly ``rows``; return rows written.

    ``table`` is ``windowed_stats`` or ``trending_items``. Rows of those windows that are not in
    ``rows`` are deleted, the others inserted or updated (only where a value differs), all in one
    transaction; windows not listed are untouched. Every ``window_start`` in ``rows`` must be listed.
    """
    if table not in _WINDOWED_TABLES:
        raise ValueError(f"replace_windows: table must be one of {sorted(_WINDOWED_TABLES)}, got {table!r}")
    columns, key = _WINDOWED_TABLES[table]
    data = _arrow_for_copy(rows, columns, table)
    starts = [_require_aware(start, "window_starts") for start in window_starts]
    _require_within_windows(data.column("window_start"), starts, table)
    _require_unique(data, key, table)
    if not starts:
        return 0

    with conn.transaction(), conn.cursor() as cur:
        _replace_windows_from(cur, table, _stage(cur, data, columns, table), starts, schema)
    return data.num_rows


def _replace_windows_from(cur: psycopg.Cursor, table: str, stage: sql.Identifier, starts: Sequence[datetime],
                          schema: str) -> None:
    """Make the windows ``starts`` of ``table`` hold exactly the rows of the staged table ``stage``."""
    columns, key = _WINDOWED_TABLES[table]
    target = sql.Identifier(schema, table)
    values = [column.name for column in columns if column.name not in key]
    cur.execute(
        sql.SQL("""
            DELETE FROM {target} AS t
            WHERE t.window_start = ANY(%(starts)s)
              AND NOT EXISTS (SELECT FROM {stage} AS s WHERE {key_match})
        """).format(
            target=target,
            stage=stage,
            key_match=sql.SQL(" AND ").join(
                sql.SQL("s.{0} = t.{0}").format(sql.Identifier(name)) for name in key),
        ),
        {"starts": list(starts)},
    )
    cur.execute(_upsert_changed_sql(target, stage, [c.name for c in columns], key, values))


def add_event_statistics_once(
    conn: psycopg.Connection,
    sink: str,
    batch_id: int,
    increments: pa.Table,
    schema: str = GOLD_SCHEMA,
) -> bool:
    """Add one micro-batch's per-event increments to ``event_statistics``, at most once per batch.

    Returns False, changing nothing, when ``(sink, batch_id)`` was applied before. ``sink`` must be
    unique per streaming query *and checkpoint*: a new checkpoint restarts batch ids at 0, so it
    needs a new sink name (as a Delta ``txnAppId`` would). Several rows for one event are summed.
    """
    if not sink:
        raise ValueError("add_event_statistics_once: sink must be a non-empty name")
    columns = _EVENT_STATISTICS_COLUMNS
    data = _arrow_for_copy(increments, columns, "event_statistics")
    target = sql.Identifier(schema, "event_statistics")
    with conn.transaction(), conn.cursor() as cur:
        # Taken first: a concurrent replay of the same batch waits here on the key, then skips.
        cur.execute(
            sql.SQL("INSERT INTO {} (sink, batch_id) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                sql.Identifier(schema, BATCHES_TABLE)),
            (sink, batch_id),
        )
        if cur.rowcount == 0:
            return False
        stage = _stage(cur, data, columns, "event_statistics")
        cur.execute(sql.SQL("""
            INSERT INTO {target} AS t (event, event_count, first_event_at, last_event_at)
            SELECT event, sum(event_count)::bigint, min(first_event_at), max(last_event_at)
            FROM {stage}
            GROUP BY event
            ON CONFLICT (event) DO UPDATE SET
                event_count = t.event_count + EXCLUDED.event_count,
                first_event_at = LEAST(t.first_event_at, EXCLUDED.first_event_at),
                last_event_at = GREATEST(t.last_event_at, EXCLUDED.last_event_at),
                updated_at = now()
        """).format(target=target, stage=stage))
    return True


def upsert_recent_items(
    conn: psycopg.Connection,
    rows: pa.Table,
    keep_per_visitor: int = 50,
    schema: str = GOLD_SCHEMA,
) -> int:
    """Record each visitor's latest interaction per item, keep their newest items; return visitors.

    A (visitor, item) keeps the greatest ``last_seen_at`` (ties: the greater ``last_event``), so the
    result does not depend on batch order and never moves backwards. Then, for the visitors in
    ``rows`` only, all but their ``keep_per_visitor`` most recent items (ties: greater item id
    first) are deleted.
    """
    if keep_per_visitor < 1:
        raise ValueError(f"upsert_recent_items: keep_per_visitor must be at least 1, got {keep_per_visitor}")
    columns = _RECENT_ITEMS_COLUMNS
    data = _arrow_for_copy(rows, columns, "user_recent_items")
    if data.num_rows == 0:
        return 0
    visitors = pc.count_distinct(data.column("visitor_id")).as_py()
    with conn.transaction(), conn.cursor() as cur:
        stage = _stage(cur, data, columns, "user_recent_items")
        _merge_recent_items(cur, sql.SQL("SELECT * FROM {}").format(stage), keep_per_visitor, schema)
    return visitors


def _merge_recent_items(cur: psycopg.Cursor, source: sql.Composable, keep_per_visitor: int, schema: str) -> None:
    """``upsert_recent_items`` from a query with columns visitor_id, item_id, last_event, last_seen_at."""
    target = sql.Identifier(schema, "user_recent_items")
    cur.execute(sql.SQL("""
        INSERT INTO {target} AS t (visitor_id, item_id, last_event, last_seen_at)
        SELECT DISTINCT ON (visitor_id, item_id) visitor_id, item_id, last_event, last_seen_at
        FROM ({source}) AS s
        ORDER BY visitor_id, item_id, last_seen_at DESC, coalesce(last_event, '') DESC
        ON CONFLICT (visitor_id, item_id) DO UPDATE SET
            last_event = EXCLUDED.last_event,
            last_seen_at = EXCLUDED.last_seen_at
        WHERE (EXCLUDED.last_seen_at, coalesce(EXCLUDED.last_event, ''))
            > (t.last_seen_at, coalesce(t.last_event, ''))
    """).format(target=target, source=source))
    cur.execute(
        sql.SQL("""
            DELETE FROM {target} AS t
            USING (
                SELECT visitor_id, item_id,
                       row_number() OVER (PARTITION BY visitor_id
                                          ORDER BY last_seen_at DESC, item_id DESC) AS recency
                FROM {target}
                WHERE visitor_id IN (SELECT visitor_id FROM ({source}) AS s)
            ) AS ranked
            WHERE ranked.recency > %(keep)s
              AND t.visitor_id = ranked.visitor_id
              AND t.item_id = ranked.item_id
        """).format(target=target, source=source),
        {"keep": keep_per_visitor},
    )


@dataclass(frozen=True)
class LiveWindows:
    """How ``apply_live_events`` recomputes the windows: ``trending_items`` keeps the ``top_n``
    items per window, scored by ``weights`` per event type (other event types do not count)."""

    top_n: int
    weights: Mapping[str, float]


@dataclass(frozen=True)
class LiveApplied:
    """What one ``apply_live_events`` call did."""

    inserted: int  # new rows in live_clickstream_events
    visitors: int  # visitors whose recent items were merged
    stats_windows: int  # windowed_stats windows recomputed
    trending_windows: int  # trending_items windows recomputed


# Window lengths of the live tables (the stream job's gold query uses them too, in Delta).
STATS_WINDOW = timedelta(minutes=5)
TRENDING_WINDOW = timedelta(minutes=10)
TRENDING_SLIDE = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def apply_live_events(
    conn: psycopg.Connection,
    events: pa.Table,
    *,
    horizon: datetime,
    retention: timedelta | None,
    keep_per_visitor: int = 50,
    windows: LiveWindows | None = None,
    recent_items: pa.Table | None = None,
    schema: str = GOLD_SCHEMA,
) -> LiveApplied:
    """Apply a batch of valid, parsed events (``live_clickstream_events`` columns) to the live
    tables, in one transaction; idempotent, like every loader here.

    - ``live_clickstream_events``: the events with an event time from ``horizon`` on that it does
      not hold yet (by ``event_id``); rows ingested longer ago than ``retention`` are pruned,
      unless their event time is still at or after the horizon (``retention`` None: no pruning in
      this call, for a caller that prunes less often than it applies);
    - ``user_recent_items``: every event with an item, as ``upsert_recent_items`` merges them (or,
      when given, ``recent_items``: the batch's latest item per visitor and item already, in
      ``upsert_recent_items``' columns, which keeps a large catch-up batch small);
    - with ``windows``: the ``windowed_stats`` and ``trending_items`` windows the events fall in
      and that start at or after ``horizon`` are recomputed from ``live_clickstream_events``.
      Those windows lie wholly after the horizon, so the table holds every event of theirs that
      any batch applied so far carried, each once: the counts are exact. Earlier windows are the
      caller's to compute (the stream job's gold query does, from silver).
    """
    if keep_per_visitor < 1:
        raise ValueError(f"apply_live_events: keep_per_visitor must be at least 1, got {keep_per_visitor}")
    horizon = _require_aware(horizon, "horizon")
    if retention is not None and retention <= timedelta(0):
        raise ValueError(f"apply_live_events: retention must be positive, got {retention}")
    columns = _LIVE_BATCH_COLUMNS
    data = _arrow_for_copy(events, columns, "live events")
    if recent_items is not None:
        recent_data = _arrow_for_copy(recent_items, _RECENT_ITEMS_COLUMNS, "user_recent_items")
    live = sql.Identifier(schema, "live_clickstream_events")
    names = sql.SQL(", ").join(sql.Identifier(column.name) for column in columns)
    applied = {"inserted": 0, "visitors": 0, "stats_windows": 0, "trending_windows": 0}
    with conn.transaction(), conn.cursor() as cur:
        stage = _stage(cur, data, columns, "live_events")
        cur.execute(sql.SQL("""
            INSERT INTO {live} ({names}) SELECT {names} FROM {stage} WHERE ts >= %(horizon)s
            ON CONFLICT (event_id) DO NOTHING
        """).format(live=live, names=names, stage=stage), {"horizon": horizon})
        applied["inserted"] = cur.rowcount
        if windows is not None and data.num_rows:
            touched = TouchedLiveWindows.of(data.column("ts"), horizon)
            _refresh_live_windows(cur, touched, windows, schema)
            applied["stats_windows"], applied["trending_windows"] = len(touched.stats), len(touched.trending)
        if recent_items is None:
            recent = sql.SQL("SELECT visitor_id, item_id, event AS last_event, ts AS last_seen_at FROM {} "
                             "WHERE item_id IS NOT NULL").format(stage)
        else:
            recent = sql.SQL("SELECT * FROM {}").format(_stage(cur, recent_data, _RECENT_ITEMS_COLUMNS,
                                                              "user_recent_items"))
        _merge_recent_items(cur, recent, keep_per_visitor, schema)
        applied["visitors"] = cur.execute(
            sql.SQL("SELECT count(DISTINCT visitor_id) FROM ({}) AS s").format(recent)).fetchone()[0]
        if retention is not None:
            # Rows a live window may still need stay, however long ago they came (future event times).
            cur.execute(sql.SQL("DELETE FROM {} WHERE ingested_at < now() - %s AND ts < %s").format(live),
                        (retention, horizon))
    return LiveApplied(**applied)


@dataclass(frozen=True)
class TouchedLiveWindows:
    """The live windows some events fall in: 5-minute ``windowed_stats`` windows and the 10-minute
    ``trending_items`` windows (sliding by 5) that start at or after a horizon."""

    stats: frozenset[datetime] = frozenset()
    trending: frozenset[datetime] = frozenset()

    @classmethod
    def of(cls, ts: pa.ChunkedArray | pa.Array, horizon: datetime) -> TouchedLiveWindows:
        """The windows of the event times ``ts`` (timezone-aware timestamps) at or after ``horizon``."""
        # Event times are after 1970 (the contract's rule), so integer division floors them.
        numbers = pc.unique(pc.divide(pc.cast(pc.cast(ts, _TIMESTAMP), pa.int64()), _SLIDE_US)).drop_null()
        return cls.spanning((_slide_start(n) for n in numbers.to_pylist()), horizon)

    @classmethod
    def spanning(cls, slides: Iterable[datetime], horizon: datetime) -> TouchedLiveWindows:
        """The windows of events in the 5-minute slides starting at ``slides``, from ``horizon`` on."""
        slides = set(slides)
        # An event belongs to the trending window starting in its slide and to the one a slide earlier.
        return cls(frozenset(s for s in slides if s >= horizon),
                   frozenset(s for start in slides for s in (start, start - TRENDING_SLIDE) if s >= horizon))

    def __or__(self, other: TouchedLiveWindows) -> TouchedLiveWindows:
        return TouchedLiveWindows(self.stats | other.stats, self.trending | other.trending)

    def since(self, horizon: datetime) -> TouchedLiveWindows:
        """Only the windows that start at or after ``horizon``."""
        return TouchedLiveWindows(frozenset(s for s in self.stats if s >= horizon),
                                  frozenset(s for s in self.trending if s >= horizon))

    def __bool__(self) -> bool:
        return bool(self.stats or self.trending)


def live_window_slides(start: datetime, end: datetime) -> list[datetime]:
    """The 5-minute slides (window starts) from the one holding ``start`` to the one holding ``end``."""
    first = (start - _EPOCH) // timedelta(microseconds=1) // _SLIDE_US
    last = (end - _EPOCH) // timedelta(microseconds=1) // _SLIDE_US
    return [_slide_start(n) for n in range(first, last + 1)]


_SLIDE_US = STATS_WINDOW // timedelta(microseconds=1)  # a 5-minute slide in microseconds


def _slide_start(number: int) -> datetime:
    """The start of the ``number``-th 5-minute slide since the epoch."""
    return _EPOCH + timedelta(microseconds=number * _SLIDE_US)


def live_windows_held(conn: psycopg.Connection, horizon: datetime, schema: str = GOLD_SCHEMA) -> TouchedLiveWindows:
    """The live windows that ``live_clickstream_events`` holds events of, from ``horizon`` on: what a
    writer that restarts recomputes once, in case it stopped between applying events and refreshing
    their windows."""
    first, last = conn.execute(
        sql.SQL("SELECT min(ts), max(ts) FROM {} WHERE ts >= %s").format(
            sql.Identifier(schema, "live_clickstream_events")), (horizon,)).fetchone()
    if first is None:
        return TouchedLiveWindows()
    return TouchedLiveWindows.spanning(live_window_slides(first, last), horizon)


def refresh_live_windows(conn: psycopg.Connection, touched: TouchedLiveWindows, windows: LiveWindows,
                         schema: str = GOLD_SCHEMA) -> None:
    """Recompute the ``touched`` windows of ``windowed_stats`` and ``trending_items`` from
    ``live_clickstream_events``, in one transaction (a savepoint inside the caller's). Only windows
    that lie wholly after the horizon the events were applied with are exact: see ``apply_live_events``."""
    with conn.transaction(), conn.cursor() as cur:
        _refresh_live_windows(cur, touched, windows, schema)


def _refresh_live_windows(cur: psycopg.Cursor, touched: TouchedLiveWindows, windows: LiveWindows,
                          schema: str) -> None:
    # Writers refresh one at a time, each until it commits: a refresh reads the rows committed before it
    # began, so without the lock two concurrent ones (consumers of one group) could each miss the
    # other's new rows and the later commit would leave a window short. Serialised, the last refresh
    # of a window follows every insert into it that committed before.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.live_windows.{schema}",))
    live = sql.Identifier(schema, "live_clickstream_events")
    _refresh_live_stats(cur, live, sorted(touched.stats), schema)
    _refresh_live_trending(cur, live, sorted(touched.trending), windows, schema)


def _refresh_live_stats(cur: psycopg.Cursor, live: sql.Identifier, starts: list[datetime], schema: str) -> None:
    if not starts:
        return
    stage = sql.Identifier(f"stage_live_stats_{uuid.uuid4().hex[:12]}")
    cur.execute(sql.SQL("""
        CREATE TEMP TABLE {stage} ON COMMIT DROP AS
        SELECT w AS window_start, w + %(length)s AS window_end, event, count(*)::bigint AS event_count,
               count(DISTINCT visitor_id)::bigint AS unique_users, count(DISTINCT item_id)::bigint AS unique_items
        FROM (SELECT date_bin(%(length)s, ts, %(epoch)s) AS w, event, visitor_id, item_id
              FROM {live} WHERE ts >= %(first)s AND ts < %(end)s) AS e
        WHERE w = ANY(%(starts)s)
        GROUP BY w, event
    """).format(stage=stage, live=live), {
        "length": STATS_WINDOW, "epoch": _EPOCH, "starts": starts,
        "first": starts[0], "end": starts[-1] + STATS_WINDOW})
    _replace_windows_from(cur, "windowed_stats", stage, starts, schema)


def _refresh_live_trending(cur: psycopg.Cursor, live: sql.Identifier, starts: list[datetime],
                           windows: LiveWindows, schema: str) -> None:
    if not starts:
        return
    stage = sql.Identifier(f"stage_live_trending_{uuid.uuid4().hex[:12]}")
    cur.execute(sql.SQL("""
        CREATE TEMP TABLE {stage} ON COMMIT DROP AS
        WITH weighted AS (
            SELECT w.start AS window_start, e.item_id, weight.value AS weight
            FROM {live} AS e
            JOIN unnest(%(events)s::text[], %(weights)s::float8[]) AS weight (event, value) USING (event)
            CROSS JOIN LATERAL (VALUES (date_bin(%(slide)s, e.ts, %(epoch)s)),
                                       (date_bin(%(slide)s, e.ts, %(epoch)s) - %(slide)s)) AS w (start)
            WHERE e.item_id IS NOT NULL AND e.ts >= %(first)s AND e.ts < %(end)s
        ), scored AS (
            SELECT window_start, item_id, sum(weight) AS score, count(*)::bigint AS event_count
            FROM weighted WHERE window_start = ANY(%(starts)s)
            GROUP BY window_start, item_id
        )
        SELECT window_start, window_start + %(length)s AS window_end, item_id, score, event_count, rank::integer
        FROM (SELECT *, row_number() OVER (PARTITION BY window_start ORDER BY score DESC, item_id) AS rank
              FROM scored) AS ranked
        WHERE rank <= %(top_n)s
    """).format(stage=stage, live=live), {
        "events": list(windows.weights), "weights": [float(v) for v in windows.weights.values()],
        "slide": TRENDING_SLIDE, "epoch": _EPOCH, "length": TRENDING_WINDOW, "starts": starts,
        "first": starts[0], "end": starts[-1] + TRENDING_WINDOW, "top_n": windows.top_n})
    _replace_windows_from(cur, "trending_items", stage, starts, schema)


# Helpers ----------------------------------------------------------------------------------------

def _arrow_for_copy(rows: pa.Table, columns: Sequence[_Column], what: str) -> pa.Table:
    """The columns a loader needs, in order and cast to their canonical types (extra ones dropped)."""
    missing = [column.name for column in columns if column.name not in rows.column_names]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {rows.column_names}")
    arrays = []
    for column in columns:
        array = rows.column(column.name)
        if pa.types.is_timestamp(column.arrow_type) and (
            not pa.types.is_timestamp(array.type) or array.type.tz is None
        ):
            raise ValueError(f"{what}.{column.name}: expected a timezone-aware timestamp, got {array.type}")
        if column.required and array.null_count:
            raise ValueError(f"{what}.{column.name}: {array.null_count} null value(s) in a required column")
        arrays.append(array.cast(column.arrow_type))
    return pa.Table.from_arrays(arrays, names=[column.name for column in columns])


def _require_aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: expected timezone-aware datetimes, got {value!r}")
    return value


def _require_within_windows(window_start: pa.ChunkedArray, starts: list[datetime], what: str) -> None:
    inside = pc.is_in(window_start, value_set=pa.array(starts, type=_TIMESTAMP))
    outside = pc.unique(window_start.filter(pc.invert(inside)))
    if len(outside):
        raise ValueError(f"{what}: rows for window(s) not in window_starts: {outside.to_pylist()[:5]}")


def _require_unique(data: pa.Table, key: Sequence[str], what: str) -> None:
    counts = data.group_by(list(key)).aggregate([([], "count_all")])
    duplicated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if duplicated.num_rows:
        raise ValueError(f"{what}: {duplicated.num_rows} key(s) {list(key)} occur more than once, "
                         f"e.g. {duplicated.slice(0, 3).to_pylist()}")


def _stage(cur: psycopg.Cursor, data: pa.Table, columns: Sequence[_Column], what: str) -> sql.Identifier:
    """COPY ``data`` into a new temporary table, dropped at commit; return its name."""
    # Unique so that two loads inside one caller's transaction (savepoints) do not collide.
    stage = sql.Identifier(f"stage_{what}_{uuid.uuid4().hex[:12]}")
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        stage,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(column.sql_type))
            for column in columns),
    ))
    if data.num_rows == 0:
        return stage
    copy_arrow(cur, stage, data.column_names, data.to_batches(max_chunksize=_COPY_CHUNK_ROWS))
    return stage


def copy_arrow(cur: psycopg.Cursor, target: sql.Composable, names: Sequence[str],
               batches: Iterable[pa.RecordBatch], *, freeze: bool = False) -> int:
    """COPY Arrow record batches (columns ``names``, in that order) into ``target``; return rows copied.

    Columns must be of types that Arrow's CSV writer writes as text Postgres parses: numbers, strings,
    booleans, timezone-aware timestamps. ``freeze`` (COPY FREEZE) is for a table created in the same
    transaction: its rows land frozen and all-visible, so index-only scans work without a VACUUM.
    """
    # Arrow writes nulls as empty fields and quotes every string, which is how COPY's CSV format
    # tells NULL from '' ; timestamps come out as ISO 8601 with a Z suffix.
    options = pacsv.WriteOptions(include_header=False)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv{})").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in names),
        sql.SQL(", FREEZE") if freeze else sql.SQL(""))
    copied = 0
    with cur.copy(statement) as copy:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            buffer = pa.BufferOutputStream()
            pacsv.write_csv(batch, buffer, options)
            copy.write(memoryview(buffer.getvalue()))
            copied += batch.num_rows
    return copied


def _upsert_changed_sql(
    target: sql.Identifier,
    stage: sql.Identifier,
    columns: Sequence[str],
    key: Sequence[str],
    values: Sequence[str],
) -> sql.Composed:
    """INSERT the staged rows; on a key conflict update only rows whose values differ."""
    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    return sql.SQL("""
        INSERT INTO {target} AS t ({names}) SELECT {names} FROM {stage}
        ON CONFLICT ({key}) DO UPDATE SET {assignments}, updated_at = now()
        WHERE ({current}) IS DISTINCT FROM ({incoming})
    """).format(
        target=target,
        names=names,
        stage=stage,
        key=sql.SQL(", ").join(sql.Identifier(name) for name in key),
        assignments=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in values),
        current=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(name)) for name in values),
        incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(name)) for name in values),
    )
