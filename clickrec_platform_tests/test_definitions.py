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
    assert {"spark", "lake"} <= set(defs.resources)
    dg.Definitions.validate_loadable(defs)


def test_workspace_and_pyproject_point_at_the_one_definitions_module():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert entry["python_module"]["module_name"] == "clickrec_platform.definitions"
    assert pyproject["tool"]["dagster"]["module_name"] == "clickrec_platform.definitions"
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == "clickrec_platform.definitions"
