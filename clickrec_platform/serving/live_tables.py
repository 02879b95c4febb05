"""PostgreSQL sinks for the streaming gold tables (schema ``gold``).

The Spark job's ``foreachBatch`` computes small result sets, turns them into pyarrow Tables on the
driver and hands them here with a psycopg connection. Every loader

- runs in one transaction (``conn.transaction()``), so a reader sees a batch whole or not at all;
  called inside a transaction of the caller's, it becomes a savepoint and commits with the caller's;
- bulk-loads with ``COPY`` into a temporary staging table (``serving/pg_copy.py``, which publishing
  uses too) and applies it with set-based SQL, never row by row;
- is idempotent: called again with the same arguments it leaves the tables as they were, so a
  replayed micro-batch changes nothing. Overwrites only touch rows whose values differ, so even
  ``updated_at`` keeps its value on a replay. Additive increments, which are not idempotent by
  nature, are guarded by ``(sink, batch_id)`` bookkeeping in ``stream_sink_batches``.

``apply_live_events`` is the stream job's latency path: one transaction that records a batch of
events, merges each visitor's recent items and recomputes the recent windows in Postgres itself.

Timestamps must be timezone-aware (any unit, any zone; stored as ``timestamptz``): a naive
timestamp is ambiguous and is rejected with ``ValueError``, as are missing columns and nulls in key
columns, all before anything is written. Call ``live_ddl.ensure_live_tables`` once before loading
(the tables' DDL and comments are in ``serving/live_ddl.py``).

Over 400 lines because every loader shares the same guarantees (one transaction, COPY staging, replay-safe
bookkeeping, validation before writing); kept together, the rules above are stated once and each loader
is read beside the others it must agree with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from clickrec_platform.serving.live_ddl import BATCHES_TABLE, GOLD_SCHEMA
from clickrec_platform.serving.pg_copy import (
    TIMESTAMP,
    CopyColumn,
    arrow_for_copy,
    require_unique,
    stage_rows,
    upsert_changed_sql,
)

_WINDOWED_STATS_COLUMNS = (
    CopyColumn("window_start", "timestamptz", TIMESTAMP, required=True),
    CopyColumn("window_end", "timestamptz", TIMESTAMP),
    CopyColumn("event", "text", pa.string(), required=True),
    CopyColumn("event_count", "bigint", pa.int64()),
    CopyColumn("unique_users", "bigint", pa.int64()),
    CopyColumn("unique_items", "bigint", pa.int64()),
)
_TRENDING_ITEMS_COLUMNS = (
    CopyColumn("window_start", "timestamptz", TIMESTAMP, required=True),
    CopyColumn("window_end", "timestamptz", TIMESTAMP),
    CopyColumn("item_id", "bigint", pa.int64(), required=True),
    CopyColumn("score", "double precision", pa.float64()),
    CopyColumn("event_count", "bigint", pa.int64()),
    CopyColumn("rank", "integer", pa.int32()),
)
_EVENT_STATISTICS_COLUMNS = (
    CopyColumn("event", "text", pa.string(), required=True),
    CopyColumn("event_count", "bigint", pa.int64(), required=True),
    CopyColumn("first_event_at", "timestamptz", TIMESTAMP),
    CopyColumn("last_event_at", "timestamptz", TIMESTAMP),
)
_RECENT_ITEMS_COLUMNS = (
    CopyColumn("visitor_id", "bigint", pa.int64(), required=True),
    CopyColumn("item_id", "bigint", pa.int64(), required=True),
    CopyColumn("last_event", "text", pa.string()),
    CopyColumn("last_seen_at", "timestamptz", TIMESTAMP, required=True),
)
_LIVE_EVENTS_COLUMNS = (
    CopyColumn("event_id", "text", pa.string(), required=True),
    CopyColumn("ts", "timestamptz", TIMESTAMP),
    CopyColumn("visitor_id", "bigint", pa.int64()),
    CopyColumn("event", "text", pa.string()),
    CopyColumn("item_id", "bigint", pa.int64()),
    CopyColumn("session_id", "text", pa.string()),
    CopyColumn("source", "text", pa.string()),
)

LIVE_EVENT_COLUMNS = tuple(column.name for column in _LIVE_EVENTS_COLUMNS)  # what apply_live_events takes

# A batch for apply_live_events: valid events, so time, visitor and type are always there.
_LIVE_BATCH_COLUMNS = tuple(
    CopyColumn(c.name, c.sql_type, c.arrow_type, required=c.name in ("event_id", "ts", "visitor_id", "event"))
    for c in _LIVE_EVENTS_COLUMNS)

# Tables whose rows belong to a time window and are replaced a window at a time: columns and key.
_WINDOWED_TABLES: dict[str, tuple[tuple[CopyColumn, ...], tuple[str, ...]]] = {
    "windowed_stats": (_WINDOWED_STATS_COLUMNS, ("window_start", "event")),
    "trending_items": (_TRENDING_ITEMS_COLUMNS, ("window_start", "item_id")),
}


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
    data = arrow_for_copy(rows, columns, table)
    starts = [_require_aware(start, "window_starts") for start in window_starts]
    _require_within_windows(data.column("window_start"), starts, table)
    require_unique(data, key, table)
    if not starts:
        return 0

    with conn.transaction(), conn.cursor() as cur:
        _replace_windows_from(cur, table, stage_rows(cur, data, columns, table), starts, schema)
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
    cur.execute(upsert_changed_sql(target, stage, [c.name for c in columns], key, values))


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
    data = arrow_for_copy(increments, columns, "event_statistics")
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
        stage = stage_rows(cur, data, columns, "event_statistics")
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
    data = arrow_for_copy(rows, columns, "user_recent_items")
    if data.num_rows == 0:
        return 0
    visitors = pc.count_distinct(data.column("visitor_id")).as_py()
    with conn.transaction(), conn.cursor() as cur:
        stage = stage_rows(cur, data, columns, "user_recent_items")
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
    data = arrow_for_copy(events, columns, "live events")
    if recent_items is not None:
        recent_data = arrow_for_copy(recent_items, _RECENT_ITEMS_COLUMNS, "user_recent_items")
    live = sql.Identifier(schema, "live_clickstream_events")
    names = sql.SQL(", ").join(sql.Identifier(column.name) for column in columns)
    applied = {"inserted": 0, "visitors": 0, "stats_windows": 0, "trending_windows": 0}
    with conn.transaction(), conn.cursor() as cur:
        stage = stage_rows(cur, data, columns, "live_events")
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
            recent = sql.SQL("SELECT * FROM {}").format(stage_rows(cur, recent_data, _RECENT_ITEMS_COLUMNS,
                                                              "user_recent_items"))
        _merge_recent_items(cur, recent, keep_per_visitor, schema)
        visitors = cur.execute(
            sql.SQL("SELECT count(DISTINCT visitor_id) FROM ({}) AS s").format(recent)).fetchone()
        assert visitors is not None  # a count has one row
        applied["visitors"] = visitors[0]
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
        numbers = pc.unique(pc.divide(pc.cast(pc.cast(ts, TIMESTAMP), pa.int64()), _SLIDE_US)).drop_null()
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
    span = conn.execute(
        sql.SQL("SELECT min(ts), max(ts) FROM {} WHERE ts >= %s").format(
            sql.Identifier(schema, "live_clickstream_events")), (horizon,)).fetchone()
    assert span is not None  # an aggregate without grouping has one row
    first, last = span
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

def _require_aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: expected timezone-aware datetimes, got {value!r}")
    return value


def _require_within_windows(window_start: pa.ChunkedArray, starts: list[datetime], what: str) -> None:
    inside = pc.is_in(window_start, value_set=pa.array(starts, type=TIMESTAMP))
    outside = pc.unique(window_start.filter(pc.invert(inside)))
    if len(outside):
        raise ValueError(f"{what}: rows for window(s) not in window_starts: {outside.to_pylist()[:5]}")
