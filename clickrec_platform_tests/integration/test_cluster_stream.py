"""The stream job on the cluster topology: the Kafka cluster, the Spark standalone cluster and the lake
on the object store (S3Proxy), with the same assertions as on the local topology, and its faults."""

from __future__ import annotations

import os
import signal
import time

import pytest

from clickrec_platform.lake.tables import BRONZE_CLICKSTREAM, OPS_STREAM_BATCHES, SILVER_EVENTS
from clickrec_platform.stack import service
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform.stack.spark_cluster import SparkMasterService, SparkWorkerService
from clickrec_platform_tests.support import (
    assert_gold_windows_match_silver,
    assert_reconciled,
    delta_rows,
    message_mix,
    pg_rows,
    produce,
    stream_process,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def on_cluster(cluster):
    """A topic, a lake prefix in the object store, an app id and a Postgres schema of the test's own."""
    with scratch_settings(cluster, "cluster") as settings:
        assert settings.lake_uri.startswith("s3a://") and settings.spark_master.startswith("spark://")
        yield settings


def silver_count(s) -> int:
    try:
        return delta_rows(SILVER_EVENTS.path(s), "SELECT count(*) FROM t", s)[0][0]
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def batches(s) -> int:
    try:
        return delta_rows(OPS_STREAM_BATCHES.path(s), "SELECT count(*) FROM t", s)[0][0]
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def job_alive(job, log_path):
    def check():
        assert job.poll() is None, f"the stream job exited with {job.returncode}:\n{log_path.read_text()[-3000:]}"
        return True
    return check


def assert_nothing_lost_or_doubled(s, records, valid_ids) -> None:
    (count, distinct), = delta_rows(SILVER_EVENTS.path(s), "SELECT count(*), count(DISTINCT event_id) FROM t", s)
    assert count == distinct == len(valid_ids)
    assert delta_rows(BRONZE_CLICKSTREAM.path(s), "SELECT count(*), count(DISTINCT (partition, \"offset\")) FROM t",
                      s) == [(len(records), len(records))]
    assert pg_rows(s, "SELECT sum(event_count) FROM {schema}.windowed_stats") == [(len(valid_ids),)]


def test_available_now_on_the_cluster_gives_the_local_topology_tables(on_cluster, tmp_path):
    """The same records and assertions as the local topology's stream tests, on executors of the
    standalone cluster writing Delta to the object store."""
    s, log_path = on_cluster, tmp_path / "stream.log"
    records, valid_ids, bad_reasons = message_mix(2_000, seed=21)
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    job = stream_process(s, log_path, "--available-now", "--max-offsets-per-trigger", "1000")
    assert job.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    assert "spark://" in log_path.read_text() or s.spark_master.startswith("spark://")
    assert_reconciled(s, records, valid_ids, bad_reasons)
    assert_gold_windows_match_silver(s)


def test_kill_9_of_a_spark_worker_mid_batch_loses_and_duplicates_nothing(on_cluster, tmp_path):
    """A worker dies with its executor mid-batch: the master reschedules the tasks on the other worker and
    the job goes on; the worker, restarted, rejoins."""
    s, log_path = on_cluster, tmp_path / "stream.log"
    records, valid_ids, _reasons = message_mix(10_000, seed=9)
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    job = stream_process(s, log_path, "--ingest-trigger", "0.5", "--gold-trigger", "5",
                         "--max-offsets-per-trigger", "1500")
    worker = SparkWorkerService(s, 1)
    try:
        wait_for("two ingest batches committed", lambda: batches(s) >= 2, timeout_s=900, interval_s=1,
                 alive=job_alive(job, log_path))
        worker_pid = worker.process().pid()
        assert worker_pid is not None, "the Spark worker is not running"
        os.kill(worker_pid, signal.SIGKILL)  # the worker; its executor dies with it
        assert silver_count(s) < len(valid_ids)  # it really was stopped midway
        wait_for("every valid event in silver", lambda: silver_count(s) >= len(valid_ids), timeout_s=600,
                 interval_s=2, alive=job_alive(job, log_path))
        assert worker.start() and worker.health().ok
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    restart = stream_process(s, log_path, "--available-now")  # gold catches up with what silver holds
    assert restart.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    assert_nothing_lost_or_doubled(s, records, valid_ids)
    assert SparkMasterService(s).health().ok and len(SparkMasterService(s).workers()) == s.spark_workers


def test_an_object_store_restart_mid_stream_loses_and_duplicates_nothing(on_cluster, tmp_path):
    """The object store goes away (kill -9) and comes back while the continuous job writes to it."""
    s, log_path = on_cluster, tmp_path / "stream.log"
    records, valid_ids, _reasons = message_mix(10_000, seed=10)
    produce(s.kafka_bootstrap_servers, s.kafka_topic, records)
    job = stream_process(s, log_path, "--ingest-trigger", "0.5", "--gold-trigger", "5",
                         "--max-offsets-per-trigger", "1500")
    store = service(s, "s3proxy")
    try:
        wait_for("two ingest batches committed", lambda: batches(s) >= 2, timeout_s=900, interval_s=1,
                 alive=job_alive(job, log_path))
        store_pid = store.process().pid()
        assert store_pid is not None, "S3Proxy is not running"
        os.kill(store_pid, signal.SIGKILL)
        down_at = time.monotonic()
        time.sleep(5)  # an outage of some seconds, not a synchronisation
        assert store.start() and store.health().ok
        outage = time.monotonic() - down_at
        wait_for("every valid event in silver", lambda: silver_count(s) >= len(valid_ids), timeout_s=600,
                 interval_s=2, alive=job_alive(job, log_path))
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    restart = stream_process(s, log_path, "--available-now")
    assert restart.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    assert_nothing_lost_or_doubled(s, records, valid_ids)
    print(f"object store down {outage:.1f}s")
