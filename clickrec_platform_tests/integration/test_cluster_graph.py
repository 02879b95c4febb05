"""The Dagster graph on the cluster topology: `clickrec materialize` with CLICKREC_TOPOLOGY=cluster, on Spark
executors of the standalone cluster, over a silver.events that the stream job wrote to the object store, gives
the same tables as the same definitions on the local topology over the same events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from clickrec_platform import orchestration
from clickrec_platform.events.codec import encode, kafka_key
from clickrec_platform.events.contract import frame_to_events
from clickrec_platform.lake.tables import (
    GOLD_INTERACTIONS,
    GOLD_ITEM_FEATURES,
    GOLD_TRAINING_SPLITS,
    GOLD_USER_FEATURES,
    SILVER_CATEGORIES,
    SILVER_EVENTS,
    SILVER_ITEMS,
)
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files
from clickrec_platform.stack.scratch import ISOLATED_FIELDS, TOPOLOGY_FIELDS, scratch_settings
from clickrec_platform_tests.support import delta_rows, lake_of_its_own, produce, stream_process

pytestmark = pytest.mark.integration

CLICKREC = str(Path(sys.executable).with_name("clickrec"))
CONFIG = GeneratorConfig(events=6_000, days=3, seed=31)
FEATURE_GRAPH = "group:reference or group:features"
TABLES = (SILVER_CATEGORIES, SILVER_ITEMS, GOLD_INTERACTIONS, GOLD_USER_FEATURES, GOLD_ITEM_FEATURES,
          GOLD_TRAINING_SPLITS)


def _rows(settings, table) -> list[tuple]:
    return delta_rows(table.path(settings), "SELECT * FROM t ORDER BY ALL", settings)


def test_the_feature_graph_on_the_cluster_gives_the_local_topology_tables(spark, cluster, tmp_path):
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
        env = {**os.environ, **s.as_environment(*ISOLATED_FIELDS, *TOPOLOGY_FIELDS),
               "CLICKREC_REFERENCE_DIR": str(reference), "CLICKREC_SPARK_DRIVER_MEMORY": "1g"}
        assert env["CLICKREC_TOPOLOGY"] == "cluster"
        checks = _materialize(s, env, FEATURE_GRAPH)
        assert len(checks) >= 14 and all(checks.values()), {k: v for k, v in checks.items() if not v}
        on_cluster = {table.key: _rows(s, table) for table in TABLES}

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
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    evaluations = [entry.dagster_event.event_specific_data for entry in instance.all_logs(run_id)
                   if entry.dagster_event and entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evaluations}
