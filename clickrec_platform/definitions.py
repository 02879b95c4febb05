"""The one Dagster entry point: everything under ``clickrec_platform/defs/`` (see workspace.yaml)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
