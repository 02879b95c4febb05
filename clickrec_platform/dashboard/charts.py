"""The dashboard's charts (Altair / Vega-Lite), each from a frame that ``data`` shaped.

Times are drawn in UTC (the lake's and the stream's clock), and every event type keeps one colour
across charts.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from clickrec_platform.dashboard.data import (
    CANDIDATE,
    CHALLENGER,
    CHAMPION_NOW,
    FORMER_CHAMPION,
    event_types_in,
)

_EVENT_COLOURS = {"view": "#4c78a8", "addtocart": "#f58518", "transaction": "#54a24b", "like": "#e45756",
                  "search": "#b279a2"}
_STATUS_COLOURS = {CHAMPION_NOW: "#d62728", FORMER_CHAMPION: "#ff9896", CHALLENGER: "#1f77b4",
                   CANDIDATE: "#c7c7c7"}
_UTC = alt.Scale(type="utc")


def _utc_text(times: pd.Series) -> pd.Series:
    """Timestamps as UTC text for tooltips (Vega would show the browser's time zone)."""
    return pd.to_datetime(times, utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")


def _event_colour(events: list[str], title: str | None = "event") -> alt.Color:
    palette = [_EVENT_COLOURS.get(e, "#9d755d") for e in events]
    return alt.Color("event:N", title=title, scale=alt.Scale(domain=events, range=palette), sort=events)


def event_counts_chart(frame: pd.DataFrame) -> alt.Chart:
    """Events per type since the stream started: horizontal bars with the count written at the end."""
    events = event_types_in(frame["event"].tolist())
    data = frame.assign(last_event=_utc_text(frame["last_event_at"]))
    base = alt.Chart(data).encode(
        y=alt.Y("event:N", sort=events, title=None),
        x=alt.X("event_count:Q", title="events"),
        tooltip=["event", alt.Tooltip("event_count:Q", format=","),
                 alt.Tooltip("last_event:N", title="last event (UTC)")])
    bars = base.mark_bar().encode(color=_event_colour(events, None).legend(None))
    labels = base.mark_text(align="left", dx=4).encode(text=alt.Text("event_count:Q", format=","))
    return (bars + labels).properties(height=alt.Step(28))


def windows_chart(frame: pd.DataFrame) -> alt.Chart:
    """Events per 5-minute window and type (a log-like scale: views outnumber purchases 100 to 1)."""
    events = event_types_in(frame["event"].tolist())
    data = frame.assign(window=_utc_text(frame["window_start"]))
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("window_start:T", title="window start (UTC)", scale=_UTC, axis=alt.Axis(format="%H:%M")),
        y=alt.Y("event_count:Q", title="events per 5 minutes (symlog scale)", scale=alt.Scale(type="symlog")),
        color=_event_colour(events),
        tooltip=[alt.Tooltip("window:N", title="from (UTC)"), "event", alt.Tooltip("event_count:Q", format=","), alt.Tooltip("unique_users:Q", title="visitors"),
                 alt.Tooltip("unique_items:Q", title="items")],
    ).properties(height=260)


def top_items_chart(frame: pd.DataFrame, value: str, title: str, colour: str) -> alt.Chart:
    """Items by rank (best on top), bar length ``value``."""
    data = frame.assign(item=frame["item_id"].map(lambda i: f"item {i}"))
    order = data.sort_values("rank")["item"].tolist()
    base = alt.Chart(data).encode(
        y=alt.Y("item:N", sort=order, title=None),
        x=alt.X(f"{value}:Q", title=title, axis=alt.Axis(tickMinStep=1)),
        tooltip=["rank", "item_id", alt.Tooltip(f"{value}:Q", title=title, format=",.1f")])
    bars = base.mark_bar(color=colour)
    labels = base.mark_text(align="left", dx=3).encode(text=alt.Text(f"{value}:Q", format=",.0f"))
    return (bars + labels).properties(height=alt.Step(24))


def hourly_chart(frame: pd.DataFrame) -> alt.Chart:
    """Events per hour of day (UTC), stacked by type."""
    events = event_types_in(frame["event"].tolist())
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("hour:O", title="hour of day (UTC)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("events:Q", title="events", stack=True),
        color=_event_colour(events),
        order=alt.Order("event_order:Q"),
        tooltip=["hour", "event", alt.Tooltip("events:Q", format=",")],
    ).transform_calculate(
        event_order=f"indexof({events!r}, datum.event)",
    ).properties(height=260)


def funnel_chart(frame: pd.DataFrame) -> alt.Chart:
    """Visitors at each step of view → addtocart → transaction, labelled with the share of the first step."""
    data = frame.assign(share=frame["of_first"].map(lambda s: "" if pd.isna(s) else f"{s:.1%}"),
                        step_label=frame.apply(lambda r: f"{r['step']}. {r['label']}", axis=1))
    order = data["step_label"].tolist()
    base = alt.Chart(data).encode(
        y=alt.Y("step_label:N", sort=order, title=None),
        x=alt.X("visitors:Q", title="visitors"),
        tooltip=["label", alt.Tooltip("visitors:Q", format=","), alt.Tooltip("events:Q", format=","),
                 alt.Tooltip("of_previous:Q", title="of previous step", format=".1%"),
                 alt.Tooltip("of_first:Q", title="of visitors who viewed", format=".1%")])
    bars = base.mark_bar().encode(color=alt.Color("event:N", legend=None, scale=alt.Scale(
        domain=data["event"].tolist(), range=[_EVENT_COLOURS.get(e, "#9d755d") for e in data["event"]])))
    labels = base.mark_text(align="left", dx=4).encode(text="share:N")
    return (bars + labels).properties(height=alt.Step(36))


def history_chart(frame: pd.DataFrame, metric: str) -> alt.Chart:
    """Every registered version's ``metric``, in registration order; the line through the champions
    (past and present) shows how the champion improved, the other points what it was up against."""
    statuses = [s for s in _STATUS_COLOURS if s in set(frame["status"])]
    colour = alt.Color("status:N", title="status", sort=statuses,
                       scale=alt.Scale(domain=statuses, range=[_STATUS_COLOURS[s] for s in statuses]))
    x = alt.X("version:Q", title="registry version", axis=alt.Axis(tickMinStep=1, format="d"),
              scale=alt.Scale(zero=False, nice=False, padding=12))
    y = alt.Y("metric:Q", title=f"validation {metric}", scale=alt.Scale(zero=False))
    frame = frame.assign(registered=_utc_text(frame["registered_at"]))
    tooltip = ["version", "model", alt.Tooltip("metric:Q", title=metric, format=".4f"), "status",
               alt.Tooltip("registered:N", title="registered (UTC)")]
    points = alt.Chart(frame).mark_circle(size=90).encode(x=x, y=y, color=colour, tooltip=tooltip)
    champions = frame[frame["status"].isin([CHAMPION_NOW, FORMER_CHAMPION])]
    line = alt.Chart(champions).mark_line(color=_STATUS_COLOURS[CHAMPION_NOW], strokeDash=[4, 3]).encode(x=x, y=y)
    return (line + points).properties(height=260)
