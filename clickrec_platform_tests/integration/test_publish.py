"""Publishing gold tables to the real PostgreSQL: atomic swaps under concurrent readers, failures that
change nothing, kept versions and rollback, and the Dagster assets reading real Delta tables.

Each test works in a scratch schema (and lake) of its own, never in ``gold``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from clickrec_platform.serving.gold_tables import PUBLISHED_TABLES, USER_RECOMMENDATIONS, prepare_gold_schema
from clickrec_platform.serving.publish import PUBLISH_LOG, activate, live_versions, publish
from clickrec_platform.serving.roles import reader_dsn
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.stack.scratch import scratch_settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@dataclass
class Gold:
    settings: Settings
    conn: psycopg.Connection  # the owner's, autocommit

    @property
    def schema(self) -> str:
        return self.settings.gold_schema

    def publish(self, rows: pa.Table, **options):
        return publish(self.conn, USER_RECOMMENDATIONS, rows, schema=self.schema,
                       reader_role=self.settings.reader_role, **options)

    def view_summary(self) -> tuple[int, int, str | None]:
        return _summary(self.conn, self.schema)

    def physical_tables(self) -> list[str]:
        rows = self.conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE nspname = %s AND relkind = 'r' AND relname LIKE 'user_recommendations__v%%' "
                                 "ORDER BY relname", (self.schema,)).fetchall()
        return [row[0] for row in rows]


def _summary(conn: psycopg.Connection, schema: str) -> tuple[int, int, str | None]:
    """(rows, distinct runs, a run) of the whole published set, in one statement."""
    row = conn.execute(sql.SQL("SELECT count(*), count(DISTINCT run_id), min(run_id) FROM {}").format(
        sql.Identifier(schema, "user_recommendations"))).fetchone()
    assert row is not None
    return row


def recommendations(visitors: int, run: str, per_visitor: int = 10) -> pa.Table:
    n = visitors * per_visitor
    return pa.table({"visitor_id": np.repeat(np.arange(visitors), per_visitor),
                     "item_id": np.arange(n), "rank": np.tile(np.arange(1, per_visitor + 1, dtype=np.int32), visitors),
                     "score": np.linspace(1, 0, n), "model_name": ["als"] * n, "model_version": [run[-1]] * n,
                     "run_id": [run] * n, "generated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC"))})


@pytest.fixture
def gold(stack) -> Iterator[Gold]:
    with scratch_settings(stack, "publish") as settings, \
            psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        prepare_gold_schema(conn, settings)
        yield Gold(settings, conn)


def test_readers_see_the_old_or_the_new_set_whole_never_a_mix_or_nothing(gold):
    sizes = {f"run-{i}": visitors * 10 for i, visitors in enumerate((10_000, 13_000, 7_000, 16_000, 9_000))}
    gold.publish(recommendations(10_000, "run-0"))
    seen: list[list[tuple[int, int, str]]] = [[], []]
    stop = threading.Event()
    failures: list[BaseException] = []

    def read(observations: list) -> None:
        try:
            with psycopg.connect(reader_dsn(gold.settings), autocommit=True) as reader:
                while not stop.is_set():
                    observations.append(_summary(reader, gold.schema))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    readers = [threading.Thread(target=read, args=(observations,)) for observations in seen]
    for thread in readers:
        thread.start()
    try:
        for run, rows in list(sizes.items())[1:]:
            time.sleep(0.3)
            if run == "run-3":  # a publish that fails half-way must not be seen at all
                broken = recommendations(rows // 10, run).to_pylist()
                broken[-1]["rank"] = 1  # duplicate (visitor, rank)
                with pytest.raises(ValueError, match="duplicate primary key"):
                    gold.publish(pa.Table.from_pylist(broken))
            gold.publish(recommendations(rows // 10, run))
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert not failures, failures
    allowed = {(rows, 1, run) for run, rows in sizes.items()}
    for observations in seen:
        assert len(observations) > 20
        assert set(observations) <= allowed, set(observations) - allowed
        order = [int(run[-1]) for _, _, run in observations]
        assert order == sorted(order)  # a reader never goes back to an older version
    assert len({run for observations in seen for _, _, run in observations}) >= 3
    assert gold.view_summary() == (90_000, 1, "run-4")


def test_a_failed_publish_changes_nothing(gold):
    gold.publish(recommendations(100, "run-1"))
    before = (gold.view_summary(), live_versions(gold.conn, gold.schema), gold.physical_tables())
    good = recommendations(50, "run-2")
    null_run = good.set_column(good.schema.get_field_index("run_id"), "run_id", pa.array([None] * 500, pa.string()))
    for rows, message in ((null_run, "run_id: 500 null value"),
                          (good.drop_columns(["rank"]), "missing column 'rank'"),
                          (pa.concat_tables([good, good]), "duplicate primary key")):
        with pytest.raises(ValueError, match=message):
            gold.publish(rows)
        assert (gold.view_summary(), live_versions(gold.conn, gold.schema), gold.physical_tables()) == before


def test_old_versions_are_dropped_and_a_kept_one_can_be_made_live_again(gold):
    for run in ("run-1", "run-2", "run-3", "run-4"):
        result = gold.publish(recommendations(100, run), keep_versions=2)
    assert result.version == 5  # version 1 is the empty placeholder of prepare_gold_schema
    assert gold.physical_tables() == ["user_recommendations__v4", "user_recommendations__v5"]
    assert gold.view_summary()[2] == "run-4"
    activate(gold.conn, USER_RECOMMENDATIONS, 4, schema=gold.schema)
    assert gold.view_summary()[2] == "run-3"
    assert live_versions(gold.conn, gold.schema)["user_recommendations"]["version"] == 4
    with pytest.raises(ValueError, match="not kept"):
        activate(gold.conn, USER_RECOMMENDATIONS, 2, schema=gold.schema)
    log = gold.conn.execute(sql.SQL("SELECT version, row_count, provenance->'run_id', is_live FROM {} "
                                    "WHERE table_name = 'user_recommendations' ORDER BY version").format(
        sql.Identifier(gold.schema, PUBLISH_LOG))).fetchall()
    assert log[1:] == [(2, 1000, ["run-1"], False), (3, 1000, ["run-2"], False), (4, 1000, ["run-3"], True),
                       (5, 1000, ["run-4"], False)]


def test_a_reader_holding_the_view_delays_the_swap_without_stalling_other_readers(gold):
    gold.publish(recommendations(100, "run-1"))
    latencies: list[float] = []
    with psycopg.connect(reader_dsn(gold.settings)) as holder, \
            psycopg.connect(reader_dsn(gold.settings), autocommit=True) as other:
        assert _summary(holder, gold.schema)[2] == "run-1"  # holder's transaction now holds the view
        done = threading.Event()

        def publish() -> None:
            gold.publish(recommendations(200, "run-2"))
            done.set()

        publisher = threading.Thread(target=publish)
        # A connection of its own: the fixture's is the test's.
        with psycopg.connect(gold.settings.postgres_dsn(), autocommit=True) as owner:
            gold_conn, gold.conn = gold.conn, owner
            publisher.start()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert _summary(other, gold.schema)[2] == "run-1"
                latencies.append(time.monotonic() - started)
            assert not done.is_set()  # still waiting for the holder
            assert _summary(holder, gold.schema)[2] == "run-1"  # the holder's view never changes under it
            holder.commit()
            publisher.join(timeout=30)
            gold.conn = gold_conn
        assert done.is_set()
        assert _summary(other, gold.schema)[2] == "run-2"
    assert max(latencies) < 1.0, max(latencies)  # each attempt gives way after 100 ms


# The Dagster assets, reading Delta tables -----------------------------------------------------------

@pytest.fixture
def lake_and_schema(stack, tmp_path) -> Iterator[Settings]:
    with scratch_settings(stack, "pubassets") as scratch, pytest.MonkeyPatch.context() as env:
        env.setenv("CLICKREC_LAKE_ROOT", scratch.lake_uri)
        env.setenv("CLICKREC_GOLD_SCHEMA", scratch.gold_schema)
        get_settings.cache_clear()
        try:
            yield get_settings()
        finally:
            get_settings.cache_clear()


def _materialize(keys: list[str]) -> dg.ExecuteInProcessResult:
    from clickrec_platform.defs.publish.assets import PUBLISH_ASSETS
    from clickrec_platform.defs.resources import platform_resources

    chosen = [a for a in PUBLISH_ASSETS if a.key.path[-1] in keys]
    return dg.materialize(chosen, resources=platform_resources(get_settings()), raise_on_error=False)


def test_a_publish_asset_without_its_delta_table_fails_saying_so(lake_and_schema):
    result = _materialize(["user_recommendations"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error
    assert error is not None and "no Delta table at" in error.message


def _write(spark, settings: Settings, layer: str, name: str, rows: list[dict], schema: str) -> None:
    from clickrec_platform.lake.tables import table_path

    (spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true").save(table_path(settings, layer, name)))


def test_the_publish_assets_copy_every_table_from_the_lake(spark, lake_and_schema):
    settings = lake_and_schema
    lineage = "model_name string, model_version string, run_id string, generated_at timestamp"
    model = {"model_name": "als", "model_version": "3", "run_id": "run-3", "generated_at": NOW}
    _write(spark, settings, "gold", "user_recommendations",
           [{"visitor_id": v, "item_id": 10 + r, "rank": r, "score": 1.0 / r, **model}
            for v in (1, 2) for r in (1, 2, 3)],
           f"visitor_id bigint, item_id bigint, rank int, score double, {lineage}")
    _write(spark, settings, "gold", "similar_items",
           [{"item_id": i, "similar_item_id": 20 + r, "rank": r, "score": 0.5, **model} for i in (11, 12) for r in (1, 2)],
           f"item_id bigint, similar_item_id bigint, rank int, score double, {lineage}")
    _write(spark, settings, "gold", "popular_items",
           [{"scope": "overall", "category_id": None, "item_id": 11, "rank": 1, "score": 9.0, "window_days": 7,
             "model_version": "3", "run_id": "run-3", "generated_at": NOW},
            {"scope": "category", "category_id": 5, "item_id": 11, "rank": 1, "score": 9.0, "window_days": 7,
             "model_version": "3", "run_id": "run-3", "generated_at": NOW}],
           "scope string, category_id bigint, item_id bigint, rank int, score double, window_days int, "
           "model_version string, run_id string, generated_at timestamp")
    counts = ("views", "addtocarts", "likes", "transactions", "searches", "events")
    _write(spark, settings, "gold", "user_features",
           [{"visitor_id": v, **{c: v for c in counts}, "first_seen": NOW, "last_seen": NOW, "active_days": 1,
             "sessions": 1, "hour_profile": [1 / 24] * 24, "weekday_profile": [1 / 7] * 7, "recency_days": 0.5,
             "events_per_active_day": 1.0, "view_to_cart_rate": None, "view_to_purchase_rate": 0.0,
             "cart_to_purchase_rate": None, "top_categories": [5]} for v in (1, 2, 3)],
           ", ".join(f"{c} bigint" for c in ("visitor_id", *counts)) + ", first_seen timestamp, last_seen timestamp, "
           "active_days bigint, sessions bigint, hour_profile array<double>, weekday_profile array<double>, "
           "recency_days double, events_per_active_day double, view_to_cart_rate double, "
           "view_to_purchase_rate double, cart_to_purchase_rate double, top_categories array<bigint>")
    item_counts = ("views", "addtocarts", "likes", "transactions", "unique_visitors", "views_1d", "views_7d", "views_30d")
    item_weights = ("weight", "weight_1d", "weight_7d", "weight_30d")
    _write(spark, settings, "gold", "item_features",
           [{"item_id": i, **{c: 1 for c in item_counts}, **{c: 1.0 for c in item_weights}, "conversion_rate": None,
             "cart_rate": 0.0, "category_id": category, "root_category_id": 1 if category else None,
             "price": 9.5, "price_band": 3, "available": 1} for i, category in ((11, 5), (12, 5), (13, None))],
           ", ".join(f"{c} bigint" for c in ("item_id", *item_counts)) + ", "
           + ", ".join(f"{c} double" for c in item_weights)
           + ", conversion_rate double, cart_rate double, category_id bigint, root_category_id bigint, "
             "price double, price_band int, available int")
    tree: list[dict[str, Any]] = [
        {"category_id": 1, "parent_id": None, "root_id": 1, "depth": 0, "path": "1", "problem": None},
        {"category_id": 3, "parent_id": 1, "root_id": 1, "depth": 1, "path": "1/3", "problem": None},
        {"category_id": 5, "parent_id": 3, "root_id": 1, "depth": 2, "path": "1/3/5", "problem": None}]
    tree_columns = "category_id bigint, parent_id bigint, root_id bigint, depth int, path string"
    _write(spark, settings, "silver", "categories", tree, f"{tree_columns}, problem string")

    result = _materialize([spec.name for spec in PUBLISHED_TABLES])
    assert result.success
    checks = {(e.asset_check_evaluation_data.asset_key.path[-1], e.asset_check_evaluation_data.check_name): e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert len(checks) == 11 and all(checks.values()), checks

    with psycopg.connect(reader_dsn(settings), autocommit=True) as reader:
        def query(text: str) -> list[tuple]:
            return reader.execute(sql.SQL(text).format(schema=sql.Identifier(settings.gold_schema))).fetchall()

        assert query("SELECT count(*), min(run_id), min(model_version) FROM {schema}.user_recommendations") == [
            (6, "run-3", "3")]
        assert query("SELECT count(*) FROM {schema}.similar_items") == [(4,)]
        assert query("SELECT scope, category_id FROM {schema}.popular_items ORDER BY scope") == [
            ("category", 5), ("overall", None)]
        assert query("SELECT visitor_id, hour_profile[1], top_categories, first_seen = %s FROM {schema}.user_stats "
                     "WHERE visitor_id = 2".replace("%s", f"'{NOW.isoformat()}'::timestamptz")) == [
            (2, pytest.approx(1 / 24), [5], True)]
        items = query("SELECT item_id, title, category_path, available, source_version FROM {schema}.items "
                      "ORDER BY item_id")
        assert items == [(11, "Item 11 · category 5 (root 1) · price band 3/5", [1, 3, 5], True, 0),
                         (12, "Item 12 · category 5 (root 1) · price band 3/5", [1, 3, 5], True, 0),
                         (13, "Item 13 · price band 3/5", None, True, 0)]
        assert query("SELECT item_id FROM {schema}.items WHERE search_document @@ "
                     "websearch_to_tsquery('simple', '3') ORDER BY item_id") == [(11,), (12,)]

        # A tree DuckDB cannot read (an all-null column written as type void): the items are still
        # published, with the path item_features knows (root and category), and a warning.
        _write(spark, settings, "silver", "categories", tree, f"{tree_columns}, problem void")
        result = _materialize(["items"])
        assert result.success
        (materialization,) = result.asset_materializations_for_node("postgres__gold__items")
        warnings = materialization.metadata["warnings"]
        assert isinstance(warnings, dg.TextMetadataValue) and "unreadable by DuckDB" in (warnings.text or "")
        assert query("SELECT item_id, category_path FROM {schema}.items ORDER BY item_id") == [
            (11, [1, 5]), (12, [1, 5]), (13, None)]
