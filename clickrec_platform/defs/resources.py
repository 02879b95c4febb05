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


@dg.definitions
def resources() -> dg.Definitions:
    # One Spark driver per run: steps share the run process's session instead of each starting a JVM.
    return dg.Definitions(resources={"spark": SparkResource(), "lake": LakeResource()},
                          executor=dg.in_process_executor)
