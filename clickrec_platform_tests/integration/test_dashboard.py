"""The live dashboard as a person sees it: the real `clickrec dashboard` process (Streamlit, started as
the stack starts it) on a free port, over a namespace of its own (Postgres schema, lake, MLflow
experiment and registered model), loaded in Debian's headless Chromium.

First nothing is there: every section says what is missing and what to run, none fails. Then the data
the platform would have arrives (generated events in silver.events, the live tables computed from the
same events, a published popular list, four registered versions with a champion) and, without the page
being reloaded, the auto-refresh draws every chart with those numbers. A screenshot is kept under the
state dir.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from playwright.sync_api import Page

from clickrec_platform.dashboard.data import TOP_N
from clickrec_platform.lake.silver import load_events_into_silver
from clickrec_platform.recommend.tracking import CHALLENGER, CHAMPION
from clickrec_platform.recommend.training import CANDIDATE_TAG, GATE_TAG
from clickrec_platform.serving.gold_tables import POPULAR_ITEMS, prepare_gold_schema
from clickrec_platform.serving.live_tables import add_event_statistics_once, replace_windows
from clickrec_platform.serving.publish import publish
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.stack import service as stack_service
from clickrec_platform.stack.scratch import scratch_process_settings
from clickrec_platform_tests.browser import headless_chromium, wait_for
from clickrec_platform_tests.support import free_port

pytestmark = pytest.mark.integration

REFRESH_S = 2
EVENTS = GeneratorConfig(seed=8, events=6_000, days=2, start_date=date.today() - timedelta(days=2))
WEIGHTS = {"view": 1, "addtocart": 3, "like": 4, "transaction": 5}
HEADINGS = ("Events by type", "Live 5-minute windows", f"Top {TOP_N} items", "Trending now", "Most popular overall",
            "Traffic by hour of day", "Conversion funnel", "Champion model", "Registry history")
CHARTS = 7  # event counts, windows, trending, popular, hour of day, funnel, registry history
# (candidate, validation ndcg@20, the gate's note on its version or None when the gate never judged it)
VERSIONS = (("item_knn_cosine", 0.11, "challenger ndcg@20=0.1100 beats the popularity baseline -> promote"),
            ("als", 0.17, "challenger ndcg@20=0.1700 beats the champion and the popularity baseline -> promote"),
            ("bpr", 0.13, "challenger ndcg@20=0.1300 does not beat the champion -> keep"),
            ("recent_item_knn", 0.09, None))
CHAMPION_VERSION, CHALLENGER_VERSION = 2, 3

# What the page shows, read in the page itself.
PAGE_STATE = """(() => {
  const all = selector => Array.from(document.querySelectorAll(selector));
  const charts = all('[data-testid="stVegaLiteChart"]');
  return {
    headings: all('h1, h2, h3, h4').map(h => h.innerText.trim()),
    charts: charts.length,
    drawn: charts.filter(chart => chart.querySelector('canvas.marks, svg.marks')).length,
    notes: all('[data-testid="stAlert"]').map(a => a.innerText.trim()),
    info_notes: all('[data-testid="stAlertContentInfo"]').length,
    exceptions: all('[data-testid="stException"]').map(e => e.innerText.slice(0, 1000)),
    busy: document.querySelector('[data-testid="stStatusWidget"]') !== null
          || all('[data-testid="stSkeleton"]').length > 0 || all('[data-stale="true"]').length > 0,
    text: document.body?.innerText ?? "",
    height: document.querySelector('[data-testid="stMain"]')?.scrollHeight ?? 0,
  };
})()"""


@dataclass
class Dashboard:
    settings: Settings
    page: Page
    url: str

    def state(self) -> dict:
        return self.page.evaluate(PAGE_STATE)

    def wait_until(self, done, timeout_s: float = 90.0) -> dict:
        return wait_for(self.page, PAGE_STATE, lambda s: not s["busy"] and done(s), timeout_s)


@pytest.fixture(scope="module")
def dashboard(stack, tmp_path_factory) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    with scratch_process_settings(root, "dash", CLICKREC_DASHBOARD_PORT=str(port),
                                  CLICKREC_DASHBOARD_REFRESH_SECONDS=str(REFRESH_S)) as settings:
        # The stack's own service, with its pid and log files kept apart from the stack's dashboard; the
        # process reads this namespace from the environment, as `clickrec up` would hand it.
        service = stack_service(settings.model_copy(update={"home": root / "home"}), "dashboard")
        process = service.process()
        try:
            assert process.start(timeout_s=60), "a dashboard already ran on a port just found free"
            health = service.health()
            assert health.ok and "/_stcore/health 200" in health.detail, health
            with headless_chromium(width=1400, height=1000) as page:
                page.goto(service.url)
                yield Dashboard(settings, page, service.url)
        finally:
            process.stop()


def test_before_any_data_every_section_says_what_is_missing(dashboard):
    state = dashboard.wait_until(lambda s: set(HEADINGS) <= set(s["headings"]) and len(s["notes"]) >= 8)
    assert set(HEADINGS) <= set(state["headings"]), state["headings"]
    assert state["exceptions"] == []
    assert state["charts"] == 0
    assert state["info_notes"] == len(state["notes"]), "not there yet is a note, not a warning"
    schema = dashboard.settings.gold_schema
    text = state["text"]
    assert f"{schema}.event_statistics does not exist yet" in text
    assert f"{schema}.popular_items does not exist yet" in text
    assert "silver.events does not exist yet" in text
    assert f"No model is registered as '{dashboard.settings.registered_model_name}' yet" in text


def test_arriving_data_is_drawn_by_the_auto_refresh(dashboard, spark, capsys):
    settings = dashboard.settings
    events = pd.concat(list(generate_events(EVENTS)), ignore_index=True)
    load_events_into_silver(spark, settings, [events])
    champion_run = register_versions(settings)
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        fill_live_tables(conn, settings, events)
        publish(conn, POPULAR_ITEMS, popular_items(events, champion_run), schema=settings.gold_schema,
                reader_role=settings.reader_role)

    # No reload: the page redraws itself every REFRESH_S seconds.
    state = dashboard.wait_until(lambda s: s["drawn"] >= CHARTS and not s["notes"])
    assert state["exceptions"] == []
    assert state["notes"] == [], state["notes"]
    assert set(HEADINGS) <= set(state["headings"])
    assert (state["charts"], state["drawn"]) == (CHARTS, CHARTS), "every chart is drawn (a canvas or svg)"

    text = state["text"]
    assert f"{len(events):,}" in text  # all events, counted by the stream's table
    visitors = events.groupby("event")["visitor_id"].nunique()
    assert f"{visitors['addtocart'] / visitors['view']:.1%}" in text  # view → cart
    assert f"{visitors['transaction'] / visitors['view']:.1%}" in text  # view → purchase
    assert f"v{CHAMPION_VERSION}" in text and "0.1700" in text  # the champion and its ndcg@20
    assert f"model version {CHAMPION_VERSION}" in text  # the published popular list's provenance
    for status in ("champion", "former champion", "challenger", "candidate"):
        assert status in text

    updated = _updated_at(text)
    time.sleep(REFRESH_S + 1)
    assert _updated_at(dashboard.wait_until(lambda s: s["drawn"] >= CHARTS)["text"]) != updated, "auto-refresh"

    path = screenshot(dashboard, settings.state_dir / "dashboard" / "dashboard-test.png")
    with capsys.disabled():
        print(f"\ndashboard screenshot: {path}")


def _updated_at(text: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("Updated "))
    return line.split(" UTC")[0]


def screenshot(dashboard: Dashboard, path: Path) -> Path:
    """The whole page: the window made as tall as the page, the charts drawn again at that size."""
    height = dashboard.state()["height"]
    dashboard.page.set_viewport_size({"width": 1400, "height": max(height + 80, 1000)})
    time.sleep(1)
    dashboard.wait_until(lambda s: s["drawn"] >= CHARTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    dashboard.page.screenshot(path=str(path))
    return path


# ------------------------------------------------------------------------------------------ seeding
def fill_live_tables(conn: psycopg.Connection, settings: Settings, events: pd.DataFrame) -> None:
    """What the stream job would have written for these events: running totals, 5-minute windows and
    the latest trending windows (10 minutes, sliding by 5)."""
    schema = settings.gold_schema
    prepare_gold_schema(conn, settings)
    at = pd.to_datetime(events["ts"], unit="ms", utc=True)
    totals = events.assign(at=at).groupby("event").agg(
        event_count=("event_id", "size"), first_event_at=("at", "min"), last_event_at=("at", "max")).reset_index()
    add_event_statistics_once(conn, "dashboard-test", 0, pa.Table.from_pandas(totals, preserve_index=False),
                              schema=schema)

    windows = events.assign(window_start=at.dt.floor("5min")).groupby(["window_start", "event"]).agg(
        event_count=("event_id", "size"), unique_users=("visitor_id", "nunique"),
        unique_items=("item_id", "nunique")).reset_index()
    windows["window_end"] = windows["window_start"] + pd.Timedelta(minutes=5)
    replace_windows(conn, "windowed_stats", pa.Table.from_pandas(windows, preserve_index=False),
                    _window_starts(windows), schema=schema)

    weighted = events.assign(at=at, weight=events["event"].map(WEIGHTS)).dropna(subset=["weight"])
    last_end = at.max().ceil("5min")
    trending = []
    for end in (last_end - pd.Timedelta(minutes=5 * n) for n in range(3)):
        start = end - pd.Timedelta(minutes=10)
        inside = weighted[(weighted["at"] >= start) & (weighted["at"] < end)]
        top = inside.groupby("item_id").agg(score=("weight", "sum"), event_count=("event_id", "size")).reset_index()
        top = top.sort_values(["score", "item_id"], ascending=[False, True]).head(50)
        trending.append(top.assign(window_start=start, window_end=end, rank=range(1, len(top) + 1)))
    rows = pd.concat(trending, ignore_index=True)
    replace_windows(conn, "trending_items", pa.Table.from_pandas(rows, preserve_index=False),
                    _window_starts(rows), schema=schema)


def _window_starts(frame: pd.DataFrame) -> list[datetime]:
    return [start.to_pydatetime() for start in frame["window_start"].drop_duplicates()]


def popular_items(events: pd.DataFrame, run_id: str) -> pa.Table:
    weight = events.assign(weight=events["event"].map(WEIGHTS)).groupby("item_id")["weight"].sum()
    top = weight.sort_values(ascending=False).head(20)
    return pa.Table.from_pylist(
        [{"scope": "overall", "category_id": None, "item_id": int(item), "rank": rank, "score": float(score),
          "window_days": EVENTS.days, "model_version": str(CHAMPION_VERSION), "run_id": run_id,
          "generated_at": datetime.now(UTC)} for rank, (item, score) in enumerate(top.items(), start=1)],
        schema=pa.schema([(c.name, c.arrow_type) for c in POPULAR_ITEMS.columns]))


def register_versions(settings: Settings) -> str:
    """VERSIONS as runs with validation metrics, registered in order, with the gate's notes and aliases;
    returns the champion's run id."""
    client = MlflowClient(settings.tracking_uri)
    experiment = client.create_experiment(settings.mlflow_experiment)
    client.create_registered_model(settings.registered_model_name)
    run_ids = []
    for name, ndcg, gate in VERSIONS:
        run = client.create_run(experiment, tags={CANDIDATE_TAG: name}, run_name=name)
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[
            Metric(key, value, now, 0) for key, value in (
                ("val_ndcg_at_20", ndcg), ("val_recall_at_20", ndcg * 1.5), ("val_precision_at_20", ndcg / 4),
                ("val_coverage_at_20", 0.2), ("val_warm_ndcg_at_20", ndcg * 1.1))])
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(settings.registered_model_name, f"{run.info.artifact_uri}/recommender",
                                              run_id=run.info.run_id)
        if gate:
            client.set_model_version_tag(settings.registered_model_name, version.version, GATE_TAG, gate)
        run_ids.append(run.info.run_id)
    client.set_registered_model_alias(settings.registered_model_name, CHAMPION, str(CHAMPION_VERSION))
    client.set_registered_model_alias(settings.registered_model_name, CHALLENGER, str(CHALLENGER_VERSION))
    return run_ids[CHAMPION_VERSION - 1]
