"""Batch writes to Delta tables that make re-runs and backfills idempotent."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def _committed_version(spark: SparkSession, path: str) -> int:
    """The version of the table's last commit, read by the Spark that wrote it (local or object store alike)."""
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, path).history(1).head()
    assert last is not None  # the table was just written: it has a commit
    return last.version


def overwrite(frame: DataFrame, path: str, *, description: str = "") -> int:
    """Replace the whole table (schema included) in one commit; returns the new version."""
    (frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
     .option("userMetadata", description or None).save(path))
    return _committed_version(frame.sparkSession, path)


def replace_date_range(frame: DataFrame, path: str, column: str, start: date, end: date) -> int:
    """Replace exactly the partitions `start <= column < end` with `frame`, in one commit.

    Every row of `frame` must fall inside the range (Delta's replaceWhere refuses the write
    otherwise), so a day re-materialised or backfilled replaces that day and nothing else.
    """
    condition = f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"
    writer = frame.write.format("delta").mode("overwrite").option("replaceWhere", condition)
    if not exists(frame.sparkSession, path):
        writer = writer.partitionBy(column)
    writer.save(path)
    return _committed_version(frame.sparkSession, path)


def from_pandas(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """A Spark DataFrame through Arrow, naive times taken as UTC (stored as TIMESTAMP, not NTZ)."""
    utc = {name: frame[name].dt.tz_localize("UTC") for name in frame.columns
           if pd.api.types.is_datetime64_dtype(frame[name]) and frame[name].dt.tz is None}
    return spark.createDataFrame(pa.Table.from_pandas(frame.assign(**utc), preserve_index=False))


def in_date_range(frame: DataFrame, column: str, start: date, end: date) -> DataFrame:
    return frame.where((F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end)))
