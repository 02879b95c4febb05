"""The recommendation API against the real PostgreSQL, in a scratch schema filled through the real
publish path and live-table loaders, read as the read-only role.

Real time is tested twice: at the Postgres level (an event written to ``user_recent_items`` with
the stream job's own loader changes the next answer), and end to end, last in this module: an event
produced to Kafka, through the stream job in continuous mode, changes the answer within 10 seconds.

Over 400 lines: one module per component under test, as the rest of the suite (one test per endpoint
behaviour, sharing one published fixture).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import uvicorn
from fastapi.testclient import TestClient
from psycopg import sql
from pydantic import BaseModel

from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import Event
from clickrec_platform.serving.api import create_app, schemas
from clickrec_platform.serving.gold_tables import (
    ITEMS,
    POPULAR_ITEMS,
    SIMILAR_ITEMS,
    USER_RECOMMENDATIONS,
    USER_STATS,
    prepare_gold_schema,
)
from clickrec_platform.serving.live_tables import replace_windows, upsert_recent_items
from clickrec_platform.serving.publish import publish
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform_tests.support import free_port, produce, speed_process

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")
LINEAGE = {"model_name": "als", "model_version": "7", "run_id": "run-7", "generated_at": NOW}
MODEL_LISTS = {1: list(range(101, 111)), 2: list(range(111, 121)), 4: list(range(101, 111)),
               5: list(range(111, 121))}
NEIGHBOURS = {201: list(range(301, 311)), 202: list(range(311, 321))}
CATEGORY = {**{i: (1, 5) for i in range(101, 121)}, 201: (1, 6), 202: (1, 6),
            **{i: (2, 7) for i in range(301, 321)}, **{i: (1, 5) for i in range(401, 421)}, 999: (3, 8)}
TRENDING_NOW = [601, 602, 603, 604, 605]


def _ranked(lists: dict[int, list[int]], key: str, other: str) -> pa.Table:
    rows = [{key: k, other: item, "rank": r, "score": 1.0 / r, **LINEAGE}
            for k, items in lists.items() for r, item in enumerate(items, start=1)]
    return pa.Table.from_pylist(rows)


def _catalogue() -> pa.Table:
    rows = []
    for item, (root, category) in CATEGORY.items():
        rows.append({"item_id": item, "title": f"Item {item}", "category_id": category, "root_category_id": root,
                     "category_path": [root, category], "category_terms": f"{root} {category}",
                     "price": item / 10, "price_band": 1 + item % 5, "available": item % 2 == 0,
                     "views": 1, "addtocarts": 0, "likes": 0, "transactions": 0, "weight": float(item),
                     "unique_visitors": 1, "views_1d": 0, "weight_1d": 0.0, "views_7d": 1, "weight_7d": 1.0,
                     "views_30d": 1, "weight_30d": float(item), "conversion_rate": 0.0, "cart_rate": 0.0,
                     "source_version": 3})
    return pa.Table.from_pylist(rows)


def _popular() -> pa.Table:
    base = {"window_days": 7, "model_version": "2", "run_id": "run-2", "generated_at": NOW}
    rows = [{"scope": "overall", "category_id": None, "item_id": item, "rank": r, "score": 100.0 - r, **base}
            for r, item in enumerate(range(401, 421), start=1)]
    rows += [{"scope": "category", "category_id": 5, "item_id": item, "rank": r, "score": 50.0 - r, **base}
             for r, item in enumerate(range(401, 406), start=1)]
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("scope", pa.string()), ("category_id", pa.int64()), ("item_id", pa.int64()), ("rank", pa.int32()),
        ("score", pa.float64()), ("window_days", pa.int32()), ("model_version", pa.string()),
        ("run_id", pa.string()), ("generated_at", TS)]))


def _stats() -> pa.Table:
    return pa.Table.from_pylist([
        {"visitor_id": v, "views": 10 * v, "addtocarts": v, "likes": 0, "transactions": 1, "searches": 0,
         "events": 11 * v + 1, "first_seen": NOW - timedelta(days=3), "last_seen": NOW, "active_days": 2,
         "sessions": 3, "hour_profile": [1 / 24] * 24, "weekday_profile": [1 / 7] * 7, "recency_days": 0.5,
         "events_per_active_day": 5.5, "view_to_cart_rate": 0.1, "view_to_purchase_rate": 0.1,
         "cart_to_purchase_rate": 1.0, "top_categories": [5, 6], "source_version": 4} for v in (1, 2)])


def recent(visitor: int, item: int, at: datetime) -> pa.Table:
    return pa.table({"visitor_id": [visitor], "item_id": [item], "last_event": ["view"],
                     "last_seen_at": pa.array([at], TS)})


def _trending(items: list[int], end: datetime) -> pa.Table:
    return pa.table({"window_start": pa.array([end - timedelta(minutes=10)] * len(items), TS),
                     "window_end": pa.array([end] * len(items), TS), "item_id": items,
                     "score": [float(100 - r) for r in range(len(items))], "event_count": [10] * len(items),
                     "rank": pa.array(range(1, len(items) + 1), pa.int32())})


@dataclass
class Api:
    client: TestClient
    settings: Settings
    conn: psycopg.Connection  # the owner's, to change data during a test

    def get(self, path: str, status: int = 200) -> dict:
        response = self.client.get(path)
        assert response.status_code == status, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        declared_model(self.client.app, path, status).model_validate_json(response.content, strict=True)
        return response.json()


def declared_model(app, path: str, status: int) -> type[BaseModel]:
    """The pydantic model the OpenAPI document declares for ``path``'s answer with ``status``."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path.split("?")[0], "method": "GET"}
    route = next((r for r in app.router.routes if r.matches(scope)[0] == Match.FULL), None)
    if route is None:  # no such path: the framework's 404, which is an Error too
        return schemas.Error
    if status == 200:
        return route.response_model
    if status == 422:
        return schemas.InvalidRequest
    return route.responses[status]["model"]


@pytest.fixture(scope="module")
def api(stack) -> Iterator[Api]:
    with scratch_settings(stack, "api") as settings, \
            psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        schema, role = settings.gold_schema, settings.reader_role
        prepare_gold_schema(conn, settings)
        for spec, rows in ((USER_RECOMMENDATIONS, _ranked(MODEL_LISTS, "visitor_id", "item_id")),
                           (SIMILAR_ITEMS, _ranked(NEIGHBOURS, "item_id", "similar_item_id")),
                           (POPULAR_ITEMS, _popular()), (USER_STATS, _stats()), (ITEMS, _catalogue())):
            publish(conn, spec, rows, schema=schema, reader_role=role)
        upsert_recent_items(conn, recent(2, 201, NOW - timedelta(minutes=1)), schema=schema)
        upsert_recent_items(conn, recent(2, 112, NOW - timedelta(minutes=2)), schema=schema)
        upsert_recent_items(conn, recent(3, 202, NOW - timedelta(minutes=1)), schema=schema)
        older, latest = NOW - timedelta(minutes=5), NOW
        replace_windows(conn, "trending_items", _trending([606], older), [older - timedelta(minutes=10)], schema=schema)
        replace_windows(conn, "trending_items", _trending(TRENDING_NOW, latest), [latest - timedelta(minutes=10)],
                        schema=schema)
        with TestClient(create_app(settings)) as client:
            yield Api(client, settings, conn)


def ids(answer: dict, key: str = "item_id") -> list[int]:
    return [item[key] for item in answer["items"]]


# /recommendations --------------------------------------------------------------------------------

def test_a_known_visitor_without_live_activity_gets_the_models_list_and_its_version(api):
    answer = api.get("/recommendations/1?k=5")
    assert answer["source"] == "model"
    assert (answer["model_name"], answer["model_version"], answer["run_id"]) == ("als", "7", "run-7")
    assert ids(answer) == MODEL_LISTS[1][:5]
    assert answer["based_on_recent_items"] == []


def test_a_visitor_with_recent_items_gets_the_blend_without_what_they_saw(api):
    answer = api.get("/recommendations/2?k=10")
    assert answer["source"] == "blended" and answer["model_version"] == "7"
    assert answer["based_on_recent_items"] == [201, 112]
    assert ids(answer)[0] == NEIGHBOURS[201][0]  # the freshest item's nearest neighbour leads
    assert {"model", "session"} <= {item["source"] for item in answer["items"]}
    assert 112 not in ids(answer) and 201 not in ids(answer)  # seen
    assert 112 in ids(api.get("/recommendations/2?k=20&exclude_seen=false"))


def test_a_visitor_with_only_live_activity_gets_session_recommendations(api):
    answer = api.get("/recommendations/3?k=5")
    assert answer["source"] == "session"
    assert ids(answer) == NEIGHBOURS[202][:5]


def test_a_fresh_event_changes_the_answer_at_once(api):
    assert api.get("/recommendations/4?k=5")["source"] == "model"
    upsert_recent_items(api.conn, recent(4, 202, datetime.now(UTC)), schema=api.settings.gold_schema)
    answer = api.get("/recommendations/4?k=5")
    assert answer["source"] == "blended" and answer["based_on_recent_items"] == [202]
    assert ids(answer)[0] == NEIGHBOURS[202][0]
    # A newer event on another item takes the lead.
    upsert_recent_items(api.conn, recent(4, 201, datetime.now(UTC) + timedelta(seconds=1)),
                        schema=api.settings.gold_schema)
    answer = api.get("/recommendations/4?k=5")
    assert answer["based_on_recent_items"] == [201, 202] and ids(answer)[0] == NEIGHBOURS[201][0]


def test_an_unknown_visitor_gets_trending_then_popular_items(api):
    answer = api.get("/recommendations/987654321?k=8")
    assert answer["source"] == "trending" and answer["model_version"] is None
    assert ids(answer) == TRENDING_NOW + [401, 402, 403]  # the latest window, topped up with popular
    assert [item["source"] for item in answer["items"]] == ["trending"] * 5 + ["popular"] * 3


def test_without_trending_items_an_unknown_visitor_gets_the_popular_list(api):
    schema = api.settings.gold_schema
    windows = [NOW - timedelta(minutes=10), NOW - timedelta(minutes=15)]
    replace_windows(api.conn, "trending_items", _trending([], NOW), windows, schema=schema)
    try:
        answer = api.get("/recommendations/987654321?k=3")
        assert answer["source"] == "popular" and (answer["model_version"], answer["run_id"]) == ("2", "run-2")
        assert ids(answer) == [401, 402, 403]
    finally:
        replace_windows(api.conn, "trending_items", _trending([606], NOW - timedelta(minutes=5)), windows[1:],
                        schema=schema)
        replace_windows(api.conn, "trending_items", _trending(TRENDING_NOW, NOW), windows[:1], schema=schema)


@pytest.mark.parametrize(("path", "parameter"), [
    ("/recommendations/1?k=0", "k"), ("/recommendations/1?k=101", "k"), ("/recommendations/1?k=ten", "k"),
    ("/recommendations/-1", "user_id"), ("/recommendations/abc", "user_id"),
    (f"/recommendations/{2**63}", "user_id"), ("/recommendations/1?exclude_seen=maybe", "exclude_seen"),
])
def test_bad_recommendation_parameters_are_422_naming_the_parameter(api, path, parameter):
    answer = api.get(path, 422)
    assert f"'{parameter}'" in answer["detail"]
    assert answer["errors"][0]["parameter"] == parameter


# /similar-items, /trending, /popular-products, /user-stats ------------------------------------------

def test_similar_items(api):
    answer = api.get("/similar-items/201?k=3")
    assert ids(answer, "similar_item_id") == NEIGHBOURS[201][:3]
    assert answer["items"][0]["model_version"] == "7" and answer["items"][0]["rank"] == 1
    assert api.get("/similar-items/999")["items"] == []  # in the catalogue, no neighbours
    assert "unknown item 123456" in api.get("/similar-items/123456", 404)["detail"]
    api.get("/similar-items/201?k=0", 422)


def test_trending(api):
    answer = api.get("/trending?limit=3&window=1m")
    assert ids(answer) == TRENDING_NOW[:3] and answer["window"] == "1m"
    assert answer["as_of"].startswith(NOW.strftime("%Y-%m-%dT%H:%M"))
    assert 606 in ids(api.get("/trending?limit=10&window=1h"))  # the older window counts in a wider one
    assert 606 not in ids(api.get("/trending?limit=10&window=4m"))
    for bad in ("abc", "0m", "8d", "10s", "9" * 30 + "d", "%201h"):  # a huge number was a 500 once
        assert "window must" in api.get(f"/trending?window={bad}", 422)["detail"]
    api.get("/trending?limit=101", 422)


def test_popular_products(api):
    overall = api.get("/popular-products?limit=3")
    assert overall["source"] == "popular_items" and ids(overall) == [401, 402, 403]
    assert overall["items"][0]["model_version"] == "2" and overall["items"][0]["window_days"] == 7
    assert ids(api.get("/popular-products?category=5&limit=2")) == [401, 402]
    # A category without a list of its own: its catalogue items by recent weight.
    fallback = api.get("/popular-products?category=7&limit=3")
    assert fallback["source"] == "catalogue" and ids(fallback) == [320, 319, 318]
    # A root category covers its subcategories.
    assert set(ids(api.get("/popular-products?category=2&limit=100"))) == set(range(301, 321))
    assert api.get("/popular-products?category=5&window_days=30")["items"] == []
    api.get("/popular-products?category=-5", 422)
    api.get("/popular-products?limit=0", 422)


def test_user_stats(api):
    stats = api.get("/user-stats/2")
    assert stats["views"] == 20 and stats["top_categories"] == [5, 6] and len(stats["hour_profile"]) == 24
    assert stats["recent_items"] == [201, 112] and stats["source_version"] == 4
    assert "unknown visitor 3" in api.get("/user-stats/3", 404)["detail"]
    api.get("/user-stats/x", 422)


# /search -----------------------------------------------------------------------------------------

def test_search_finds_the_item_first_then_its_category(api):
    hits = ids(api.get("/search?q=7&limit=100"))
    assert set(hits) == set(range(301, 321))  # category 7
    hits = ids(api.get("/search?q=201"))
    assert hits == [201]


def test_search_filters_combine(api):
    everything = api.get("/search?q=5&limit=100")["items"]  # category 5: 101..120, 401..420
    assert {hit["item_id"] for hit in everything} == set(range(101, 121)) | set(range(401, 421))
    filtered = api.get("/search?q=5&category=1&min_price=11&max_price=41.5&available=true&limit=100")["items"]
    assert {hit["item_id"] for hit in filtered} == {i for i in range(110, 121) if i % 2 == 0} | {
        i for i in range(401, 416) if i % 2 == 0}
    assert all(11 <= hit["price"] <= 41.5 and hit["available"] and hit["category_path"][0] == 1 for hit in filtered)
    assert api.get("/search?q=5&category=2")["items"] == []
    assert ids(api.get("/search?q=available&category=6")) == [202]  # availability is searchable too


ROOT_1 = set(range(101, 121)) | {201, 202} | set(range(401, 421))


@pytest.mark.parametrize(("q", "expected"), [
    ("'; DROP TABLE items; --", set()), ("\\x27; SELECT pg_sleep(5)", set()), ("!!&&||:*()<->", set()),
    ("\"unclosed", set()), ("   ", set()),
    ("1' OR '1'='1", ROOT_1),  # only the words count: "1 or 1 1" finds what is under category 1
])
def test_sql_in_q_is_just_text(api, q, expected):
    table = f'"{api.settings.gold_schema}".items'
    before = api.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    started = time.monotonic()
    answer = api.client.get("/search", params={"q": q, "limit": 100}).json()
    assert time.monotonic() - started < 2  # pg_sleep did not run
    assert answer["q"] == q and set(ids(answer)) == expected
    assert api.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == before


@pytest.mark.parametrize(("path", "message"), [
    ("/search", "'q'"), ("/search?q=", "'q'"), ("/search?q=" + "x" * 201, "'q'"),
    ("/search?q=a&min_price=5&max_price=1", "min_price (5) is greater than max_price (1)"),
    ("/search?q=a&min_price=-1", "'min_price'"), ("/search?q=a&limit=1000", "'limit'"),
    ("/search?q=a%00b", "'q'"),
])
def test_bad_search_parameters_are_422(api, path, message):
    assert message in api.get(path, 422)["detail"]


# /health, /metrics, /docs, failures ---------------------------------------------------------------

def test_health_reports_the_published_versions(api):
    health = api.get("/health")
    assert health["status"] == "ok"
    assert health["published"]["user_recommendations"]["provenance"]["run_id"] == ["run-7"]
    assert set(health["published"]) == {"user_recommendations", "similar_items", "popular_items", "user_stats",
                                        "items"}


def test_metrics_have_latency_per_endpoint_and_status_codes(api):
    api.get("/recommendations/1")
    api.get("/similar-items/123456", 404)
    api.get("/nowhere", 404)
    text = api.client.get("/metrics").text
    assert re.search(r'clickrec_api_request_duration_seconds_bucket\{endpoint="/recommendations/\{user_id\}",'
                     r'(le="0.05",method="GET"|method="GET",le="0.05")\} [1-9]', text)
    assert 'clickrec_api_requests_total{endpoint="/similar-items/{item_id}",method="GET",status="404"}' in text
    assert 'endpoint="unmatched"' in text and 'status="422"' in text
    assert 'clickrec_api_recommendation_source_total{source="model"}' in text


def test_openapi_docs_list_every_endpoint(api):
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/recommendations/{user_id}", "/similar-items/{item_id}", "/trending", "/popular-products",
            "/user-stats/{user_id}", "/search", "/health", "/metrics"} <= set(paths)


def test_the_reader_role_cannot_write(api):
    from clickrec_platform.serving.roles import reader_dsn

    with psycopg.connect(reader_dsn(api.settings), autocommit=True) as reader:
        table = f'"{api.settings.gold_schema}".user_recommendations'
        assert reader.execute(f"SELECT count(*) FROM {table}").fetchone() == (sum(map(len, MODEL_LISTS.values())),)
        for statement in (f"DELETE FROM {table}", f'CREATE TABLE "{api.settings.gold_schema}".x (a int)',
                          f"DROP VIEW {table}"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                reader.execute(statement)


def _unavailable(client: TestClient, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1" and "Traceback" not in response.text
    return response.json()


def test_database_down_is_503_not_a_stack_trace(api):
    settings = api.settings.model_copy(update={"api_pool_timeout_s": 0.3})
    app = create_app(settings, conninfo="postgresql://nobody:secret@127.0.0.1:1/clickrec?connect_timeout=1")
    with TestClient(app) as client:
        for path in ("/recommendations/1", "/search?q=1", "/similar-items/1", "/trending", "/user-stats/1",
                     "/popular-products"):
            assert "database unavailable" in _unavailable(client, path)["detail"]
        health = _unavailable(client, "/health")
        assert health["status"] == "unavailable"
        assert client.get("/recommendations/x").status_code == 422  # validation needs no database
        assert 'status="503"' in client.get("/metrics").text


def test_missing_tables_are_503_too(api):
    with TestClient(create_app(api.settings.model_copy(update={"gold_schema": "no_such_schema"}))) as client:
        assert "gold tables missing" in _unavailable(client, "/recommendations/1")["detail"]


def _dropped(api: Api) -> float:
    found = re.search(r"^clickrec_api_dropped_connections_total (\S+)$", api.client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_connections_the_server_dropped_cost_no_failed_request(api):
    """As on a PostgreSQL restart or failover: the server ends every connection of the API's pool."""
    for _ in range(4):  # every pooled connection has served
        api.get("/recommendations/2?k=3")
    before = _dropped(api)
    killed = [pid for pid, ended in api.conn.execute(  # in the select list: only for the rows found
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE usename = %s AND application_name = 'clickrec-api'", (api.settings.reader_role,)) if ended]
    assert killed
    deadline = time.monotonic() + 10
    while api.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (killed,)).fetchone()[0] \
            and time.monotonic() < deadline:
        time.sleep(0.05)

    for path in ("/recommendations/2?k=3", "/similar-items/201", "/trending", "/popular-products",
                 "/user-stats/1", "/search?q=201", "/health"):
        assert api.get(path), path  # 200, not 503
    assert _dropped(api) >= before + 1


# The OpenAPI document is what the API does ----------------------------------------------------------

@contextmanager
def served(app, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port``, in a thread, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_schemathesis_finds_no_difference_between_the_openapi_document_and_the_api(api, tmp_path):
    """Every check schemathesis has (status codes, content types, response schemas, positive data
    accepted, negative data rejected, no 5xx, ...), on valid and invalid requests it generates
    from the document."""
    with served(create_app(api.settings), free_port()) as url:
        finished = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "run", f"{url}/openapi.json", "--checks", "all",
             "--max-examples", "40", "--seed", "19", "--workers", "1", "--no-color",
             "--report", "junit", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
                 "SCHEMATHESIS_HOOKS": "clickrec_platform_tests.schemathesis_hooks"})
    assert finished.returncode == 0, finished.stdout[-6000:] + finished.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", finished.stdout)
    assert generated and int(generated[1]) == int(generated[2]) > 300, finished.stdout[-3000:]


# Real time, end to end (last: the speed layer adds live windows to this module's schema) ------------

def _click(visitor: int, item: int) -> tuple[bytes, bytes]:
    """A view, stamped now, as the producer sends it."""
    event = Event(event_id=uuid.uuid4().hex, ts=int(time.time() * 1000), visitor_id=visitor, event="view",
                  item_id=item, session_id=f"s-{visitor}", source="test")
    return kafka_key(visitor), encode(event)


def test_an_event_through_kafka_and_the_speed_layer_changes_the_answer_within_a_second(api, tmp_path):
    s, visitor, log_path = api.settings, 5, tmp_path / "speed.log"
    started = datetime.now(UTC)
    consumer = speed_process(s, log_path)
    try:
        # Warm-up: the consumer joins its group and is assigned the partitions, until a first event is through.
        produce(s.kafka_bootstrap_servers, s.kafka_topic, [_click(900_001, 201)])
        deadline = time.monotonic() + 120
        while api.get("/recommendations/900001?k=3")["source"] != "session" and time.monotonic() < deadline:
            assert consumer.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert api.get("/recommendations/900001?k=3")["source"] == "session", log_path.read_text()[-3000:]
        assert api.get(f"/recommendations/{visitor}?k=5")["source"] == "model"

        produce(s.kafka_bootstrap_servers, s.kafka_topic, [_click(visitor, 202)])  # returns once acknowledged
        sent = time.monotonic()
        while (answer := api.get(f"/recommendations/{visitor}?k=5"))["source"] == "model" \
                and time.monotonic() - sent < 10:
            time.sleep(0.01)
        changed_s = time.monotonic() - sent
        print(f"\nacknowledged by Kafka → answer changed in {changed_s * 1000:.0f} ms")

        assert (answer["source"], answer["based_on_recent_items"]) == ("blended", [202])
        assert ids(answer)[0] == NEIGHBOURS[202][0] and answer["model_version"] == "7"
        assert changed_s < 1.0, f"the answer changed only after {changed_s:.2f}s"
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(60)
        for table in ("trending_items", "windowed_stats"):  # the speed layer's, not the fixture's
            api.conn.execute(sql.SQL("DELETE FROM {} WHERE updated_at >= %s").format(
                sql.Identifier(s.gold_schema, table)), (started,))
