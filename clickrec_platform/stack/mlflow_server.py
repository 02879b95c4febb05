"""MLflow tracking server: PostgreSQL backend store, UI on :5000, artifacts served by the server from a local
folder or (the cluster topology, or `CLICKREC_MLFLOW_ARTIFACTS_DESTINATION=s3://…`) an S3-compatible store."""

from __future__ import annotations

import httpx

from clickrec_platform.settings import Settings
from clickrec_platform.stack.service import Health, ServiceSpec, executable


def _command(s: Settings) -> list[str]:
    return [executable("mlflow"), "server", "--host", s.bind_host, "--port", str(s.mlflow_port), "--workers", "1",
            "--serve-artifacts", "--artifacts-destination", s.mlflow_artifacts_uri]


def _prepare(s: Settings) -> None:
    if not s.mlflow_artifacts_uri.startswith("s3://"):
        s.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)


def _environment(s: Settings) -> dict[str, str]:
    # Through the environment, so the passwords never show in the process list.
    return {"MLFLOW_BACKEND_STORE_URI": s.postgres_dsn(s.mlflow_db, driver="postgresql+psycopg2"),
            **artifact_store_environment(s)}


def _health(s: Settings) -> Health:
    try:
        response = httpx.get(f"{s.tracking_uri}/health", timeout=3)
        version = httpx.get(f"{s.tracking_uri}/version", timeout=3).text
    except httpx.HTTPError as exc:
        return Health(False, f"{type(exc).__name__}: {exc}")
    return Health(response.status_code == 200, f"MLflow {version}, /health {response.status_code}")


MLFLOW = ServiceSpec(name="mlflow", command=_command, probe=_health, url=lambda s: s.tracking_uri,
                     port=lambda s: s.mlflow_port, marker="mlflow", env=_environment, prepare=_prepare)


def artifact_store_environment(settings: Settings) -> dict[str, str]:
    """What MLflow's S3 artifact repository (boto3) needs to reach an s3:// destination: the endpoint of an
    S3-compatible store and the credentials, from the s3_* settings; nothing for a folder."""
    if not settings.mlflow_artifacts_uri.startswith("s3://"):
        return {}
    environment = {"AWS_DEFAULT_REGION": settings.s3_region or "us-east-1",
                   # boto3 ≥ 1.36 adds CRC checksum headers to every upload, which S3-compatible stores such as
                   # S3Proxy 2.6 refuse ("NotImplemented"); send them only where an operation requires them.
                   "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                   "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
    if settings.s3_endpoint:
        environment["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint
    if settings.s3_access_key:
        environment["AWS_ACCESS_KEY_ID"] = settings.s3_access_key
    if settings.s3_secret_key:
        environment["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_key.get_secret_value()
    return environment
