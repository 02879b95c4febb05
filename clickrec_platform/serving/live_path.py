"""The live tables as the settings configure them: the live span's horizon, the windows' shape, and
``apply_live_events`` / ``refresh_live_windows`` bound to them, for every writer of the live path
(the speed layer, the stream job's catch-up and its optional Spark live query)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa

from clickrec_platform.events.contract import INTERACTION_WEIGHTS
from clickrec_platform.serving.live_tables import (
    LiveApplied,
    LiveWindows,
    TouchedLiveWindows,
    apply_live_events,
    refresh_live_windows,
)
from clickrec_platform.settings import Settings


def live_horizon(settings: Settings) -> datetime:
    """Where the live span of event time begins now: later windows are the live path's, earlier ones the
    stream job's gold query's (from silver)."""
    return datetime.now(UTC) - timedelta(minutes=settings.live_window_minutes)


def live_windows(settings: Settings) -> LiveWindows:
    return LiveWindows(settings.trending_top_n, INTERACTION_WEIGHTS)


def post_live_events(conn: psycopg.Connection, settings: Settings, events: pa.Table, *, windows: bool,
                     recent_items: pa.Table | None = None, prune: bool = True) -> LiveApplied:
    """``apply_live_events`` with the settings, from the current ``live_horizon``; ``prune``: also drop the
    rows of ``live_clickstream_events`` past their retention."""
    return apply_live_events(
        conn, events, horizon=live_horizon(settings),
        retention=timedelta(minutes=settings.live_events_retention_minutes) if prune else None,
        keep_per_visitor=settings.recent_items_per_visitor,
        windows=live_windows(settings) if windows else None,
        recent_items=recent_items, schema=settings.gold_schema)


def refresh_windows(conn: psycopg.Connection, settings: Settings, touched: TouchedLiveWindows) -> TouchedLiveWindows:
    """Recompute the ``touched`` windows that still start at or after the horizon; return those."""
    current = touched.since(live_horizon(settings))
    if current:
        refresh_live_windows(conn, current, live_windows(settings), schema=settings.gold_schema)
    return current
