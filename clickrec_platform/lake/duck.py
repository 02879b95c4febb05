"""DuckDB over the Delta tables, with the delta extension from the ``duckdb-ext-delta`` wheel.

DuckDB cannot download extensions here, so it loads the ones the wheels ship, by path: ``delta`` always,
and for a lake on an object store ``httpfs`` and ``aws`` with an S3 secret built from the settings
(``CLICKREC_S3_*``). Every query names a table through ``scan()``, which quotes the path and speaks
DuckDB's ``s3://`` for Spark's ``s3a://``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import duckdb

from clickrec_platform.lake.storage import S3_SCHEMES, delta_tables_under
from clickrec_platform.settings import Settings


def extension_path(name: str = "delta") -> Path:
    """The extension shipped by the ``duckdb-ext-<name>`` wheel for this DuckDB and platform."""
    import duckdb_ext

    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    version = duckdb.__version__
    path = (Path(duckdb_ext.__path__[0]) / "extensions" / f"v{version}" / f"linux_{arch}"
            / f"{name}.duckdb_extension")
    if not path.is_file():
        raise FileNotFoundError(f"No {name} extension for DuckDB {version} on linux_{arch} at {path}: "
                                f"install the matching `duckdb-ext-{name}` wheel.")
    return path


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scan(path: str) -> str:
    """``delta_scan(...)`` of a lake path (local, ``file:``, ``s3a://``), quoted."""
    for scheme in S3_SCHEMES:
        if path.startswith(scheme):
            path = "s3://" + path.removeprefix(scheme)
    return f"delta_scan({_quote(path)})"


def _s3_secret(settings: Settings) -> str:
    """A DuckDB S3 secret for the settings' store; unset fields fall back to the AWS credential chain."""
    from urllib.parse import urlsplit

    options = {"URL_STYLE": "path" if settings.s3_path_style else "vhost",
               "USE_SSL": "false" if settings.s3_allow_http else "true"}
    if settings.s3_endpoint:
        options["ENDPOINT"] = urlsplit(settings.s3_endpoint).netloc or settings.s3_endpoint
    if settings.s3_region:
        options["REGION"] = settings.s3_region
    if settings.s3_access_key and settings.s3_secret_key:
        options |= {"KEY_ID": settings.s3_access_key, "SECRET": settings.s3_secret_key.get_secret_value()}
        provider = ""
    else:
        provider = "PROVIDER credential_chain, "
    fields = ", ".join(f"{key} {_quote(value) if key not in ('USE_SSL',) else value}" for key, value in options.items())
    return f"CREATE OR REPLACE SECRET clickrec_lake (TYPE s3, {provider}{fields})"


def connect(settings: Settings, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``delta_scan`` available for the settings' lake."""
    con = duckdb.connect(database, config={"autoinstall_known_extensions": "false",
                                           "autoload_known_extensions": "false"})
    con.execute(f"LOAD {_quote(str(extension_path('delta')))}")
    if settings.lake_uri.startswith(S3_SCHEMES):
        for name in ("httpfs", "aws"):
            con.execute(f"LOAD {_quote(str(extension_path(name)))}")
        con.execute(_s3_secret(settings))
    return con


def register_lake(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[str]:
    """A view per Delta table of the settings' lake, named ``<layer>.<name>`` (``silver.events``); returns the names."""
    names = []
    for layer, name, path in delta_tables_under(settings.lake_uri, settings):
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        con.execute(f'CREATE OR REPLACE VIEW "{layer}"."{name}" AS SELECT * FROM {scan(path)}')
        names.append(f"{layer}.{name}")
    return names


def lake_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every table of the settings' lake as a view: the notebook entry point."""
    con = connect(settings)
    register_lake(con, settings)
    return con
