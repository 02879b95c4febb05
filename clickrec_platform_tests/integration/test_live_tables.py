"""The Postgres sinks for the streaming gold tables, against the real local PostgreSQL.

Each test works in a schema of its own (dropped afterwards), never in ``gold``. Over 400 lines: one
module per component under test, as the rest of the suite (each loader's guarantees, one test each).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from clickrec_platform.events.contract import INTERACTION_WEIGHTS
from clickrec_platform.serving.live_ddl import ensure_live_tables
from clickrec_platform.serving.live_tables import (
    LiveWindows,
    add_event_statistics_once,
    apply_live_events,
    replace_windows,
    upsert_recent_items,
)

pytestmark = pytest.mark.integration

T0 = datetime(2015, 6, 1, 12, 0, tzinfo=UTC)
TS = pa.timestamp("ms", tz="UTC")
KEYS = {
    "windowed_stats": ("window_start", "event"),
    "trending_items": ("window_start", "item_id"),
    "event_statistics": ("event",),
    "user_recent_items": ("visitor_id", "item_id"),
    "live_clickstream_events": ("event_id",),
    "stream_sink_batches": ("sink", "batch_id"),
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Gold:
    """A fresh schema with the live tables, and an autocommit connection to read it with."""

    conn: psycopg.Connection
    schema: str
    dsn: str

    def rows(self, table: str, where: str = "TRUE", params: tuple = ()) -> list[dict]:
        """Every column of the matching rows, in key order."""
        query = sql.SQL("SELECT * FROM {} WHERE " + where + " ORDER BY {}").format(
            sql.Identifier(self.schema, table),
            sql.SQL(", ").join(map(sql.Identifier, KEYS[table])))
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def snapshot(self) -> dict[str, list[dict]]:
        return {table: self.rows(table) for table in KEYS}

    def count(self, table: str) -> int:
        row = self.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, table))).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def gold(stack) -> Iterator[Gold]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    dsn = stack.postgres_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_live_tables(conn, schema)
        try:
            yield Gold(conn, schema, dsn)
        finally:
            with psycopg.connect(dsn, autocommit=True) as cleanup:
                cleanup.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# Row builders ----------------------------------------------------------------------------------

def windowed_stats(*rows: tuple[float, str, int, int, int]) -> pa.Table:
    """(window start minute, event, event_count, unique_users, unique_items) per row."""
    return pa.table({
        "window_start": pa.array([at(r[0]) for r in rows], TS),
        "window_end": pa.array([at(r[0] + 5) for r in rows], TS),
        "event": pa.array([r[1] for r in rows], pa.string()),
        "event_count": pa.array([r[2] for r in rows], pa.int64()),
        "unique_users": pa.array([r[3] for r in rows], pa.int64()),
        "unique_items": pa.array([r[4] for r in rows], pa.int64()),
    })


def trending(window: float, item_ids: list[int]) -> pa.Table:
    """The top items of one window, best first."""
    n = len(item_ids)
    return pa.table({
        "window_start": pa.array([at(window)] * n, TS),
        "window_end": pa.array([at(window + 5)] * n, TS),
        "item_id": pa.array(item_ids, pa.int64()),
        "score": pa.array([10.0 * (n - i) + 0.1 for i in range(n)], pa.float64()),
        "event_count": pa.array([3 * (n - i) for i in range(n)], pa.int64()),
        "rank": pa.array(range(1, n + 1), pa.int32()),
    })


def increments(*rows: tuple[str, int, float, float]) -> pa.Table:
    """(event, event_count, first event minute, last event minute) per row."""
    return pa.table({
        "event": pa.array([r[0] for r in rows], pa.string()),
        "event_count": pa.array([r[1] for r in rows], pa.int64()),
        "first_event_at": pa.array([at(r[2]) for r in rows], TS),
        "last_event_at": pa.array([at(r[3]) for r in rows], TS),
    })


def recent(*rows: tuple[int, int, str, float]) -> pa.Table:
    """(visitor_id, item_id, last_event, minute seen) per row."""
    return pa.table({
        "visitor_id": pa.array([r[0] for r in rows], pa.int64()),
        "item_id": pa.array([r[1] for r in rows], pa.int64()),
        "last_event": pa.array([r[2] for r in rows], pa.string()),
        "last_seen_at": pa.array([at(r[3]) for r in rows], TS),
    })


def live_events(event_ids: list[str], **overrides: list) -> pa.Table:
    n = len(event_ids)
    columns = {
        "event_id": pa.array(event_ids, pa.string()),
        "ts": pa.array([at(i / 60) for i in range(n)], TS),
        "visitor_id": pa.array([i % 97 for i in range(n)], pa.int64()),
        "event": pa.array(["view"] * n, pa.string()),
        "item_id": pa.array([1000 + i for i in range(n)], pa.int64()),
        "session_id": pa.array([f"s-{i % 13}" for i in range(n)], pa.string()),
        "source": pa.array(["synthetic"] * n, pa.string()),
    }
    for name, values in overrides.items():
        columns[name] = pa.array(values, columns[name].type)
    return pa.table(columns)


# DDL ---------------------------------------------------------------------------------------------

def test_ensure_live_tables_is_idempotent_and_keeps_data_comments_and_indexes(gold):
    apply_live_events(gold.conn, live_events(["e1"]), horizon=at(-10), retention=timedelta(hours=1),
                      schema=gold.schema)

    ensure_live_tables(gold.conn, gold.schema)
    ensure_live_tables(gold.conn, gold.schema)

    assert [row["event_id"] for row in gold.rows("live_clickstream_events")] == ["e1"]
    tables = gold.conn.execute(
        """SELECT c.relname, obj_description(c.oid, 'pg_class'),
                  count(a.attnum) FILTER (WHERE col_description(c.oid, a.attnum) IS NULL)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = %s AND c.relkind = 'r' GROUP BY c.oid, c.relname""",
        (gold.schema,)).fetchall()
    assert {name for name, _, _ in tables} == set(KEYS)
    assert all(comment for _, comment, _ in tables), tables
    assert all(uncommented == 0 for _, _, uncommented in tables), tables
    indexes = dict(gold.conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (gold.schema,)).fetchall())
    assert "(window_end DESC, rank)" in indexes["trending_items_window_end_rank_idx"]
    assert "(visitor_id, last_seen_at DESC)" in indexes["user_recent_items_visitor_recency_idx"]
    assert "(ingested_at)" in indexes["live_clickstream_events_ingested_at_idx"]
    assert "(visitor_id, ts DESC)" in indexes["live_clickstream_events_visitor_ts_idx"]
    assert "(ts)" in indexes["live_clickstream_events_ts_idx"]


def test_ensure_live_tables_beside_a_writer_survives_being_a_deadlocks_victim(gold):
    """Found running the stream job beside the speed layer: its start (ensure_live_tables) and a speed-layer
    batch locked the live tables in opposite orders, Postgres aborted the job's DDL, and the job exited.
    Made deterministic here: a writer holds a row lock on live_clickstream_events, the DDL waits for it while
    holding its share lock on user_recent_items, then the writer wants user_recent_items. The DDL's session
    detects the deadlock first (the writer's deadlock_timeout is longer), so it is the victim."""
    ensure_live_tables(gold.conn, gold.schema)
    table = lambda name: sql.Identifier(gold.schema, name)  # noqa: E731
    failures: list[BaseException] = []
    with psycopg.connect(gold.dsn) as writer, psycopg.connect(gold.dsn, autocommit=True) as ddl:
        writer.execute("SET deadlock_timeout = '10s'")
        writer.execute(sql.SQL("INSERT INTO {} (event_id) VALUES ('held')").format(table("live_clickstream_events")))

        def prepare() -> None:
            try:
                ensure_live_tables(ddl, gold.schema)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        preparing = threading.Thread(target=prepare)
        preparing.start()
        deadline = time.monotonic() + 60
        while not gold.conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                                    (ddl.info.backend_pid,)).fetchone():
            assert time.monotonic() < deadline, "the DDL never waited for the writer's lock"
            time.sleep(0.05)
        writer.execute(sql.SQL("INSERT INTO {} VALUES (1, 2, 'view', now())").format(table("user_recent_items")))
        writer.commit()
        preparing.join(timeout=60)
    assert not preparing.is_alive() and not failures, failures
    assert [row["event_id"] for row in gold.rows("live_clickstream_events")] == ["held"]


# replace_windows ---------------------------------------------------------------------------------

def test_replace_windows_replaces_exactly_the_given_windows(gold):
    replace_windows(gold.conn, "windowed_stats", windowed_stats(
        (0, "view", 10, 4, 6), (0, "addtocart", 2, 2, 2),
        (5, "view", 20, 8, 9), (5, "addtocart", 3, 2, 3),
        (10, "view", 30, 9, 9),
    ), [at(0), at(5), at(10)], schema=gold.schema)
    untouched = gold.rows("windowed_stats", "window_start = %s", (at(0),))

    written = replace_windows(gold.conn, "windowed_stats", windowed_stats(
        (5, "view", 21, 8, 10), (5, "transaction", 1, 1, 1),
    ), [at(5), at(10)], schema=gold.schema)

    assert written == 2
    assert gold.rows("windowed_stats", "window_start = %s", (at(0),)) == untouched
    assert [(r["window_start"], r["window_end"], r["event"], r["event_count"], r["unique_users"],
             r["unique_items"]) for r in gold.rows("windowed_stats", "window_start <> %s", (at(0),))] == [
        (at(5), at(10), "transaction", 1, 1, 1),
        (at(5), at(10), "view", 21, 8, 10),
    ]


def test_replace_windows_drops_items_that_left_the_top_n(gold):
    replace_windows(gold.conn, "trending_items", pa.concat_tables([trending(0, [1, 2, 3]), trending(5, [7, 8])]),
                    [at(0), at(5)], schema=gold.schema)
    other_window = gold.rows("trending_items", "window_start = %s", (at(5),))

    replace_windows(gold.conn, "trending_items", trending(0, [4, 1, 2]), [at(0)], schema=gold.schema)

    top = gold.rows("trending_items", "window_start = %s", (at(0),))
    assert [(r["item_id"], r["rank"], r["score"], r["event_count"]) for r in top] == [
        (1, 2, 20.1, 6), (2, 3, 10.1, 3), (4, 1, 30.1, 9)]
    assert gold.rows("trending_items", "window_start = %s", (at(5),)) == other_window


@pytest.mark.parametrize("table, rows, window_starts, message", [
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1), (5, "view", 1, 1, 1)), [at(0)],
     "not in window_starts"),
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1)), [], "not in window_starts"),
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1), (0, "view", 2, 2, 2)), [at(0)],
     "more than once"),
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1)), [at(0).replace(tzinfo=None)],
     "timezone-aware"),
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1)).set_column(
        0, "window_start", pa.array([at(0).replace(tzinfo=None)], pa.timestamp("ms"))), [at(0)],
     "timezone-aware"),
    ("windowed_stats", windowed_stats((0, "view", 1, 1, 1)).drop_columns(["unique_items"]), [at(0)],
     "missing column"),
    ("user_recent_items", windowed_stats((0, "view", 1, 1, 1)), [at(0)], "must be one of"),
])
def test_replace_windows_rejects_bad_input_and_writes_nothing(gold, table, rows, window_starts, message):
    replace_windows(gold.conn, "windowed_stats", windowed_stats((0, "view", 9, 9, 9)), [at(0)],
                    schema=gold.schema)
    before = gold.snapshot()

    with pytest.raises(ValueError, match=message):
        replace_windows(gold.conn, table, rows, window_starts, schema=gold.schema)

    assert gold.snapshot() == before


# add_event_statistics_once -----------------------------------------------------------------------

def test_event_statistics_are_added_once_per_sink_and_batch(gold):
    assert add_event_statistics_once(gold.conn, "stats", 0, increments(
        ("view", 10, 0, 4), ("addtocart", 2, 1, 3)), schema=gold.schema)
    batch_1 = increments(
        ("view", 3, -2, 2), ("view", 2, -1, 3),      # first moves earlier, last stays at 4
        ("addtocart", 1, 2, 9),                      # first stays at 1, last moves later
        ("transaction", 1, 5, 5),
    )
    assert add_event_statistics_once(gold.conn, "stats", 1, batch_1, schema=gold.schema)
    after_first = gold.snapshot()

    assert add_event_statistics_once(gold.conn, "stats", 1, batch_1, schema=gold.schema) is False
    assert gold.snapshot() == after_first
    totals = {r["event"]: (r["event_count"], r["first_event_at"], r["last_event_at"])
              for r in gold.rows("event_statistics")}
    assert totals == {
        "view": (15, at(-2), at(4)),
        "addtocart": (3, at(1), at(9)),
        "transaction": (1, at(5), at(5)),
    }

    # Bookkeeping is per sink: another sink's batch 1 is a different batch.
    assert add_event_statistics_once(gold.conn, "other", 1, increments(("view", 1, 0, 0)), schema=gold.schema)
    assert {r["event"]: r["event_count"] for r in gold.rows("event_statistics")}["view"] == 16
    assert [(r["sink"], r["batch_id"]) for r in gold.rows("stream_sink_batches")] == [
        ("other", 1), ("stats", 0), ("stats", 1)]


def test_event_statistics_batch_that_fails_is_not_recorded(gold):
    bad = increments(("view", 1, 0, 0)).set_column(0, "event", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="null"):
        add_event_statistics_once(gold.conn, "stats", 7, bad, schema=gold.schema)

    assert add_event_statistics_once(gold.conn, "stats", 7, increments(("view", 1, 0, 0)), schema=gold.schema)
    assert gold.rows("event_statistics")[0]["event_count"] == 1


# upsert_recent_items -----------------------------------------------------------------------------

def test_recent_items_keep_the_latest_interaction_and_never_move_backwards(gold):
    touched = upsert_recent_items(gold.conn, recent(
        (1, 10, "view", 0), (1, 10, "addtocart", 5), (1, 10, "view", 3),
        (1, 11, "view", 1), (2, 10, "view", 2),
    ), schema=gold.schema)
    assert touched == 2

    assert upsert_recent_items(gold.conn, recent((1, 10, "transaction", -60)), schema=gold.schema) == 1
    state = {(r["visitor_id"], r["item_id"]): (r["last_event"], r["last_seen_at"])
             for r in gold.rows("user_recent_items")}
    assert state == {(1, 10): ("addtocart", at(5)), (1, 11): ("view", at(1)), (2, 10): ("view", at(2))}

    upsert_recent_items(gold.conn, recent((1, 10, "transaction", 30)), schema=gold.schema)
    assert gold.rows("user_recent_items", "visitor_id = 1 AND item_id = 10")[0]["last_event"] == "transaction"


def test_recent_items_tie_on_time_resolves_the_same_whatever_the_order(gold):
    upsert_recent_items(gold.conn, recent((1, 10, "view", 0), (1, 10, "addtocart", 0)), schema=gold.schema)
    upsert_recent_items(gold.conn, recent((2, 10, "addtocart", 0), (2, 10, "view", 0)), schema=gold.schema)
    upsert_recent_items(gold.conn, recent((3, 10, "view", 0)), schema=gold.schema)
    upsert_recent_items(gold.conn, recent((3, 10, "addtocart", 0)), schema=gold.schema)
    upsert_recent_items(gold.conn, recent((4, 10, "addtocart", 0)), schema=gold.schema)
    upsert_recent_items(gold.conn, recent((4, 10, "view", 0)), schema=gold.schema)

    assert len({r["last_event"] for r in gold.rows("user_recent_items")}) == 1


def test_recent_items_are_trimmed_only_for_the_visitors_touched(gold):
    upsert_recent_items(gold.conn, recent(*[(v, 100 + m, "view", m) for v in (1, 2) for m in range(6)]),
                        keep_per_visitor=10, schema=gold.schema)

    touched = upsert_recent_items(gold.conn, recent((2, 999, "view", 10), *[(3, i, "view", i) for i in range(5)]),
                                  keep_per_visitor=3, schema=gold.schema)

    assert touched == 2
    items: dict[int, set[int]] = {}
    for r in gold.rows("user_recent_items"):
        items.setdefault(r["visitor_id"], set()).add(r["item_id"])
    assert items == {1: {100, 101, 102, 103, 104, 105}, 2: {999, 105, 104}, 3: {4, 3, 2}}


# live_clickstream_events -------------------------------------------------------------------------

def test_live_events_skip_duplicates_and_are_pruned_after_the_retention(gold):
    tricky = 'a,"b"\nc'
    batch = live_events(["e1", "e2", "e2", "e3"], item_id=[1, 2, 2, None], session_id=[tricky, "", "", None])

    def insert(events: pa.Table, horizon: datetime) -> int:
        return apply_live_events(gold.conn, events, horizon=horizon, retention=timedelta(hours=1),
                                 schema=gold.schema).inserted

    assert insert(batch, at(-10)) == 3
    assert insert(batch, at(-10)) == 0
    rows = {r["event_id"]: r for r in gold.rows("live_clickstream_events")}
    assert sorted(rows) == ["e1", "e2", "e3"]
    assert (rows["e1"]["session_id"], rows["e2"]["session_id"], rows["e3"]["session_id"]) == (tricky, "", None)
    assert (rows["e3"]["item_id"], rows["e1"]["ts"], rows["e1"]["visitor_id"]) == (None, at(0), 0)

    gold.conn.execute(sql.SQL("UPDATE {} SET ingested_at = now() - interval '2 hours' WHERE event_id = 'e1'")
                      .format(sql.Identifier(gold.schema, "live_clickstream_events")))
    assert insert(live_events(["e4"], ts=[at(5)]), horizon=at(1)) == 1

    assert [r["event_id"] for r in gold.rows("live_clickstream_events")] == ["e2", "e3", "e4"]


def test_loading_200k_live_events_takes_seconds(gold):
    n = 200_000
    rng = np.random.default_rng(7)
    batch = pa.table({
        "event_id": pa.array([f"evt-{i:012d}" for i in range(n)]),
        "ts": pa.array(1_433_160_000_000 + np.arange(n, dtype=np.int64) * 50, TS),
        "visitor_id": pa.array(rng.integers(0, 50_000, n), pa.int64()),
        "event": pa.array(rng.choice(["view", "addtocart", "transaction"], n), pa.string()),
        "item_id": pa.array(rng.integers(0, 200_000, n), pa.int64()),
        "session_id": pa.array([f"session-{i // 20}" for i in range(n)]),
        "source": pa.array(["synthetic"] * n),
    })

    def apply():
        return apply_live_events(gold.conn, batch, horizon=datetime.fromtimestamp(1_433_160_000, UTC),
                                 retention=timedelta(hours=1), windows=LiveWindows(50, INTERACTION_WEIGHTS),
                                 schema=gold.schema)

    started = time.perf_counter()
    first = apply()
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    replayed = apply().inserted
    replay_s = time.perf_counter() - started
    inserted = first.inserted

    print(f"\napply_live_events: {n:,} events, {first.stats_windows} + {first.trending_windows} windows, "
          f"{first.visitors:,} visitors in {first_s:.2f} s ({n / first_s:,.0f} events/s); "
          f"replay (all duplicates) in {replay_s:.2f} s")
    assert (inserted, replayed) == (n, 0)
    assert gold.count("live_clickstream_events") == n


# apply_live_events -------------------------------------------------------------------------------

def random_events(rng: np.random.Generator, n: int, first: datetime, minutes: float, prefix: str) -> pa.Table:
    """``n`` valid events spread over ``minutes`` from ``first``; a few visitors and items, so
    windows have repeats; searches carry no item."""
    event = rng.choice(["view", "view", "addtocart", "transaction", "like", "search"], n)
    return pa.table({
        "event_id": pa.array([f"{prefix}-{i}" for i in range(n)]),
        "ts": pa.array([first + timedelta(minutes=float(m)) for m in rng.uniform(0, minutes, n)], TS),
        "visitor_id": pa.array(rng.integers(1, 40, n), pa.int64()),
        "event": pa.array(event, pa.string()),
        "item_id": pa.array([None if e == "search" else int(i) for e, i in zip(event, rng.integers(1, 25, n), strict=True)],
                            pa.int64()),
        "session_id": pa.array(["s"] * n),
        "source": pa.array(["synthetic"] * n),
    })


def expected_windows(events: list[dict], horizon: datetime, top_n: int) -> tuple[set, set]:
    """windowed_stats and trending_items rows, computed in plain Python, of the windows from ``horizon``."""
    unique = {e["event_id"]: e for e in events}.values()
    stats: dict = {}
    scores: dict = {}
    for e in unique:
        ts = e["ts"]
        slide = ts - timedelta(minutes=ts.minute % 5, seconds=ts.second, microseconds=ts.microsecond)
        if slide >= horizon:
            counts = stats.setdefault((slide, e["event"]), [0, set(), set()])
            counts[0] += 1
            counts[1].add(e["visitor_id"])
            if e["item_id"] is not None:
                counts[2].add(e["item_id"])
        if e["item_id"] is not None and e["event"] in INTERACTION_WEIGHTS:
            for start in (slide, slide - timedelta(minutes=5)):
                if start >= horizon:
                    key = (start, e["item_id"])
                    score, count = scores.get(key, (0.0, 0))
                    scores[key] = (score + INTERACTION_WEIGHTS[e["event"]], count + 1)
    windows = {(w, ev, c[0], len(c[1]), len(c[2])) for (w, ev), c in stats.items()}
    top = set()
    for start in {w for w, _ in scores}:
        ranked = sorted(((-s, item, n) for (w, item), (s, n) in scores.items() if w == start))[:top_n]
        top |= {(start, item, -s, n, rank) for rank, (s, item, n) in enumerate(ranked, 1)}
    return windows, top


def test_live_events_give_exact_windows_from_the_horizon_on_across_batches(gold):
    rng = np.random.default_rng(3)
    horizon = at(60)
    # Batches straddle the horizon and overlap one another's windows; the third repeats events.
    first = random_events(rng, 400, at(50), 25, "a")
    second = random_events(rng, 300, at(62), 20, "b")
    third = pa.concat_tables([random_events(rng, 200, at(70), 14, "c"), first.slice(0, 50), second.slice(0, 80)])
    windows = LiveWindows(top_n=5, weights=INTERACTION_WEIGHTS)

    applied = [apply_live_events(gold.conn, batch, horizon=horizon, retention=timedelta(hours=1),
                                 keep_per_visitor=3, windows=windows, schema=gold.schema)
               for batch in (first, second, third)]

    everything = first.to_pylist() + second.to_pylist() + third.to_pylist()
    stats, top = expected_windows(everything, horizon, top_n=5)
    assert {(r["window_start"], r["event"], r["event_count"], r["unique_users"], r["unique_items"])
            for r in gold.rows("windowed_stats")} == stats
    assert {(r["window_start"], r["item_id"], r["score"], r["event_count"], r["rank"])
            for r in gold.rows("trending_items")} == top
    assert min(w for w, *_ in stats) == horizon  # windows before it are not the live path's
    # Each event from the horizon on is kept once; earlier ones are not.
    kept = {e["event_id"] for e in everything if e["ts"] >= horizon}
    assert {r["event_id"] for r in gold.rows("live_clickstream_events")} == kept
    assert sum(a.inserted for a in applied) == len(kept) and applied[2].inserted == 200 - sum(
        1 for e in third.slice(0, 200).to_pylist() if e["ts"] < horizon)
    # Recent items: every event with an item counts, before the horizon too; 3 per visitor.
    latest: dict = {}
    for e in everything:
        if e["item_id"] is not None:
            key = (e["visitor_id"], e["item_id"])
            latest[key] = max(latest.get(key, (e["ts"], e["event"])), (e["ts"], e["event"]))
    per_visitor: dict = {}
    for (visitor, item), (ts, _event) in latest.items():
        per_visitor.setdefault(visitor, []).append((ts, item))
    expected_recent = {(v, item) for v, seen in per_visitor.items() for _ts, item in sorted(seen)[-3:]}
    assert {(r["visitor_id"], r["item_id"]) for r in gold.rows("user_recent_items")} == expected_recent


def test_replaying_a_live_batch_changes_nothing_and_bad_input_writes_nothing(gold):
    batch = random_events(np.random.default_rng(5), 300, at(0), 12, "r")
    windows = LiveWindows(top_n=10, weights=INTERACTION_WEIGHTS)

    def apply(events: pa.Table):
        return apply_live_events(gold.conn, events, horizon=at(-30), retention=timedelta(hours=1),
                                 windows=windows, schema=gold.schema)

    first_applied = apply(batch)
    first = gold.snapshot()
    assert first_applied.inserted == 300 and first_applied.stats_windows == 3 and first_applied.trending_windows == 4
    assert apply(batch).inserted == 0
    assert gold.snapshot() == first  # updated_at and ingested_at included

    with pytest.raises(ValueError, match="visitor_id"):
        apply(live_events(["x1", "x2"], visitor_id=[1, None]))
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_live_events(gold.conn, batch, horizon=datetime(2015, 6, 1), retention=timedelta(hours=1),
                          schema=gold.schema)
    assert gold.snapshot() == first


def test_latest_items_given_by_the_caller_are_merged_like_the_events_themselves(gold):
    events = random_events(np.random.default_rng(8), 500, at(0), 30, "m")
    apply_live_events(gold.conn, events, horizon=at(-60), retention=timedelta(hours=1), keep_per_visitor=4,
                      schema=gold.schema)
    from_events = gold.rows("user_recent_items")
    gold.conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(gold.schema, "user_recent_items")))

    # The caller's summary (as the stream job's catch-up makes it in Spark): latest per visitor and item.
    latest: dict = {}
    for e in events.to_pylist():
        if e["item_id"] is not None:
            key = (e["visitor_id"], e["item_id"])
            latest[key] = max(latest.get(key, (e["ts"], e["event"])), (e["ts"], e["event"]))
    summary = pa.table({"visitor_id": pa.array([v for v, _ in latest], pa.int64()),
                        "item_id": pa.array([i for _, i in latest], pa.int64()),
                        "last_event": [event for _ts, event in latest.values()],
                        "last_seen_at": pa.array([ts for ts, _event in latest.values()], TS)})
    applied = apply_live_events(gold.conn, events.slice(0, 0), horizon=at(-60), retention=timedelta(hours=1),
                                keep_per_visitor=4, recent_items=summary, schema=gold.schema)

    assert applied.visitors == len({v for v, _ in latest}) and applied.inserted == 0
    assert gold.rows("user_recent_items") == from_events


def test_live_events_that_a_live_window_needs_outlive_the_retention(gold):
    batch = live_events(["old", "future"], ts=[at(0), at(120)])
    apply_live_events(gold.conn, batch, horizon=at(-10), retention=timedelta(hours=1), schema=gold.schema)
    gold.conn.execute(sql.SQL("UPDATE {} SET ingested_at = now() - interval '2 hours'")
                      .format(sql.Identifier(gold.schema, "live_clickstream_events")))

    apply_live_events(gold.conn, live_events(["next"], ts=[at(90)]), horizon=at(60), retention=timedelta(hours=1),
                      schema=gold.schema)

    # "old" is past the retention and before the horizon; "future" is past the retention but a
    # window from the horizon on still counts it.
    assert [r["event_id"] for r in gold.rows("live_clickstream_events")] == ["future", "next"]


# Readers see a batch whole or not at all ---------------------------------------------------------

def test_reader_sees_the_old_windows_until_replace_windows_commits(gold):
    old = windowed_stats((0, "view", 10, 1, 1), (0, "addtocart", 2, 1, 1), (0, "transaction", 1, 1, 1))
    new = windowed_stats((0, "view", 11, 1, 1), (0, "like", 4, 1, 1))
    replace_windows(gold.conn, "windowed_stats", old, [at(0)], schema=gold.schema)

    def seen() -> list[tuple[str, int]]:
        return [(r["event"], r["event_count"]) for r in gold.rows("windowed_stats")]

    with psycopg.connect(gold.dsn) as writer:
        with writer.transaction():
            replace_windows(writer, "windowed_stats", new, [at(0)], schema=gold.schema)
            assert seen() == [("addtocart", 2), ("transaction", 1), ("view", 10)]
        assert seen() == [("like", 4), ("view", 11)]


def test_concurrent_reader_never_sees_half_a_replacement(gold):
    windows = [at(5 * w) for w in range(4)]
    sets = [pa.concat_tables([trending(5 * w, list(range(offset, offset + size))) for w in range(4)])
            for offset, size in ((0, 3_000), (1_500, 2_000))]
    signature = sql.SQL("SELECT count(*), sum(item_id), sum(event_count) FROM {}").format(
        sql.Identifier(gold.schema, "trending_items"))
    observed: set[tuple | None] = set()
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(gold.dsn, autocommit=True) as reader:
            while not stop.is_set():
                observed.add(reader.execute(signature).fetchone())

    with psycopg.connect(gold.dsn, autocommit=True) as writer:
        expected = set()
        for rows in sets:
            replace_windows(writer, "trending_items", rows, windows, schema=gold.schema)
            expected.add(writer.execute(signature).fetchone())
        thread = threading.Thread(target=read)
        thread.start()
        try:
            for i in range(12):
                replace_windows(writer, "trending_items", sets[i % 2], windows, schema=gold.schema)
        finally:
            stop.set()
            thread.join()

    assert observed, "the reader never ran"
    assert observed <= expected, observed - expected


# Replays ---------------------------------------------------------------------------------------

def test_replaying_every_loader_leaves_every_table_identical(gold):
    stats = windowed_stats((0, "view", 10, 4, 6), (0, "addtocart", 2, 2, 2))
    top = trending(0, [5, 6, 7])
    items = recent(*[(1, i, "view", i) for i in range(8)], (2, 1, "like", 0))
    events = live_events([f"e{i}" for i in range(10)])

    def load() -> tuple:
        return (
            replace_windows(gold.conn, "windowed_stats", stats, [at(0)], schema=gold.schema),
            replace_windows(gold.conn, "trending_items", top, [at(0)], schema=gold.schema),
            add_event_statistics_once(gold.conn, "stats", 3, increments(("view", 10, 0, 4)), schema=gold.schema),
            upsert_recent_items(gold.conn, items, keep_per_visitor=5, schema=gold.schema),
            apply_live_events(gold.conn, events, horizon=at(-10), retention=timedelta(hours=1),
                              schema=gold.schema).inserted,
        )

    assert load() == (2, 3, True, 2, 10)
    first = gold.snapshot()
    assert all(first.values()), first

    assert load() == (2, 3, False, 2, 0)
    assert gold.snapshot() == first  # updated_at, ingested_at and committed_at included
