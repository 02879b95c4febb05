"""A namespace of its own on the running stack: a fresh topic, lake folder, stream app id and
Postgres schema, removed afterwards. Tests and benchmarks run the real job in one, so they never
touch the platform's own data."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from confluent_kafka.admin import NewTopic
from psycopg import sql

from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.stack.kafka import admin_client

# The settings that differ inside a scratch namespace (hand them to a child process as its environment).
ISOLATED_FIELDS = ("kafka_topic", "lake_root", "stream_app_id", "gold_schema", "speed_consumer_group")
# And where the engines are, which a cluster topology's namespace hands its children too.
TOPOLOGY_FIELDS = ("topology", "kafka_bootstrap_servers", "spark_master")


@contextmanager
def _scratch_lake(settings: Settings, tag: str) -> Iterator[str]:
    """A lake root of its own: a temporary folder, or a prefix in the object store's bucket for an s3a lake."""
    if not settings.lake_uri.startswith("s3a://"):
        with tempfile.TemporaryDirectory(prefix=f"clickrec-{tag}-") as lake:
            yield lake
        return
    from clickrec_platform.stack.s3proxy import s3_filesystem

    bucket = settings.lake_uri.removeprefix("s3a://").split("/", 1)[0]
    try:
        yield f"s3a://{bucket}/scratch/{tag}"
    finally:
        with contextlib.suppress(OSError):
            s3_filesystem(settings).delete_dir(f"{bucket}/scratch/{tag}")


@contextmanager
def scratch_settings(settings: Settings, prefix: str = "scratch") -> Iterator[Settings]:
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(tag, settings.kafka_topic_partitions,
                                  settings.kafka_replication_factor)])[tag].result(30)
    with _scratch_lake(settings, tag) as lake:
        scratch = settings.model_copy(update={"kafka_topic": tag, "lake_root": lake, "stream_app_id": tag,
                                              "gold_schema": tag.replace("-", "_"), "speed_consumer_group": tag,
                                              "session_registered_model_name": f"{tag}-session"})
        try:
            yield scratch
        finally:
            admin.delete_topics([tag])[tag].result(30)
            with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch.gold_schema)))


@contextmanager
def scratch_process_settings(root: Path, prefix: str = "scratch", **environment: str) -> Iterator[Settings]:
    """This process's settings (`get_settings()`, which Dagster resources read) pointed at a namespace
    of their own: a lake and reference folder under `root`, a Postgres schema, an MLflow experiment
    and registered model names (user-level and session), plus any other `CLICKREC_…` variables. All removed afterwards."""
    tag = f"{prefix}_{uuid.uuid4().hex[:8]}"
    isolated = {"CLICKREC_LAKE_ROOT": str(root / "lake"), "CLICKREC_REFERENCE_DIR": str(root / "reference"),
                "CLICKREC_GOLD_SCHEMA": tag, "CLICKREC_MLFLOW_EXPERIMENT": tag,
                "CLICKREC_REGISTERED_MODEL_NAME": tag.replace("_", "-"),
                "CLICKREC_SESSION_REGISTERED_MODEL_NAME": f"{tag.replace('_', '-')}-session", **environment}
    saved = {name: os.environ.get(name) for name in [*isolated, "RETAILROCKET_DIR"]}
    os.environ.pop("RETAILROCKET_DIR", None)
    os.environ.update(isolated)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        yield settings
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.gold_schema)))
        remove_mlflow_names(settings)


def remove_mlflow_names(settings: Settings) -> None:
    """The settings' MLflow experiment and registered models (user-level and session), where they exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(settings.tracking_uri)
    for name in (settings.registered_model_name, settings.session_registered_model_name):
        with contextlib.suppress(MlflowException):  # raised when nothing was registered
            client.delete_registered_model(name)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        client.delete_experiment(experiment.experiment_id)
