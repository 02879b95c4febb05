"""DuckDB over the Delta tables, with the delta extension from the ``duckdb-ext-delta`` wheel.

DuckDB cannot download extensions here, so it loads the one the wheel ships, by path.
"""

from __future__ import annotations

import platform
from pathlib import Path

import duckdb

from clickrec_platform.lake.storage import delta_tables_under
from clickrec_platform.settings import Settings


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


def register_lake(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[str]:
    """A view per Delta table of the settings' lake, named ``<layer>.<name>`` (``silver.events``); returns the names."""
    names = []
    for layer, name, path in delta_tables_under(settings.lake_uri, settings):
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        con.execute(f"""CREATE OR REPLACE VIEW "{layer}"."{name}" AS SELECT * FROM delta_scan('{path}')""")
        names.append(f"{layer}.{name}")
    return names


def lake_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every table of the settings' lake as a view: the notebook entry point."""
    con = connect()
    register_lake(con, settings)
    return con
