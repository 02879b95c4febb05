"""The recommendation API: ``create_app(settings)`` (FastAPI); ``clickrec serve`` runs it."""

from clickrec_platform.serving.api.app import create_app

__all__ = ["create_app"]
