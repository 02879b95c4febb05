"""Resources every domain shares, configured from the one settings object."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import DataFrame, SparkSession

from clickrec_platform.lake.spark import spark_session
from clickrec_platform.lake.tables import LakeTable
from clickrec_platform.settings import Settings, get_settings


class SparkResource(dg.ConfigurableResource):
    """The process's SparkSession: ``local[*]`` by default, a cluster when ``SPARK_MASTER`` says so."""

    app_name: str = "clickrec-dagster"

    def get_session(self) -> SparkSession:
        return spark_session(get_settings(), app_name=self.app_name)


class LakeResource(dg.ConfigurableResource):
    """Where the Delta tables live (``CLICKREC_LAKE_ROOT``; a local folder by default)."""

    def settings(self) -> Settings:
        return get_settings()

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


@dg.executor(name="in_process_with_run_lock", config_schema=dg.in_process_executor.config_schema)
def locked_in_process_executor(init_context) -> dg.Executor:
    """Dagster's in-process executor, holding the graph's run lock for the whole run."""
    return RunLockedExecutor(dg.in_process_executor.executor_creation_fn(init_context))


@dg.definitions
def resources() -> dg.Definitions:
    # One Spark driver per run: steps share the run process's session instead of each starting a JVM.
    # (The training graph's job holds the run lock too: `locked_in_process_executor`, set on the job.)
    return dg.Definitions(resources={"spark": SparkResource(), "lake": LakeResource()},
                          executor=dg.in_process_executor)
