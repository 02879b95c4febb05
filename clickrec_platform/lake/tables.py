"""Where each Delta table lives under the lake root: ``<lake>/<layer>/<name>``."""

from __future__ import annotations

from clickrec_platform.settings import Settings


def table_path(settings: Settings, layer: str, name: str) -> str:
    return f"{settings.lake_uri.rstrip('/')}/{layer}/{name}"
