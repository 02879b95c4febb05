"""The Dagster definitions load without any service running."""

from __future__ import annotations

import tomllib

import dagster as dg
import yaml

from clickrec_platform.settings import PROJECT_ROOT


def test_definitions_load_and_validate():
    from clickrec_platform.definitions import defs

    assert isinstance(defs, dg.Definitions)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"kafka/clickstream", "delta/bronze/clickstream_raw"} <= keys
    assert {"spark", "lake"} <= set(defs.resources or {})
    dg.Definitions.validate_loadable(defs)


def test_every_computed_table_has_checks_and_the_graph_has_its_automation():
    from clickrec_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    computed = {key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    assert {key.to_user_string() for key in computed} >= {
        "delta/silver/categories", "delta/silver/items", "delta/gold/interactions", "delta/gold/user_features",
        "delta/gold/item_features", "delta/gold/training_splits"}
    checked = {check.asset_key for check in graph.asset_check_keys}
    assert computed <= checked
    assert dg.AssetKey(["delta", "silver", "events"]) in checked  # the observed source: freshness
    assert graph.get(dg.AssetKey(["delta", "silver", "events"])).is_observable
    interactions = graph.get(dg.AssetKey(["delta", "gold", "interactions"]))
    assert interactions.partitions_def is not None
    assert {s.name for s in defs.schedules or []} >= {"daily_training_graph", "observe_silver_events_every_15_minutes"}
    assert {s.name for s in defs.sensors or []} >= {"silver_events_sensor", "alert_on_run_failure"}
    # Every launched run of the graph (UI, schedule, sensor) holds the run lock `clickrec materialize` takes.
    assert defs.resolve_job_def("training_graph").executor_def.name == "in_process_with_run_lock"


def test_workspace_and_pyproject_point_at_the_one_definitions_module():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert entry["python_module"]["module_name"] == "clickrec_platform.definitions"
    assert pyproject["tool"]["dagster"]["module_name"] == "clickrec_platform.definitions"
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == "clickrec_platform.definitions"
