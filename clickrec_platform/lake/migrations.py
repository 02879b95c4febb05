"""Schema changes of the stream job's Delta tables, applied to lakes written by an earlier version.

The stream job runs them before it creates its tables, while it is the tables' only writer. Each is
idempotent: it looks at the table's current schema and does nothing when the table is up to date.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickrec_platform.lake.tables import SILVER_QUARANTINE
from clickrec_platform.settings import Settings

log = logging.getLogger("clickrec.lake")


def migrate_quarantine_to_bytes(spark: SparkSession, settings: Settings) -> bool:
    """Rewrite a ``silver.quarantine`` whose ``raw_key``/``raw_value`` are strings (before issue #19)
    into the binary columns plus ``raw_text``; returns whether it did.

    Nothing is lost: the old writer cast the Kafka bytes to a string without checking them, and
    Spark stored them unchanged, so casting back to binary gives the bytes as received. The rewrite
    is one Delta overwrite with the new schema (``overwriteSchema``), so readers see the old table or
    the new one whole, and the idempotent appends' transaction ids survive it.
    """
    from delta.tables import DeltaTable

    path = SILVER_QUARANTINE.path(settings)
    if not DeltaTable.isDeltaTable(spark, path):
        return False
    current = spark.read.format("delta").load(path)
    if dict(current.dtypes).get("raw_value") != "string":
        return False
    target = spark.createDataFrame([], SILVER_QUARANTINE.schema).schema
    columns = {
        "raw_key": F.col("raw_key").cast("binary"),
        "raw_value": F.col("raw_value").cast("binary"),
        "raw_text": F.make_valid_utf8(F.col("raw_value")),
    }
    migrated = current.select(*[columns.get(field.name, F.col(field.name)).cast(field.dataType).alias(field.name)
                                for field in target])
    (migrated.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
     .option("userMetadata", "migration: quarantine raw key and value as bytes").save(path))
    log.info("migrated %s to binary raw_key/raw_value plus raw_text", path)
    return True
