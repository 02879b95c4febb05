"""A SparkSession with Delta Lake and the Kafka connector, from the jars resolved at setup.

``local[*]`` by default; set ``SPARK_MASTER`` to run the same code on a cluster.
"""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from clickrec_platform.settings import Settings
from clickrec_platform.stack.jars import SPARK_CONNECTORS, SPARK_S3

_JIT_HUGE_METHODS = "-XX:-DontCompileHugeMethods"


def _classpath_conf(settings: Settings) -> dict[str, str]:
    """The connector jars: shipped to the executors with the app in local mode; on a cluster, read in
    place on every node (`extraClassPath`: the jars are already there, under the same path), since
    `spark.jars` would copy them to every executor of every application."""
    jars = [str(j) for j in SPARK_CONNECTORS.jars(settings)]
    if settings.lake_uri.startswith("s3") or SPARK_S3.is_resolved(settings):
        jars += [str(j) for j in SPARK_S3.jars(settings)]
    if settings.spark_master.startswith("local"):
        return {"spark.jars": ",".join(jars)}
    conf = {"spark.driver.extraClassPath": ":".join(jars), "spark.executor.extraClassPath": ":".join(jars),
            "spark.executor.memory": settings.spark_executor_memory}
    if settings.spark_app_cores:
        conf["spark.cores.max"] = str(settings.spark_app_cores)
    return conf


def object_store_conf(settings: Settings) -> dict[str, str]:
    """Hadoop's S3A file system pointed at the settings' S3-compatible store (a lake on `s3a://…`)."""
    if not settings.lake_uri.startswith("s3a://"):
        return {}
    conf = {
        "fs.s3a.path.style.access": str(settings.s3_path_style).lower(),
        "fs.s3a.connection.ssl.enabled": str(not settings.s3_allow_http).lower(),
        "fs.s3a.endpoint.region": settings.s3_region or "us-east-1",
    }
    if settings.s3_endpoint:
        conf["fs.s3a.endpoint"] = settings.s3_endpoint
    if settings.s3_access_key and settings.s3_secret_key:
        conf |= {"fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
                 "fs.s3a.access.key": settings.s3_access_key,
                 "fs.s3a.secret.key": settings.s3_secret_key.get_secret_value()}
    return {
        **{f"spark.hadoop.{key}": value for key, value in conf.items()},
        # Streaming checkpoints through the FileSystem API: the default FileContext manager insists that a
        # file's parent "directory" answers getFileStatus, and an empty prefix on an object store (S3Proxy's
        # file system store; any store without directory markers) does not.
        "spark.sql.streaming.checkpointFileManagerClass":
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    }


def spark_session(settings: Settings, app_name: str = "clickrec", **extra_conf: str) -> SparkSession:
    """Get or create the process's session (Spark allows one active context per JVM)."""
    # Spark's driver and UI bind to this address rather than every interface.
    os.environ.setdefault("SPARK_LOCAL_IP", settings.bind_host)
    conf = {
        **_classpath_conf(settings),
        **object_store_conf(settings),
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
