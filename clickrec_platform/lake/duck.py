"""DuckDB over the Delta tables, with the delta extension from the ``duckdb-ext-delta`` wheel.

DuckDB cannot download extensions here, so it loads the one the wheel ships, by path.
"""

from __future__ import annotations

import platform
from pathlib import Path

import duckdb


def delta_extension_path() -> Path:
    import duckdb_ext

    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    version = duckdb.__version__
    path = (Path(duckdb_ext.__path__[0]) / "extensions" / f"v{version}" / f"linux_{arch}"
            / "delta.duckdb_extension")
    if not path.is_file():
        raise FileNotFoundError(f"No delta extension for DuckDB {version} on linux_{arch} at {path}: "
                                f"install the matching `duckdb-ext-delta` wheel.")
    return path


def connect(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``delta_scan`` available."""
    con = duckdb.connect(database, config={"autoinstall_known_extensions": "false",
                                           "autoload_known_extensions": "false"})
    con.execute(f"LOAD '{delta_extension_path()}'")
    return con
