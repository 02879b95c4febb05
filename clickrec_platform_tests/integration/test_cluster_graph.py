"""The whole Dagster graph on the cluster topology: `clickrec materialize` with CLICKREC_TOPOLOGY=cluster, on
Spark executors of the standalone cluster, over a silver.events that the stream job wrote to the object store.
Reference and feature tables equal the same definitions' on the local topology over the same events; the
models train from the object store's tables, log to MLflow, pass their gates, and what publish copies into
Postgres equals the gold tables on the object store."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import dagster as dg
import pytest

from clickrec_platform import orchestration
from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import frame_to_events
from clickrec_platform.lake.tables import (
    GOLD_INTERACTIONS,
    GOLD_ITEM_FEATURES,
    GOLD_POPULAR_ITEMS,
    GOLD_SIMILAR_ITEMS,
    GOLD_TRAINING_SPLITS,
    GOLD_USER_FEATURES,
    GOLD_USER_RECOMMENDATIONS,
    SILVER_CATEGORIES,
    SILVER_EVENTS,
    SILVER_ITEMS,
)
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files
from clickrec_platform.stack.scratch import (
    ISOLATED_FIELDS,
    TOPOLOGY_FIELDS,
    remove_mlflow_names,
    scratch_settings,
)
from clickrec_platform.stack.service import executable
from clickrec_platform_tests.support import delta_rows, lake_of_its_own, pg_rows, produce, stream_process

pytestmark = pytest.mark.integration

CLICKREC = executable("clickrec")
# Enough events over enough days for the session split (a day of test, a day of validation) and for the
# learners to clear the gates' intervals against popularity, as the demo's 20,000 over 2 days do.
CONFIG = GeneratorConfig(events=20_000, days=3, seed=31)
FEATURE_GRAPH = "group:reference or group:features"
WHOLE_GRAPH = f"{FEATURE_GRAPH} or group:training or group:publish"
# A short list of candidates and no grids: the graph's code paths, not the models' quality, are on trial.
# (No random control: on 3 days of a small world it may come near popularity, and the control's check says
# something about the data, not about the topology.)
TRAINING = {"CLICKREC_TRAINING_MODELS": json.dumps(["most_popular", "item_knn_cosine", "als"]),
            "CLICKREC_TRAINING_GRIDS": "{}", "CLICKREC_SESSION_MODELS": json.dumps(["popularity", "sknn"]),
            "CLICKREC_SESSION_GRIDS": "{}", "CLICKREC_SESSION_TEST_DAYS": "1", "CLICKREC_SESSION_VALIDATION_DAYS": "1",
            "CLICKREC_GATE_BOOTSTRAP_SAMPLES": "300"}
# Each published table against its gold table on the object store: (Postgres query, DuckDB query).
PUBLISHED = {
    "user_recommendations": (GOLD_USER_RECOMMENDATIONS, "visitor_id, rank, item_id, model_version, run_id"),
    "similar_items": (GOLD_SIMILAR_ITEMS, "item_id, rank, similar_item_id, model_version"),
    "popular_items": (GOLD_POPULAR_ITEMS, "scope, category_id, rank, item_id, window_days"),
}
TABLES = (SILVER_CATEGORIES, SILVER_ITEMS, GOLD_INTERACTIONS, GOLD_USER_FEATURES, GOLD_ITEM_FEATURES,
          GOLD_TRAINING_SPLITS)


def _rows(settings, table) -> list[tuple]:
    return delta_rows(table.path(settings), "SELECT * FROM t ORDER BY ALL", settings)


def test_the_whole_graph_runs_on_the_cluster_and_gives_the_local_topology_tables(spark, cluster, tmp_path):
    events = [e for frame in generate_events(CONFIG) for e in frame_to_events(frame)]
    with scratch_settings(cluster, "graph") as s:
        assert s.lake_uri.startswith("s3a://") and s.spark_master.startswith("spark://")
        # Events arrive as in production: produced to the Kafka cluster, streamed into silver on the object store.
        produce(s.kafka_bootstrap_servers, s.kafka_topic, [(kafka_key(e.visitor_id), encode(e)) for e in events])
        job = stream_process(s, tmp_path / "stream.log", "--available-now")
        assert job.wait(timeout=900) == 0, (tmp_path / "stream.log").read_text()[-3000:]
        assert delta_rows(SILVER_EVENTS.path(s), "SELECT count(*) FROM t", s) == [(len(events),)]

        # The same definitions module, another process, the cluster topology by one setting.
        reference = tmp_path / "reference"
        write_catalogue_files(CONFIG, reference)
        # The stack's tracking server, whatever MLFLOW_TRACKING_URI earlier tests left in this process's environment.
        mlflow_names = {"MLFLOW_TRACKING_URI": f"http://{s.bind_host}:{s.mlflow_port}",
                        "CLICKREC_MLFLOW_EXPERIMENT": s.gold_schema,
                        "CLICKREC_REGISTERED_MODEL_NAME": f"{s.kafka_topic}-{uuid.uuid4().hex[:4]}",
                        "CLICKREC_SESSION_REGISTERED_MODEL_NAME": f"{s.kafka_topic}-session"}
        env = {**os.environ, **s.as_environment(*ISOLATED_FIELDS, *TOPOLOGY_FIELDS), **TRAINING, **mlflow_names,
               "CLICKREC_REFERENCE_DIR": str(reference), "CLICKREC_SPARK_DRIVER_MEMORY": "1g"}
        assert env["CLICKREC_TOPOLOGY"] == "cluster"
        try:
            checks = _materialize(s, env, WHOLE_GRAPH)
            failed = {k: v for k, v in checks.items() if not v}
            assert len(checks) >= 30 and not failed, failed
            for name in ("champion_beats_baseline", "session_champion_exists", "runs_on_tracking_server", "rows_match_source"):
                assert any(check == name for _, check in checks), f"check {name} did not run"
            on_cluster = {table.key: _rows(s, table) for table in TABLES}
            # What publish copied into Postgres is what the models wrote to the object store.
            for name, (table, columns) in PUBLISHED.items():
                in_lake = delta_rows(table.path(s), f"SELECT {columns} FROM t ORDER BY ALL", s)
                assert in_lake, f"{table.key} is empty on the object store"
                published = pg_rows(s, f"SELECT {columns} FROM {{schema}}.{name} ORDER BY {columns}")
                assert [tuple(map(str, row)) for row in published] == [tuple(map(str, row)) for row in in_lake], name
        finally:
            remove_mlflow_names(s.model_copy(update={
                "mlflow_tracking_uri": mlflow_names["MLFLOW_TRACKING_URI"],
                "mlflow_experiment": mlflow_names["CLICKREC_MLFLOW_EXPERIMENT"],
                "registered_model_name": mlflow_names["CLICKREC_REGISTERED_MODEL_NAME"],
                "session_registered_model_name": mlflow_names["CLICKREC_SESSION_REGISTERED_MODEL_NAME"]}))

    # The same events and definitions on the local topology (local[*], a lake folder), in this process.
    with lake_of_its_own(spark, tmp_path / "local", CONFIG) as local:
        assert orchestration.materialize(local, FEATURE_GRAPH, raise_on_error=False).success
        on_local = {table.key: _rows(local, table) for table in TABLES}
    for table in TABLES:
        assert on_cluster[table.key], f"{table.key} is empty on the cluster"
        assert on_cluster[table.key] == on_local[table.key], f"{table.key} differs between the topologies"


def _materialize(settings, env: dict[str, str], select: str) -> dict[tuple[str, str], bool]:
    """`clickrec materialize --select SELECT` in a process of its own; its run's check results, read back from
    the Dagster instance, once it succeeded."""
    run = subprocess.run([CLICKREC, "materialize", "--select", select], env=env, capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    run_id = next(word for line in run.stdout.splitlines() for word in line.split()
                  if len(word) == 36 and word.count("-") == 4)
    instance = orchestration.instance_for(settings)
    dagster_run = instance.get_run_by_id(run_id)
    assert dagster_run is not None and dagster_run.status == dg.DagsterRunStatus.SUCCESS
    evaluations = [entry.dagster_event.asset_check_evaluation_data for entry in instance.all_logs(run_id)
                   if entry.dagster_event and entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evaluations}
