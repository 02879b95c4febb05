"""Resources every domain shares: each carries its configuration as fields (what Dagster shows and a run's
config may override), built from the one settings object by `platform_resources`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import dagster as dg
import psycopg
from pyspark.sql import DataFrame, SparkSession

from clickrec_platform.lake.spark import spark_session
from clickrec_platform.lake.tables import LakeTable
from clickrec_platform.settings import Settings, get_settings


class _FromSettings(dg.ConfigurableResource):
    """A resource whose fields are settings (``SETTINGS``: field → setting name): built from a settings object,
    and handing back the platform's settings with its own fields in their place."""

    SETTINGS: ClassVar[dict[str, str]] = {}

    @classmethod
    def _field_values(cls, settings: Settings) -> dict:
        return {field: getattr(settings, name) for field, name in cls.SETTINGS.items()}

    @classmethod
    def from_settings(cls, settings: Settings):
        return cls(**cls._field_values(settings))

    def overrides(self) -> dict:
        """Its fields as settings (setting name → value), to lay over another resource's settings."""
        return {name: getattr(self, field) for field, name in self.SETTINGS.items()}

    def settings(self) -> Settings:
        return get_settings().model_copy(update=self.overrides())


class LakeResource(_FromSettings):
    """Where the Delta tables live and how readers reach them: a local folder, or ``s3a://bucket/prefix`` on
    an S3-compatible store (its credentials stay in the settings: ``CLICKREC_S3_SECRET_KEY`` or the local
    object store's generated secret, never in run config)."""

    root: str  # a folder, or s3a://bucket/prefix
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = True
    s3_allow_http: bool = False

    SETTINGS: ClassVar[dict[str, str]] = {
        "root": "lake_root", "s3_endpoint": "s3_endpoint", "s3_access_key": "s3_access_key",
        "s3_region": "s3_region", "s3_path_style": "s3_path_style", "s3_allow_http": "s3_allow_http"}

    @classmethod
    def _field_values(cls, settings: Settings) -> dict:
        return {**super()._field_values(settings), "root": settings.lake_uri}  # the default folder when unset

    def table_uri(self, layer: str, name: str) -> str:
        from clickrec_platform.lake.tables import table_path

        return table_path(self.settings(), layer, name)

    def read(self, spark: SparkSession, table: LakeTable) -> DataFrame:
        """The table's latest version; a clear error when nothing has written it yet."""
        from clickrec_platform.lake.writes import exists

        path = table.path(self.settings())
        if not exists(spark, path):
            raise dg.Failure(description=f"{table.key} does not exist yet at {path}",
                             metadata={"hint": _HINTS.get(table.key, "materialise its asset first")})
        return spark.read.format("delta").load(path)


class SparkResource(dg.ConfigurableResource):
    """The run's SparkSession: ``local[*]``, or a cluster's master (``spark://host:7077``), configured to reach
    the lake it writes (``lake``: the object store's endpoint and credentials for s3a)."""

    master: str = "local[*]"
    app_cores: int | None = None  # spark.cores.max on a cluster
    executor_memory: str = "1g"
    lake: LakeResource
    app_name: str = "clickrec-dagster"

    @classmethod
    def from_settings(cls, settings: Settings, lake: LakeResource | None = None) -> SparkResource:
        return cls(master=settings.spark_master, app_cores=settings.spark_app_cores,
                   executor_memory=settings.spark_executor_memory, lake=lake or LakeResource.from_settings(settings))

    def get_session(self) -> SparkSession:
        """The process's session (one per run process: Spark allows one context per JVM, so the first
        resource to ask configures it)."""
        settings = self.lake.settings().model_copy(update={
            "spark_master": self.master, "spark_app_cores": self.app_cores,
            "spark_executor_memory": self.executor_memory})
        return spark_session(settings, app_name=self.app_name)


class PostgresResource(_FromSettings):
    """The gold database, as the platform's own role (its password stays in the settings:
    ``CLICKREC_POSTGRES_PASSWORD`` or the local cluster's generated one)."""

    host: str = "127.0.0.1"
    port: int = 5433
    user: str = "clickrec"
    database: str = "clickrec"
    sslmode: str = "prefer"
    gold_schema: str = "gold"

    SETTINGS: ClassVar[dict[str, str]] = {
        "host": "postgres_host", "port": "postgres_port", "user": "postgres_user", "database": "postgres_db",
        "sslmode": "postgres_sslmode", "gold_schema": "gold_schema"}

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.settings().postgres_dsn(), autocommit=True, connect_timeout=10) as conn:
            yield conn


class MlflowResource(_FromSettings):
    """The tracking server and the names a training logs and registers under (the server keeps the
    artifacts: on the local disk, or in the object store on the cluster topology)."""

    tracking_uri: str
    experiment: str = "clickrec"
    registered_model: str = "clickrec-recommender"
    session_registered_model: str = "clickrec-session-recommender"

    SETTINGS: ClassVar[dict[str, str]] = {
        "tracking_uri": "mlflow_tracking_uri", "experiment": "mlflow_experiment",
        "registered_model": "registered_model_name", "session_registered_model": "session_registered_model_name"}

    @classmethod
    def _field_values(cls, settings: Settings) -> dict:
        return {**super()._field_values(settings), "tracking_uri": settings.tracking_uri}  # the stack's when unset

    def over(self, settings: Settings) -> Settings:
        """``settings`` (e.g. the lake resource's) with this resource's server and names."""
        return settings.model_copy(update=self.overrides())


def platform_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset uses, configured from ``settings``: the definitions bind them from the
    process's settings; ``orchestration.materialize`` binds them from the settings it is given, so one
    definitions module runs against either topology (or a scratch lake)."""
    lake = LakeResource.from_settings(settings)
    return {"lake": lake, "spark": SparkResource.from_settings(settings, lake),
            "postgres": PostgresResource.from_settings(settings), "mlflow": MlflowResource.from_settings(settings)}


_HINTS = {"silver.events": "run the stream job (`clickrec stream --available-now`) after producing events"}


class RunLockedExecutor(dg.Executor):
    """An executor that holds the graph's run lock (``clickrec_platform.run_lock``) while ``inner`` runs
    the plan: launched runs (UI, schedule, sensor) wait for in-process ones and for each other."""

    def __init__(self, inner: dg.Executor):
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        from clickrec_platform.run_lock import graph_run_lock

        with graph_run_lock(get_settings(), plan_context.run_id, say=plan_context.log.info):
            yield from self.inner.execute(plan_context, execution_plan)


# Dagster takes another definition's schema as it is (convert_user_facing_definition_config_schema); its
# type for config_schema leaves that out.
@dg.executor(name="in_process_with_run_lock",
             config_schema=dg.in_process_executor.config_schema)  # type: ignore[call-overload]
def locked_in_process_executor(init_context) -> dg.Executor:
    """Dagster's in-process executor, holding the graph's run lock for the whole run."""
    create = dg.in_process_executor.executor_creation_fn
    assert create is not None  # Dagster's in-process executor has its creation function
    return RunLockedExecutor(create(init_context))


@dg.definitions
def resources() -> dg.Definitions:
    # One Spark driver per run: steps share the run process's session instead of each starting a JVM.
    # (The training graph's job holds the run lock too: `locked_in_process_executor`, set on the job.)
    return dg.Definitions(resources=platform_resources(get_settings()), executor=dg.in_process_executor)
