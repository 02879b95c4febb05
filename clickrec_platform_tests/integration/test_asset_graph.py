"""The Dagster graph against the real local services: Spark, Delta and the Dagster instance in Postgres.

Each test gets a lake and reference folder of its own (through the settings' environment), with
generated events loaded into silver.events and the generator's catalogue as the reference files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest
from pyspark.sql import functions as F

from clickrec_platform import orchestration
from clickrec_platform.lake.silver import load_events_into_silver
from clickrec_platform.lake.tables import GOLD_INTERACTIONS, GOLD_TRAINING_SPLITS, SILVER_EVENTS
from clickrec_platform.orchestration import PartitionRange
from clickrec_platform.run_lock import graph_run_lock
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform_tests.integration.test_run_lock import waiting_sessions
from clickrec_platform_tests.support import lake_of_its_own

pytestmark = pytest.mark.integration

CONFIG = GeneratorConfig(events=40_000, days=4, seed=7)


def _silver_dates(settings: Settings) -> list[str]:
    dates = orchestration.silver_event_dates(settings)
    assert dates is not None
    first, last = date.fromisoformat(dates.first), date.fromisoformat(dates.last)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Iterator[Settings]:
    with lake_of_its_own(spark, tmp_path_factory.mktemp("graph"), CONFIG) as settings:
        yield settings


def _checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name):
            e.asset_check_evaluation_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _interactions(spark, settings: Settings) -> pd.DataFrame:
    frame = spark.read.format("delta").load(GOLD_INTERACTIONS.path(settings)).toPandas()
    return frame.sort_values(["event_date", "visitor_id", "item_id"]).reset_index(drop=True)


FEATURE_GRAPH = "group:reference or group:features"


def test_the_whole_feature_graph_materialises_and_every_check_passes(spark, lake):
    result = orchestration.materialize(lake, FEATURE_GRAPH, raise_on_error=False)
    assert result.success
    materialized = {e.step_materialization_data.materialization.asset_key.to_user_string()
                    for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert materialized == {"delta/silver/categories", "delta/silver/items", "delta/gold/interactions",
                            "delta/gold/user_features", "delta/gold/item_features", "delta/gold/training_splits"}
    checks = _checks(result)
    assert len(checks) >= 14 and all(checks.values()), {k: v for k, v in checks.items() if not v}
    # The run is in the platform's Dagster instance, with one materialisation per event date.
    instance = orchestration.instance_for(lake)
    assert instance.get_run_by_id(result.run_id) is not None
    partitions = instance.get_materialized_partitions(dg.AssetKey(["delta", "gold", "interactions"]))
    assert set(_silver_dates(lake)) <= partitions
    # Interactions reconcile with silver for the whole range.
    silver = spark.read.format("delta").load(SILVER_EVENTS.path(lake))
    weighted = silver.where(F.col("event").isin("view", "addtocart", "like", "transaction")).count()
    totals = _interactions(spark, lake)[["views", "addtocarts", "likes", "transactions"]].to_numpy().sum()
    assert totals == weighted


def test_materialize_waits_for_another_run_of_the_graph_on_the_same_lake(spark, lake):
    """`clickrec materialize` (and the demo) take the run lock that launched runs take in the graph's
    executor (`test_run_lock.py`): while another run holds it, no step of this one starts."""
    results: list[dg.ExecuteInProcessResult] = []
    with graph_run_lock(lake, "test: another run of the graph"):
        thread = threading.Thread(target=lambda: results.append(
            orchestration.materialize(lake, "key:delta/silver/categories", raise_on_error=False)))
        thread.start()
        deadline = time.monotonic() + 120
        while waiting_sessions(lake) == 0:
            assert time.monotonic() < deadline and thread.is_alive(), "materialize never waited for the lock"
            time.sleep(0.1)
        assert results == []
        released = time.time()
    thread.join(timeout=600)
    (result,) = results
    assert result.success
    record = orchestration.instance_for(lake).get_run_record_by_id(result.run_id)
    assert record is not None and record.start_time is not None and record.start_time >= released


def test_a_backfill_in_one_run_equals_days_one_by_one_and_reruns_do_not_duplicate(spark, lake):
    select = "key:delta/gold/interactions"
    dates = _silver_dates(lake)
    days = dates[:3]
    for day in days:  # one run per day
        assert orchestration.materialize(lake, select, PartitionRange(day, day)).success
    one_by_one = _interactions(spark, lake)

    # A backfill of the 3 days as one run (the asset's single-run backfill policy), through the API.
    backfill = orchestration.materialize(lake, select, PartitionRange(days[0], days[-1]))
    assert backfill.success
    assert len({e.partition for e in backfill.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}) == 3
    pd.testing.assert_frame_equal(_interactions(spark, lake), one_by_one)

    # Re-running one day replaces that day only: same rows, no duplicates, other days untouched.
    assert orchestration.materialize(lake, select, PartitionRange(days[1], days[1])).success
    again = _interactions(spark, lake)
    pd.testing.assert_frame_equal(again, one_by_one)
    assert not again.duplicated(["event_date", "visitor_id", "item_id"]).any()
    assert sorted(again["event_date"].astype(str).unique()) == dates


def test_the_sensor_asks_for_the_dates_silver_gained(spark, lake):
    definitions = orchestration.definitions_for(lake)  # their lake resource: this test's lake
    sensor = definitions.resolve_sensor_def("silver_events_sensor")
    dates = _silver_dates(lake)

    assert definitions.resources is not None
    lake_resource = definitions.resources["lake"]

    def context(cursor):
        return dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral(),
                                       resources={"lake": lake_resource})

    first = sensor.evaluate_tick(context(None))
    (request,) = first.run_requests or []
    assert (request.tags[orchestration.RANGE_START_TAG], request.tags[orchestration.RANGE_END_TAG]) == (
        dates[0], dates[-1])
    idle = sensor.evaluate_tick(context(first.cursor))
    assert not idle.run_requests and idle.cursor == first.cursor

    later = GeneratorConfig(events=2_000, days=1, seed=8, start_date=date(2015, 5, 20))
    load_events_into_silver(spark, lake, generate_events(later))
    grown = sensor.evaluate_tick(context(first.cursor))
    (request,) = grown.run_requests or []
    assert request.tags[orchestration.RANGE_START_TAG] == "2015-05-20"
    grown_dates = orchestration.silver_event_dates(lake)
    assert grown_dates is not None and request.tags[orchestration.RANGE_END_TAG] == grown_dates.last


def test_broken_input_fails_the_right_check_blocks_what_depends_on_it_and_is_alerted_once(
        spark, tmp_path, alert_webhook):
    from clickrec_platform.definitions import defs
    from clickrec_platform.defs.ops.alerts import alert_on_run_failure

    small = GeneratorConfig(events=5_000, days=2, seed=9)
    with lake_of_its_own(spark, tmp_path, small) as settings:
        instance = orchestration.instance_for(settings)
        repository = defs.get_repository_def()

        def alert_tick(cursor: str | None) -> str | None:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
            return alert_on_run_failure.evaluate_tick(context).cursor

        cursor = alert_tick(None)  # the failure sensor, started before the run
        # A category tree whose branch loops back on itself.
        tree = settings.catalogue_dir / "category_tree.csv"
        lines = tree.read_text().splitlines()
        lines[-1] = lines[-1].split(",")[0] + "," + lines[-2].split(",")[0]
        lines[-2] = lines[-2].split(",")[0] + "," + lines[-1].split(",")[0]
        tree.write_text("\n".join(lines) + "\n")
        # And a corrupt silver row: an event without a visitor.
        path = SILVER_EVENTS.path(settings)
        broken = spark.read.format("delta").load(path).limit(1).withColumn("visitor_id", F.lit(None).cast("bigint"))
        broken.write.format("delta").mode("append").save(path)

        result = orchestration.materialize(settings, FEATURE_GRAPH, raise_on_error=False)
        failed = {key for key, passed in _checks(result).items() if not passed}
        assert failed == {("delta/silver/categories", "tree_is_sound"),
                          ("delta/gold/interactions", "unique_keys"),  # the null visitor is a null key
                          ("delta/gold/user_features", "one_row_per_visitor")}
        # Blocking checks stop what depends on them: the item features need a sound tree, the
        # training sets clean interactions.
        materialized = {e.step_materialization_data.materialization.asset_key.to_user_string()
                        for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
        assert not {"delta/gold/item_features", "delta/gold/training_splits"} & materialized
        assert "delta/silver/items" in materialized  # unaffected by either fault
        assert not result.success

        # The run's failure is the checks': one alert, naming each check, its asset and its metadata.
        alert_tick(alert_tick(cursor))  # and a later tick announces nothing again
        _url, received = alert_webhook
        (alert,) = [payload["text"] for payload in received if result.run_id in payload["text"]]
        assert alert.startswith("*3 blocking checks failed in training_graph*")
        for asset, check in failed:
            assert f"`{asset}` check `{check}`" in alert
        for name, value in _metadata_of_failed_checks(result).items():
            assert f"{name}={value}" in alert
        assert "also failed" not in alert  # every failed step failed on its checks
        assert "Every category reaches a root" in alert  # the check's own description, from its definition


def _metadata_of_failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    from clickrec_platform.ops.alerts import metadata_text

    return {name: metadata_text(value) for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and not e.asset_check_evaluation_data.passed for name, value in list(e.asset_check_evaluation_data.metadata.items())[:8]}


def test_observing_silver_records_its_delta_version_rows_and_freshness(spark, lake):
    from clickrec_platform.lake.table_versions import latest_version

    result = orchestration.definitions_for(lake).resolve_job_def("observe_silver_events").execute_in_process(
        instance=dg.DagsterInstance.ephemeral())
    (observation,) = [e.asset_observation_data.asset_observation for e in result.all_events
                      if e.event_type_value == "ASSET_OBSERVATION"]
    assert observation.tags["dagster/data_version"] == str(latest_version(SILVER_EVENTS.path(lake), lake))
    rows = spark.read.format("delta").load(SILVER_EVENTS.path(lake)).count()
    assert observation.metadata["row_count"].value == rows
    (fresh,) = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert fresh.passed  # just loaded


def test_a_check_reruns_alone_on_the_table_in_the_lake(spark, lake):
    """An asset check is its own step: re-run without its asset (as from the UI), it reads the table the
    graph left and judges it; after a corrupting write it fails, with what it measured."""
    leakage = dg.AssetCheckKey(dg.AssetKey(["delta", "gold", "training_splits"]), "no_time_leakage")
    job = orchestration.definitions_for(lake).resolve_job_def("training_graph").get_subset(
        asset_selection=set(), asset_check_selection={leakage})

    def rerun() -> dg.ExecuteInProcessResult:
        return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    result = rerun()
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert _checks(result) == {("delta/gold/training_splits", "no_time_leakage"): True}

    path = GOLD_TRAINING_SPLITS.path(lake)
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg(F.max("version")).first()[0]
    late = spark.read.format("delta").load(path).where(F.col("split") == "train").limit(1) \
        .withColumn("last_ts", F.col("split_end") + F.expr("INTERVAL 1 DAY"))
    late.write.format("delta").mode("append").save(path)
    try:
        (evaluation,) = [e.asset_check_evaluation_data for e in rerun().all_events
                         if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert not evaluation.passed and evaluation.metadata["rows_outside_their_split"].value == 1
    finally:  # the module's lake as the graph left it, for the tests after this one
        spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {version}")
