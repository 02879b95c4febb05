"""The cluster topology's Kafka: three combined KRaft nodes on loopback, beside the local single broker."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from typing import cast

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic

from clickrec_platform.stack import services
from clickrec_platform.stack.kafka import KafkaNodeService, admin_client
from clickrec_platform.stack.process import log_tail
from clickrec_platform.stack.service import executable
from clickrec_platform_tests.support import consume, produce

pytestmark = pytest.mark.integration

CLICKREC = executable("clickrec")


def test_three_brokers_form_one_cluster_whose_topic_has_three_in_sync_replicas(stack, kafka_cluster):
    admin = admin_client(kafka_cluster.kafka_bootstrap_servers)
    metadata = admin.list_topics(timeout=10)
    assert {b.id: b.port for b in metadata.brokers.values()} == {1: 9192, 2: 9193, 3: 9194}
    cluster = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert cluster.cluster_id == (kafka_cluster.state_dir / "kafka-cluster" / "cluster.id").read_text().strip()
    nodes = cast(list[KafkaNodeService], services(kafka_cluster, ["kafka"]))  # the cluster's nodes
    assert nodes[0].quorum_leader() in {1, 2, 3}

    # The platform's topic, created by `up` with the cluster's replication: 3 replicas, all in sync.
    topic = metadata.topics[kafka_cluster.kafka_topic]
    assert len(topic.partitions) == kafka_cluster.kafka_topic_partitions
    assert all(sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3] for p in topic.partitions.values())
    # Leadership spread over the nodes (each partition's preferred leader; a node restarted by a fault drill gets
    # its partitions back at the next automatic rebalance), and every partition led.
    assert {p.replicas[0] for p in topic.partitions.values()} == {1, 2, 3}
    assert all(p.leader in (1, 2, 3) for p in topic.partitions.values())
    (configs,) = [f.result(15) for f in admin.describe_configs(
        [ConfigResource("topic", kafka_cluster.kafka_topic)]).values()]
    assert configs["min.insync.replicas"].value == "2"

    # A round trip through the cluster (acks=all: two copies at least), beside the local broker's topics.
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, 3, 3)])[name].result(30)
    try:
        records = [(f"v{i % 5}".encode(), f"{i}".encode()) for i in range(500)]
        produce(kafka_cluster.kafka_bootstrap_servers, name, records)
        assert sorted((m.key(), m.value()) for m in consume(kafka_cluster.kafka_bootstrap_servers, name, 500)) \
            == sorted(records)
        assert name not in admin_client(stack.kafka_bootstrap_servers).list_topics(timeout=10).topics
    finally:
        admin.delete_topics([name])[name].result(30)


def test_status_and_logs_name_each_broker(kafka_cluster):
    env = {**os.environ, "CLICKREC_HOME": str(kafka_cluster.home), "CLICKREC_TOPOLOGY": "cluster"}
    status = subprocess.run([CLICKREC, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    rows = {row["service"]: row for row in json.loads(status.stdout)}
    assert "kafka" not in rows
    for node_id in (1, 2, 3):
        row = rows[f"kafka-{node_id}"]
        assert row["healthy"] and row["pid"] and row["url"] == f"kafka://127.0.0.1:{9191 + node_id}", row
        assert row["detail"].startswith(f"broker {node_id} of cluster ") and "brokers 1, 2, 3 of 3 answer" in \
            row["detail"] and "0 under-replicated" in row["detail"], row

    # Each node logs to a file of its own (its process's output; log4j's files under logs/kafka-<n>/).
    node = services(kafka_cluster, ["kafka-2"])[0].process()
    assert node.log_file.name == "kafka-2.log" and "clickrec: starting kafka-2" in node.log_file.read_text()
    logs = subprocess.run([CLICKREC, "logs", "kafka-2", "-n", "20"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert logs.returncode == 0 and logs.stdout.strip() == log_tail(node.log_file, 20).strip(), logs.stderr
    assert (kafka_cluster.state_dir / "logs" / "kafka-2" / "kafka-server.log").is_file()
