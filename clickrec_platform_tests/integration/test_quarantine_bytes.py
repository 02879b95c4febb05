"""silver.quarantine keeps records as the bytes received, readable by Spark, DuckDB and delta-rs
whatever the bytes; a lake written before that is migrated without losing a byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from clickrec_platform.lake.duck import lake_connection
from clickrec_platform.lake.migrations import migrate_quarantine_to_bytes
from clickrec_platform.lake.tables import SILVER_QUARANTINE
from spark_jobs.ingest import raw_text

pytestmark = pytest.mark.integration

GARBAGE = b"\xff\xfe\x00garbage"
RECORDS = [(b"\xfe\xff", GARBAGE), (b"17", b'{"event": "teleport"}'), (None, b"")]

# The quarantine's columns before issue #19: key and value cast to strings, bytes unchecked.
OLD_SCHEMA = ("raw_key string, raw_value string, topic string, kafka_partition int, kafka_offset bigint, "
              "kafka_timestamp timestamp, reason string, ingest_batch bigint, ingested_at timestamp")


def clickrec_sql(settings, query: str) -> subprocess.CompletedProcess:
    clickrec = Path(sys.executable).parent / "clickrec"
    return subprocess.run([str(clickrec), "sql", "--format", "csv", query], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CLICKREC_LAKE_ROOT": settings.lake_uri})


def assert_readable_everywhere(spark, settings) -> None:
    path = SILVER_QUARANTINE.path(settings)
    by_spark = {bytes(r.raw_value): (r.raw_key and bytes(r.raw_key), r.raw_text) for r in
                spark.read.format("delta").load(path).select("raw_key", "raw_value", "raw_text").collect()}
    assert by_spark == {v: (k, v.decode("utf-8", errors="replace")) for k, v in RECORDS}

    by_delta_rs = DeltaTable(path).to_pyarrow_table().to_pydict()
    assert dict(zip(by_delta_rs["raw_value"], by_delta_rs["raw_key"], strict=True)) == {v: k for k, v in RECORDS}
    assert "\ufffd\ufffd\x00garbage" in by_delta_rs["raw_text"]

    con = lake_connection(settings)
    assert con.sql("SELECT raw_key, raw_text FROM silver.quarantine WHERE raw_value = '\\xFF\\xFE\\x00garbage'::BLOB"
                   ).fetchall() == [(b"\xfe\xff", "\ufffd\ufffd\x00garbage")]
    assert con.sql("SELECT count(*) FROM silver.quarantine WHERE raw_text LIKE '%x%'").fetchall() == [(0,)]

    # The query of issue #19, through the CLI: it answers instead of failing on the encoding.
    answered = clickrec_sql(settings, "SELECT reason FROM silver.quarantine WHERE raw_text LIKE '%garbage%'")
    assert (answered.returncode, answered.stdout) == (0, "reason\nmalformed_json\n"), answered.stderr


def quarantine_rows(spark, key_type: str):
    rows = spark.createDataFrame(
        [(k, v, "clickstream", 0, i, None, "malformed_json", 0, None) for i, (k, v) in enumerate(RECORDS)],
        "key binary, value binary, topic string, kafka_partition int, kafka_offset bigint, "
        "kafka_timestamp timestamp, reason string, ingest_batch bigint, ingested_at timestamp")
    if key_type == "string":  # what the writer before issue #19 did
        return rows.select(F.col("key").cast("string").alias("raw_key"), F.col("value").cast("string").alias("raw_value"),
                           *rows.columns[2:])
    return rows.select(F.col("key").alias("raw_key"), F.col("value").alias("raw_value"), raw_text(F.col("value")),
                       *rows.columns[2:])


def test_quarantine_rows_are_bytes_readable_by_every_reader(spark, stack, tmp_path):
    settings = stack.model_copy(update={"lake_root": str(tmp_path / "lake")})
    path = SILVER_QUARANTINE.ensure(spark, settings)
    quarantine_rows(spark, "binary").write.format("delta").mode("append").save(path)
    assert_readable_everywhere(spark, settings)
    assert not migrate_quarantine_to_bytes(spark, settings)  # already current: nothing to do


def test_a_quarantine_of_strings_is_migrated_to_the_bytes_received(spark, stack, tmp_path):
    settings = stack.model_copy(update={"lake_root": str(tmp_path / "lake")})
    path = SILVER_QUARANTINE.path(settings)
    old = quarantine_rows(spark, "string")
    assert [f.simpleString() for f in old.schema.fields] == [c.replace(" ", ":", 1) for c in OLD_SCHEMA.split(", ")]
    old.write.format("delta").save(path)
    # The failure the migration removes: DuckDB refuses the invalid UTF-8 stored in a string column.
    refused = clickrec_sql(settings, "SELECT * FROM silver.quarantine WHERE raw_value LIKE '%x%'")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    assert migrate_quarantine_to_bytes(spark, settings)

    SILVER_QUARANTINE.ensure(spark, settings)  # what the stream job does next: the schema is current
    assert_readable_everywhere(spark, settings)
    assert not migrate_quarantine_to_bytes(spark, settings)
