"""The stream job's pure helpers: Kafka lag from query progress, metric labels, the alert's cause, its master."""

from __future__ import annotations

import pytest

from spark_jobs.clickstream_stream import failure_cause
from spark_jobs.metrics import kafka_lag, reason_label


def test_kafka_lag_per_partition_from_end_and_latest_offsets():
    end = '{"clickstream": {"0": 100, "1": 250}}'
    latest = '{"clickstream": {"0": 130, "1": 250, "2": 7}}'
    assert kafka_lag(end, latest) == {("clickstream", "0"): 30, ("clickstream", "1"): 0, ("clickstream", "2"): 7}


def test_kafka_lag_is_none_for_sources_that_are_not_kafka():
    assert kafka_lag('{"reservoirVersion": 3, "index": 1}', '{"reservoirVersion": 3}') is None
    assert kafka_lag(None, None) is None
    assert kafka_lag("not json", "{}") is None


def test_reason_labels_keep_field_names_and_drop_echoed_text():
    assert reason_label("missing_field:ts") == "missing_field:ts"
    assert reason_label("malformed_json") == "malformed_json"
    assert reason_label("unknown_event:DROP TABLE x") == "unknown_event"


def test_failure_cause_picks_the_python_error_inside_a_query_failure():
    message = ("Identifier: ingest [id = 7f, runId = 43]\nAn exception was raised by the Python Proxy.\n"
               "Traceback (most recent call last):\n  File \"ingest.py\", line 1\n"
               "psycopg.errors.UndefinedTable: relation \"gold.user_recent_items\" does not exist\n"
               "org.apache.spark.SparkException: wrapped\n\tat org.apache.spark.Foo(Foo.scala:1)")
    assert failure_cause(RuntimeError(message)) == (
        'psycopg.errors.UndefinedTable: relation "gold.user_recent_items" does not exist')
    assert failure_cause(ValueError("first line\nsecond")) == "first line"
    assert len(failure_cause(ValueError("x" * 2000))) == 500


@pytest.mark.parametrize(("master", "available_now", "cores", "expected"), [
    ("local[*]", False, 1, "local[1]"),
    ("local[4, 3]", False, 2, "local[2,3]"),
    ("local", False, 1, "local[1]"),
    ("local[*]", True, 1, "local[*]"),  # catch-up gets every core
    ("local[*]", False, None, "local[*]"),  # the setting off
    ("spark://127.0.0.1:7077", False, 1, "spark://127.0.0.1:7077"),  # a cluster's cores are its own
])
def test_continuous_mode_runs_a_local_master_on_the_configured_cores(master, available_now, cores, expected):
    from clickrec_platform.settings import Settings
    from spark_jobs.clickstream_stream import StreamOptions, spark_master

    settings = Settings(spark_master=master, stream_continuous_cores=cores)
    assert spark_master(settings, StreamOptions(available_now=available_now)) == expected
