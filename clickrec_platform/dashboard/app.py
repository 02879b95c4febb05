"""The live dashboard, a Streamlit script: `clickrec dashboard` runs it (`streamlit run` on this file).

Every section is read by ``data`` (PostgreSQL live and published tables, silver.events through DuckDB,
the MLflow registry) and redrawn every ``CLICKREC_DASHBOARD_REFRESH_SECONDS`` by a fragment, without
reloading the page. Reads are cached for that long, shared by every open browser; the lake and the
registry, which change slowly and cost more to read, at most once a minute. A section whose data is not
there yet says so, and what to run, instead of drawing a chart; a source with nothing at all is not
cached, so its sections show up at the next refresh once its data arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from clickrec_platform.dashboard import charts, data
from clickrec_platform.settings import get_settings

log = logging.getLogger("clickrec.dashboard")

SLOW_SECTIONS_MIN_TTL_S = 60.0  # hour of day, funnel, model registry: read at most once a minute

settings = get_settings()
refresh_s = max(settings.dashboard_refresh_seconds, 1.0)

st.set_page_config(page_title="clickrec · live dashboard", page_icon=":material/monitoring:", layout="wide")


class _NotCached(Exception):
    """Carries a snapshot out of a cached function without caching it (Streamlit caches no exception)."""

    def __init__(self, snapshot: Any):
        self.snapshot = snapshot


def _cache_only_found(snapshot: Any) -> Any:
    """A source with nothing to show yet (down, or not written yet) is read again at the next refresh,
    not a minute later."""
    sections = [value for value in vars(snapshot).values() if not isinstance(value, str)]
    if all(isinstance(value, data.Missing) for value in sections):
        raise _NotCached(snapshot)
    return snapshot


def _uncached(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except _NotCached as held:
        return held.snapshot


@st.cache_data(ttl=refresh_s, show_spinner=False)
def _live_tables() -> data.LiveSnapshot:
    return _cache_only_found(data.live_snapshot(get_settings()))


@st.cache_data(ttl=max(refresh_s, SLOW_SECTIONS_MIN_TTL_S), show_spinner=False)
def _lake() -> data.LakeSnapshot:
    return _cache_only_found(data.lake_snapshot(get_settings()))


@st.cache_data(ttl=max(refresh_s, SLOW_SECTIONS_MIN_TTL_S), show_spinner=False)
def _registry() -> data.RegistrySnapshot:
    return _cache_only_found(data.registry_snapshot(get_settings()))


def section(title: str, value: Any, draw: Callable[[Any], None], level: Callable[[str], Any] = st.subheader) -> None:
    """A heading, then ``draw(value)``, or a note saying why there is nothing to draw."""
    level(title)
    if isinstance(value, data.Missing):
        (st.warning if value.error else st.info)(value.reason)
        return
    try:
        draw(value)
    except Exception as exc:  # noqa: BLE001 - one section failing to draw must not take the page down
        log.exception("dashboard: section %r failed to draw", title)
        st.warning(f"{title} could not be drawn: {type(exc).__name__}: {exc}")


def minor_heading(title: str) -> None:
    st.markdown(f"#### {title}")


def _time(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else pd.Timestamp(value).tz_convert(UTC).strftime("%Y-%m-%d %H:%M:%S")


def draw_event_counts(frame: pd.DataFrame) -> None:
    columns = st.columns(len(frame) + 1)
    columns[0].metric("all events", f"{int(frame['event_count'].sum()):,}")
    for column, row in zip(columns[1:], frame.itertuples(), strict=True):
        column.metric(row.event, f"{int(row.event_count):,}")
    st.altair_chart(charts.event_counts_chart(frame), width="stretch")
    st.caption(f"Counted by the stream job since it started ({settings.gold_schema}.event_statistics). "
               f"Latest event at {_time(frame['last_event_at'].max())} UTC (event time); "
               f"last micro-batch at {_time(frame['updated_at'].max())} UTC.")


def draw_windows(frame: pd.DataFrame) -> None:
    latest = frame[frame["window_start"] == frame["window_start"].max()]
    columns = st.columns(3)
    columns[0].metric("events in the latest window", f"{int(latest['event_count'].sum()):,}")
    views = latest.loc[latest["event"] == "view", "unique_users"]
    columns[1].metric("visitors viewing in it", f"{int(views.sum()):,}")
    columns[2].metric("windows shown", f"{frame['window_start'].nunique()}")
    st.altair_chart(charts.windows_chart(frame), width="stretch")
    st.caption(f"Event-time windows of 5 minutes ({settings.gold_schema}.windowed_stats): the latest "
               f"{data.LIVE_WINDOWS_SPAN.total_seconds() / 3600:g} hours the stream has seen, up to "
               f"{_time(frame['window_end'].max())} UTC.")


def draw_top_items(live: data.LiveSnapshot) -> None:
    trending_column, popular_column = st.columns(2)
    with trending_column:
        section("Trending now", live.trending, draw_trending, level=minor_heading)
    with popular_column:
        section("Most popular overall", live.popular, draw_popular, level=minor_heading)


def draw_trending(frame: pd.DataFrame) -> None:
    st.altair_chart(charts.top_items_chart(frame, "score", "weighted interactions", "#f58518"), width="stretch")
    st.caption(f"What `/trending` answers: views 1, carts 3, likes 4, purchases 5 in the windows that ended "
               f"within {data.TRENDING_SPAN.total_seconds() / 60:g} minutes of {_time(frame['as_of'].max())} UTC.")


def draw_popular(frame: pd.DataFrame) -> None:
    st.altair_chart(charts.top_items_chart(frame, "score", "popularity score", "#4c78a8"), width="stretch")
    st.caption(f"What `/popular-products` answers: the published list ({settings.gold_schema}.popular_items) "
               f"over {int(frame['window_days'].iloc[0])} days, model version {frame['model_version'].iloc[0]}.")


def draw_hourly(frame: pd.DataFrame) -> None:
    st.altair_chart(charts.hourly_chart(frame), width="stretch")
    busiest = frame.groupby("hour")["events"].sum()
    st.caption(f"Every event in silver.events by hour of day (UTC); busiest hour {int(busiest.idxmax()):02d}:00, "
               f"quietest {int(busiest.idxmin()):02d}:00.")


def draw_funnel(frame: pd.DataFrame) -> None:
    steps = frame.set_index("event")
    columns = st.columns(3)
    for column, (label, value) in zip(columns, (
            ("view → cart", steps.at["addtocart", "of_previous"]),
            ("cart → purchase", steps.at["transaction", "of_previous"]),
            ("view → purchase", steps.at["transaction", "of_first"])), strict=True):
        column.metric(label, "—" if pd.isna(value) else f"{value:.1%}")
    st.altair_chart(charts.funnel_chart(frame), width="stretch")
    st.caption("Distinct visitors in silver.events who viewed an item, added one to a cart, bought one "
               "(each step counted on its own, over the whole history).")


def draw_champion(champion: data.RegistryVersion, registered_model: str) -> None:
    metrics = data.headline_metrics(champion.metrics, settings.gate_metric)
    columns = st.columns(2 + min(len(metrics), 6))
    columns[0].metric("version", f"v{champion.version}")
    columns[1].metric("model", champion.model)
    for column, (name, value) in zip(columns[2:], metrics.items(), strict=False):
        column.metric(name, f"{value:.4f}")
    st.caption(f"Registered model `{registered_model}`, alias `champion`, run `{champion.run_id}`, registered "
               f"{_time(champion.registered_at)} UTC. Validation metrics, all visitors. Gate: {champion.gate_note or '—'}")


def draw_history(frame: pd.DataFrame) -> None:
    st.altair_chart(charts.history_chart(frame, settings.gate_metric), width="stretch")
    table = frame.assign(registered=frame["registered_at"].map(_time))[
        ["version", "registered", "model", "metric", "status", "gate"]].rename(
        columns={"metric": settings.gate_metric}).sort_values("version", ascending=False)
    st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 300),
                 column_config={settings.gate_metric: st.column_config.NumberColumn(format="%.4f")})


st.title("clickrec · live dashboard")


@st.fragment(run_every=refresh_s)
def dashboard() -> None:
    live, lake_now, reg = _uncached(_live_tables), _uncached(_lake), _uncached(_registry)
    st.caption(f"Updated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC · refreshes every {refresh_s:g} s · "
               f"gold schema `{settings.gold_schema}` · lake `{settings.lake_uri}` · MLflow {settings.tracking_uri}")
    section("Events by type", live.event_counts, draw_event_counts)
    section("Live 5-minute windows", live.windows, draw_windows)
    st.subheader(f"Top {data.TOP_N} items")
    draw_top_items(live)
    left, right = st.columns(2)
    with left:
        section("Traffic by hour of day", lake_now.hourly, draw_hourly)
    with right:
        section("Conversion funnel", lake_now.funnel, draw_funnel)
    section("Champion model", reg.champion, lambda champion: draw_champion(champion, reg.name))
    section("Registry history", reg.history, draw_history)


dashboard()
