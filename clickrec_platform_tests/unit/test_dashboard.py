"""The dashboard's data shaping, charts and command line, with no service running; and how each section
degrades when its service is not there (ports nothing listens on)."""

from __future__ import annotations

import math
import socket
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from clickrec_platform.dashboard import charts, data
from clickrec_platform.dashboard.server import (
    MLFLOW_CLIENT_ENVIRONMENT,
    dashboard_environment,
    streamlit_argv,
)
from clickrec_platform.settings import Settings
from clickrec_platform.stack import STACK, service
from clickrec_platform.stack.apps import API, DASHBOARD

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def closed_port() -> int:
    """A port nothing listens on (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def offline(tmp_path) -> Settings:
    """Settings whose PostgreSQL and MLflow do not answer and whose lake is empty."""
    port = closed_port()
    return Settings(_env_file=None, home=tmp_path, postgres_port=port, postgres_password="owner",
                    reader_password="reader", mlflow_tracking_uri=f"http://127.0.0.1:{port}",
                    lake_root=str(tmp_path / "lake"), gold_schema="gold")


# ------------------------------------------------------------------------------------------ funnel
def funnel_counts(**visitors: int) -> pd.DataFrame:
    return pd.DataFrame([{"event": e, "visitors": v, "events": 2 * v} for e, v in visitors.items()])


def test_the_funnel_gives_each_steps_share_of_the_previous_and_of_the_first():
    funnel = data.conversion_funnel(funnel_counts(view=1000, addtocart=250, transaction=100, like=7))
    assert funnel["event"].tolist() == ["view", "addtocart", "transaction"]
    assert funnel["label"].tolist() == ["viewed", "added to cart", "bought"]
    assert funnel["visitors"].tolist() == [1000, 250, 100]
    assert funnel["events"].tolist() == [2000, 500, 200]
    assert funnel["of_previous"].tolist() == pytest.approx([1.0, 0.25, 0.4])
    assert funnel["of_first"].tolist() == pytest.approx([1.0, 0.25, 0.1])


def test_a_funnel_step_nobody_reached_is_zero_and_shares_of_nobody_are_undefined():
    funnel = data.conversion_funnel(funnel_counts(view=40))
    assert funnel["visitors"].tolist() == [40, 0, 0]
    assert funnel["of_previous"].tolist()[:2] == [1.0, 0.0]
    assert math.isnan(funnel["of_previous"].iloc[2])  # 0 of 0 carts
    assert funnel["of_first"].tolist() == [1.0, 0.0, 0.0]

    no_views = data.conversion_funnel(funnel_counts(addtocart=3, transaction=1))
    assert math.isnan(no_views["of_first"].iloc[1]) and math.isnan(no_views["of_previous"].iloc[1])


# ------------------------------------------------------------------------------------------ shaping
def test_hourly_traffic_has_every_hour_of_every_event_type_in_contract_order():
    counts = pd.DataFrame({"hour": [3, 20, 20, 7], "event": ["view", "view", "view", "transaction"],
                           "events": [1, 10, 5, 2]})
    hourly = data.hourly_traffic(counts)
    assert len(hourly) == 48
    assert hourly["event"].unique().tolist() == ["view", "transaction"]
    by = hourly.set_index(["hour", "event"])["events"]
    assert (by[(20, "view")], by[(3, "view")], by[(7, "transaction")], by[(0, "view")]) == (15, 1, 2, 0)
    assert hourly["events"].sum() == 18


def test_missing_windows_are_filled_with_zero_counts():
    frame = pd.DataFrame({
        "window_start": [T0, T0, T0 + timedelta(minutes=10)], "window_end": [T0 + timedelta(minutes=5)] * 2 + [None],
        "event": ["view", "addtocart", "view"], "event_count": [9, 2, 4], "unique_users": [5, 2, 3],
        "unique_items": [7, 2, 4]})
    complete = data.complete_windows(frame)
    assert len(complete) == 6  # 3 windows × 2 event types
    middle = complete[complete["window_start"] == T0 + timedelta(minutes=5)]
    assert middle["event_count"].tolist() == [0, 0] and middle["event"].tolist() == ["view", "addtocart"]
    assert (complete["window_end"] - complete["window_start"] == timedelta(minutes=5)).all()
    assert complete["event_count"].sum() == 15


def test_events_come_in_contract_order_with_unknown_types_last():
    frame = pd.DataFrame({"event": ["search", "zap", "view", "like", "addtocart", "transaction"]})
    assert data.order_events(frame)["event"].tolist() == ["view", "addtocart", "transaction", "like", "search",
                                                          "zap"]
    assert data.event_types_in(["zap", "view", "apple", "view"]) == ["view", "apple", "zap"]


@pytest.mark.parametrize(("note", "is_champion", "status"), [
    ("challenger ndcg@20=0.2 beats ... -> promote", True, data.CHAMPION_NOW),
    ("challenger ndcg@20=0.2 beats ... -> promote", False, data.FORMER_CHAMPION),
    ("challenger ndcg@20=0.1 does not beat the champion -> keep", False, data.CHALLENGER),
    ("", False, data.CANDIDATE),
    (None, False, data.CANDIDATE),
    ("", True, data.CHAMPION_NOW),  # an alias set by hand
])
def test_a_registry_versions_status_follows_the_alias_and_the_gates_note(note, is_champion, status):
    assert data.version_status(note, is_champion) == status


def test_the_version_history_is_oldest_first_with_the_gate_metric():
    versions = [data.RegistryVersion(v, T0 + timedelta(hours=v), name, f"run-{v}", metrics, note)
                for v, name, metrics, note in (
                    (3, "bpr", {"ndcg@20": 0.13}, "x -> keep"),
                    (1, "als", {"ndcg@20": 0.11, "recall@20": 0.3}, "x -> promote"),
                    (2, "als", {}, ""))]
    history = data.version_history(versions, champion_version=1, metric="ndcg@20")
    assert history["version"].tolist() == [1, 2, 3]
    assert history["status"].tolist() == [data.CHAMPION_NOW, data.CANDIDATE, data.CHALLENGER]
    assert history["metric"].iloc[0] == 0.11 and math.isnan(history["metric"].iloc[1])
    assert data.version_history([], None, "ndcg@20").empty


def test_headline_metrics_put_the_gate_metric_first_then_the_usual_ones_at_its_cut_off():
    metrics = {"recall@10": 0.1, "coverage@20": 0.2, "mrr@20": 0.3, "recall@20": 0.4, "ndcg@20": 0.5,
               "precision@20": 0.6, "zeta@20": 0.7}
    assert list(data.headline_metrics(metrics, "ndcg@20")) == ["ndcg@20", "recall@20", "precision@20",
                                                               "coverage@20", "mrr@20", "zeta@20"]
    assert list(data.headline_metrics({"recall@20": 0.4}, "ndcg@20")) == ["recall@20"]


def test_attempt_turns_a_missing_source_into_a_note_and_a_failure_into_a_warning():
    def missing():
        raise data.Unavailable("nothing yet: run it")

    def broken():
        raise ZeroDivisionError("boom")

    assert data.attempt(missing, "x") == data.Missing("nothing yet: run it")
    failed = data.attempt(broken, "the widgets")
    assert failed.error and failed.reason == "The widgets could not be read: ZeroDivisionError: boom"
    assert data.attempt(lambda: 42, "x") == 42


# ------------------------------------------------------------------------------------------ charts
def test_every_chart_is_a_valid_vega_lite_spec():
    """Altair validates against the Vega-Lite schema when a chart is turned into its spec."""
    events = data.order_events(pd.DataFrame({"event": ["view", "addtocart"], "event_count": [90, 3],
                                             "last_event_at": [T0, T0]}))
    windows = data.complete_windows(pd.DataFrame({
        "window_start": [T0, T0 + timedelta(minutes=10)], "window_end": [T0, T0], "event": ["view", "like"],
        "event_count": [4, 1], "unique_users": [2, 1], "unique_items": [3, 1]}))
    top = pd.DataFrame({"item_id": [7, 9], "rank": [1, 2], "score": [5.0, 3.0]})
    hourly = data.hourly_traffic(pd.DataFrame({"hour": [1], "event": ["view"], "events": [3]}))
    funnel = data.conversion_funnel(funnel_counts(view=10, addtocart=2, transaction=1))
    history = data.version_history([data.RegistryVersion(1, T0, "als", "r", {"ndcg@20": 0.1}, "x -> promote")],
                                   1, "ndcg@20")
    for chart in (charts.event_counts_chart(events), charts.windows_chart(windows),
                  charts.top_items_chart(top, "score", "score", "#f58518"), charts.hourly_chart(hourly),
                  charts.funnel_chart(funnel), charts.history_chart(history, "ndcg@20")):
        spec = chart.to_dict()
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


# ------------------------------------------------------------------------------------------ without services
def test_postgres_down_is_one_note_for_every_live_section(offline):
    started = time.monotonic()
    live = data.live_snapshot(offline)
    assert time.monotonic() - started < 10
    notes = {live.event_counts, live.windows, live.trending, live.popular}
    assert len(notes) == 1
    (note,) = notes
    assert isinstance(note, data.Missing) and not note.error
    assert f"PostgreSQL at 127.0.0.1:{offline.postgres_port} is not reachable" in note.reason


def test_without_the_readers_password_the_note_says_how_to_get_one(offline):
    settings = offline.model_copy(update={"reader_password": None})
    note = data.live_snapshot(settings).event_counts
    assert isinstance(note, data.Missing) and "clickrec serve" in note.reason


def test_mlflow_down_is_a_note_within_seconds(offline):
    started = time.monotonic()
    registry = data.registry_snapshot(offline)
    assert time.monotonic() - started < 10
    assert registry.champion == registry.history
    assert isinstance(registry.champion, data.Missing) and not registry.champion.error
    assert f"MLflow at {offline.tracking_uri} is not reachable" in registry.champion.reason


def test_an_empty_lake_is_a_note_for_hour_of_day_and_funnel(offline):
    lake = data.lake_snapshot(offline)
    assert lake.hourly == lake.funnel
    assert isinstance(lake.hourly, data.Missing) and "silver.events does not exist yet" in lake.hourly.reason


# ------------------------------------------------------------------------------------------ running it
def test_streamlit_runs_the_app_headless_on_the_settings_address_without_telemetry(tmp_path):
    settings = Settings(_env_file=None, home=tmp_path, bind_host="127.0.0.9", dashboard_port=18599)
    argv = streamlit_argv(settings)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("clickrec_platform/dashboard/app.py")
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert options["--server.address"] == "127.0.0.9" and options["--server.port"] == "18599"
    assert options["--server.headless"] == "true"
    assert options["--server.fileWatcherType"] == "none"
    assert options["--browser.gatherUsageStats"] == "false"
    overridden = dict(zip(*[iter(streamlit_argv(settings, host="0.0.0.0", port=9)[5:])] * 2, strict=True))
    assert (overridden["--server.address"], overridden["--server.port"]) == ("0.0.0.0", "9")


def test_the_mlflow_client_retries_are_bounded_unless_set():
    assert dashboard_environment({}) == MLFLOW_CLIENT_ENVIRONMENT
    assert dashboard_environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "X": "1"})[
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def test_the_dashboard_is_a_service_of_the_stack_started_after_the_api(tmp_path):
    assert STACK.index(DASHBOARD) == STACK.index(API) + 1
    assert "dashboard" in Settings.model_fields["managed_services"].default  # `clickrec up` starts it
    settings = Settings(_env_file=None, home=tmp_path)
    dashboard = service(settings, "dashboard")
    assert dashboard.url == f"http://{settings.bind_host}:{settings.dashboard_port}"
    process = dashboard.process()
    assert process.ports == [(settings.bind_host, settings.dashboard_port)]
    assert process.arguments()[-1] == "dashboard" and process.cmdline_marker == "dashboard"
    assert process.pid() is None
