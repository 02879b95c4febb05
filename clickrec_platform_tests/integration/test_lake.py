"""Spark reads the Kafka topic and writes Delta; DuckDB reads the same Delta table."""

from __future__ import annotations

import json

import pytest

from clickrec_platform.lake.duck import connect, scan
from clickrec_platform.settings import get_settings
from clickrec_platform_tests.support import produce

pytestmark = pytest.mark.integration


def test_spark_kafka_to_delta_then_duckdb_sees_the_same_rows(stack, spark, kafka_topic, tmp_path):
    records = [(str(i % 5).encode(), json.dumps({"n": i, "tag": f"t{i % 3}"}).encode()) for i in range(50)]
    produce(stack.kafka_bootstrap_servers, kafka_topic, records)

    frame = (spark.read.format("kafka")
             .option("kafka.bootstrap.servers", stack.kafka_bootstrap_servers)
             .option("subscribe", kafka_topic)
             .option("startingOffsets", "earliest").option("endingOffsets", "latest")
             .load()
             .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value",
                         "partition", "offset"))
    table = str(tmp_path / "roundtrip")
    frame.write.format("delta").mode("overwrite").save(table)

    spark_rows = sorted(tuple(r) for r in spark.read.format("delta").load(table).collect())
    assert len(spark_rows) == len(records)
    assert sorted((k, v) for k, v, _p, _o in spark_rows) == sorted((k.decode(), v.decode()) for k, v in records)

    duck = connect(get_settings())
    duck_rows = sorted(duck.sql(f"SELECT key, value, partition, \"offset\" FROM {scan(table)}")
                       .fetchall())
    assert duck_rows == spark_rows
