"""Resources every domain shares, configured from the one settings object."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import SparkSession

from clickrec_platform.lake.spark import spark_session
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


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"spark": SparkResource(), "lake": LakeResource()})
