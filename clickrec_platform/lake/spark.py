"""A SparkSession with Delta Lake and the Kafka connector, from the jars resolved at setup.

``local[*]`` by default; set ``SPARK_MASTER`` to run the same code on a cluster.
"""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from clickrec_platform.settings import Settings
from clickrec_platform.stack.jars import SPARK_CONNECTORS

_JIT_HUGE_METHODS = "-XX:-DontCompileHugeMethods"


def spark_session(settings: Settings, app_name: str = "clickrec", **extra_conf: str) -> SparkSession:
    """Get or create the process's session (Spark allows one active context per JVM)."""
    # Spark's driver and UI bind to this address rather than every interface.
    os.environ.setdefault("SPARK_LOCAL_IP", settings.bind_host)
    jars = ",".join(str(j) for j in SPARK_CONNECTORS.jars(settings))
    conf = {
        "spark.jars": jars,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.driver.host": settings.bind_host,
        "spark.driver.bindAddress": settings.bind_host,
        "spark.ui.enabled": str(settings.spark_ui_enabled).lower(),
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # Delta rebuilds table state with 50 tasks by default: far too many for small local tables.
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_shuffle_partitions),
        # Whole-stage code generation fuses the event parser into methods larger than 8,000 bytes of
        # bytecode, which HotSpot by default never compiles: parsing then runs interpreted, 2x slower.
        "spark.driver.extraJavaOptions": _JIT_HUGE_METHODS,
        "spark.executor.extraJavaOptions": _JIT_HUGE_METHODS,
        **extra_conf,
    }
    builder = SparkSession.builder.master(settings.spark_master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
