"""Where the lake's Delta tables are, as delta-rs (``deltalake``) reaches them, locally or on an object store.

Spark names the object store ``s3a://`` (hadoop-aws); delta-rs names it ``s3://`` and takes the
endpoint and credentials as storage options, which come from the settings (``CLICKREC_S3_*``).
"""

from __future__ import annotations

from pyarrow.fs import FileSelector, FileType

from clickrec_platform.settings import Settings

S3_SCHEMES = ("s3a://", "s3n://", "s3://")


def delta_rs_location(uri: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """The URI delta-rs opens for a lake path (a local path, ``file:``, ``s3a://``) and its storage options."""
    for scheme in S3_SCHEMES:
        if uri.startswith(scheme):
            return "s3://" + uri.removeprefix(scheme), _s3_options(settings)
    if uri.startswith("file:"):  # file:///x and Spark's file:/x
        return "/" + uri.removeprefix("file:").lstrip("/"), {}
    return uri, {}


def _s3_options(settings: Settings) -> dict[str, str]:
    options = {"AWS_ENDPOINT_URL": settings.s3_endpoint, "AWS_ACCESS_KEY_ID": settings.s3_access_key,
               "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
               "AWS_REGION": settings.s3_region}
    return {key: value for key, value in options.items() if value} | {
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not settings.s3_path_style).lower(),
        "AWS_ALLOW_HTTP": str(settings.s3_allow_http).lower()}


def table_exists(uri: str, settings: Settings) -> bool:
    from deltalake import DeltaTable

    location, options = delta_rs_location(uri, settings)
    return DeltaTable.is_deltatable(location, options)


def delta_tables_under(lake_uri: str, settings: Settings) -> list[tuple[str, str, str]]:
    """(layer, name, uri) of every Delta table directly under ``<lake>/<layer>/``; layers named ``_…``
    (checkpoints, scratch) are skipped."""
    from deltalake.exceptions import TableNotFoundError
    from deltalake.fs import DeltaStorageHandler

    root = lake_uri.rstrip("/")
    try:
        storage = DeltaStorageHandler(*delta_rs_location(root, settings))
    except TableNotFoundError:  # a local lake root that does not exist yet
        return []

    def folders(under: str) -> list[str]:
        found = storage.get_file_info_selector(FileSelector(under, allow_not_found=True))
        return sorted(info.path.rstrip("/").rsplit("/", 1)[-1] for info in found if info.type == FileType.Directory)

    return [(layer, name, f"{root}/{layer}/{name}")
            for layer in folders("") if not layer.startswith("_")
            for name in folders(layer) if table_exists(f"{root}/{layer}/{name}", settings)]
