"""Apache Kafka 4.x in KRaft mode from the official jars: the local topology's single node, and the
cluster topology's nodes (``kafka-1`` … ``kafka-N``), each a broker and a controller in one JVM.

Storage is formatted on the first start and kept under the state dir, so messages survive
`down`/`up`. The platform's topics are created with the configured partition counts and replication.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.jars import KAFKA_BROKER
from clickrec_platform.stack.process import ManagedProcess, ServiceError, installed, port_in_use, wait_until
from clickrec_platform.stack.service import Health, LocalService


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_executable() -> str:
    return installed("java", "Java 17+ is required to run Kafka and Spark: run `clickrec setup` as root, "
                             "or `apt-get install openjdk-17-jre-headless`.")


def admin_client(bootstrap_servers: str) -> AdminClient:
    # log_level 0: a probe of a broker that is still starting should fail quietly, not spam stderr.
    return AdminClient({"bootstrap.servers": bootstrap_servers, "socket.connection.setup.timeout.ms": 3000,
                        "log_level": 0})


class KafkaService(LocalService):
    """The local topology's Kafka: node 1, its own quorum, on the settings' bootstrap address."""

    name = "kafka"
    node_id = 1

    @property
    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap_servers}"

    @property
    def _listener(self) -> tuple[str, int]:
        host, _, port = self.settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
        return host or self.settings.bind_host, int(port)

    @property
    def controller_port(self) -> int:
        return self.settings.kafka_controller_port

    @property
    def quorum_voters(self) -> str:
        return f"{self.node_id}@{self._listener[0]}:{self.controller_port}"

    @property
    def kafka_dir(self) -> Path:
        return self.settings.state_dir / "kafka"

    @property
    def logs_dir(self) -> Path:
        return self.settings.state_dir / "logs" / "kafka"

    @property
    def heap(self) -> str:
        return self.settings.kafka_heap

    @property
    def config_file(self) -> Path:
        return self.kafka_dir / "server.properties"

    def server_properties(self) -> dict[str, str]:
        host, port = self._listener
        controller = f"{host}:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.kafka_dir / "data"),
            "num.partitions": str(self.settings.kafka_topic_partitions),
            "auto.create.topics.enable": "false",
            # One broker: internal topics cannot have more than one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "message.max.bytes": str(8 * 1024 * 1024),
        }

    def _java_argv(self, main_class: str, *args: str) -> list[str]:
        classpath = ":".join(str(j) for j in KAFKA_BROKER.jars(self.settings))
        return [java_executable(), f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.logs_dir}",
                f"-Dlog4j2.configurationFile={PROJECT_ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
                "-cp", classpath, main_class, *args]

    def cluster_id(self) -> str:
        """The id its storage is formatted with: a new one for a single node."""
        return random_cluster_id()

    def prepare(self) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by `clickrec up` from the settings; edits are overwritten.\n"
            + "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        )
        if (self.kafka_dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            self._java_argv("kafka.tools.StorageTool", "format", "--cluster-id", self.cluster_id(),
                            "--config", str(self.config_file)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"Formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")

    def _ready(self) -> bool:
        return self.health().ok

    def process(self) -> ManagedProcess:
        host, port = self._listener
        return ManagedProcess(
            name=self.name, argv=lambda: self._java_argv("kafka.Kafka", str(self.config_file)),
            state_dir=self.settings.state_dir, ready=self._ready,
            ports=[(host, port), (host, self.controller_port)],
            cmdline_marker=str(self.config_file),
        )

    def broker_features(self) -> dict[str, str]:
        """The broker's finalized feature levels (DescribeFeatures API, through Kafka's own tool).

        ``metadata.version`` names the Kafka release whose metadata format the cluster runs, e.g.
        ``4.1-IV1``.
        """
        result = subprocess.run(
            self._java_argv("org.apache.kafka.tools.FeatureCommand", "--bootstrap-server",
                            self.settings.kafka_bootstrap_servers, "describe"),
            capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise ServiceError(f"kafka FeatureCommand failed:\n{result.stdout}\n{result.stderr}")
        features = {}
        for line in result.stdout.splitlines():
            fields = dict(part.split(": ", 1) for part in line.split("\t") if ": " in part)
            if "Feature" in fields:
                features[fields["Feature"]] = fields.get("FinalizedVersionLevel", "")
        return features

    def after_ready(self) -> None:
        """Create the platform's topics (idempotent)."""
        s = self.settings
        admin = admin_client(s.kafka_bootstrap_servers)
        existing = admin.list_topics(timeout=10).topics
        wanted = [NewTopic(s.kafka_topic, num_partitions=s.kafka_topic_partitions,
                           replication_factor=s.kafka_replication_factor)]
        missing = [t for t in wanted if t.topic not in existing]
        for topic, future in (admin.create_topics(missing) if missing else {}).items():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ServiceError(f"Could not create Kafka topic {topic}: {exc}") from exc

    def health(self) -> Health:
        try:
            admin = admin_client(self.settings.kafka_bootstrap_servers)
            metadata = admin.list_topics(timeout=3)
            cluster = admin.describe_cluster(request_timeout=3).result(timeout=5)
        except Exception as exc:  # noqa: BLE001
            return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
        return Health(True, f"cluster {cluster.cluster_id}, {len(metadata.brokers)} broker(s), "
                            f"{len([t for t in metadata.topics if not t.startswith('__')])} topic(s)")


class KafkaNodeService(KafkaService):
    """Node ``node_id`` of the cluster topology's Kafka (``kafka_cluster_nodes`` combined KRaft nodes).

    Every node is a voter of one static controller quorum and a broker; all share one cluster id, kept
    in the state dir. Internal topics get 3 replicas (fewer nodes: all of them) and, like every topic by
    default, ``min.insync.replicas`` one less: an acks=all write needs two copies, and the cluster goes
    on with one node down. A node counts as started once its controller listens, as no quorum (and so no
    broker) can form before a majority of the nodes runs; the last node to start waits for the whole
    cluster to answer, then creates the topics.
    """

    family = "kafka"

    def __init__(self, settings: Settings, node_id: int):
        super().__init__(settings)
        self.node_id = node_id
        self.name = f"kafka-{node_id}"
        _, self._broker_port, self._controller_port = settings.kafka_cluster_ports[node_id - 1]

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap_server}"

    @property
    def bootstrap_server(self) -> str:
        return f"{self.settings.bind_host}:{self._broker_port}"

    @property
    def _listener(self) -> tuple[str, int]:
        return self.settings.bind_host, self._broker_port

    @property
    def controller_port(self) -> int:
        return self._controller_port

    @property
    def quorum_voters(self) -> str:
        host = self.settings.bind_host
        return ",".join(f"{i}@{host}:{controller}" for i, _, controller in self.settings.kafka_cluster_ports)

    @property
    def cluster_dir(self) -> Path:
        return self.settings.state_dir / "kafka-cluster"

    @property
    def kafka_dir(self) -> Path:
        return self.cluster_dir / f"node-{self.node_id}"

    @property
    def logs_dir(self) -> Path:
        return self.settings.state_dir / "logs" / self.name

    @property
    def heap(self) -> str:
        return self.settings.kafka_cluster_heap

    def server_properties(self) -> dict[str, str]:
        replicas = min(3, self.settings.kafka_cluster_nodes)
        in_sync = max(1, replicas - 1)
        return {
            **super().server_properties(),
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(in_sync),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(in_sync),
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(in_sync),
        }

    def cluster_id(self) -> str:
        """The cluster's id: generated by the first node formatted, read by the others."""
        path = self.cluster_dir / "cluster.id"
        if not path.is_file():
            self.cluster_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(random_cluster_id() + "\n")
        return path.read_text().strip()

    def _ready(self) -> bool:
        return port_in_use(self.settings.bind_host, self.controller_port)

    def after_ready(self) -> None:
        """Once every node runs (or none is managed here): wait for all brokers, then create the topics."""
        if self.managed and not all(node.process().is_running() for node in kafka_cluster(self.settings)):
            return
        expected = set(range(1, self.settings.kafka_cluster_nodes + 1))
        if not wait_until(lambda: set(self.broker_ids()) >= expected, self.settings.startup_timeout_s):
            raise ServiceError(f"The Kafka cluster's brokers {sorted(expected)} did not all register within "
                               f"{self.settings.startup_timeout_s:.0f}s (answering: {self.broker_ids()}); "
                               f"see `clickrec logs kafka-<n>`.")
        super().after_ready()

    def broker_ids(self) -> list[int]:
        """The brokers the cluster's metadata lists, as this node's broker tells them (empty if it does not answer)."""
        try:
            return sorted(admin_client(self.bootstrap_server).list_topics(timeout=3).brokers)
        except KafkaException:
            return []

    def health(self) -> Health:
        try:
            admin = admin_client(self.bootstrap_server)
            metadata = admin.list_topics(timeout=3)
            cluster = admin.describe_cluster(request_timeout=3).result(timeout=5)
        except Exception as exc:  # noqa: BLE001
            return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
        brokers = sorted(metadata.brokers)
        if self.node_id not in brokers:
            return Health(False, f"broker {self.node_id} is not registered in cluster {cluster.cluster_id} "
                                 f"(brokers {', '.join(map(str, brokers))})")
        topics = {name: t for name, t in metadata.topics.items() if not name.startswith("__")}
        lagging = sum(len(p.isrs) < len(p.replicas) for t in topics.values() for p in t.partitions.values())
        return Health(True, f"broker {self.node_id} of cluster {cluster.cluster_id}; brokers "
                            f"{', '.join(map(str, brokers))} of {self.settings.kafka_cluster_nodes} answer; "
                            f"{len(topics)} topic(s), {lagging} under-replicated partition(s)")

    def quorum_leader(self) -> int:
        """The node id of the controller quorum's leader (Kafka's own MetadataQuorumCommand, through this node)."""
        result = subprocess.run(
            self._java_argv("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server",
                            self.bootstrap_server, "describe", "--status"),
            capture_output=True, text=True, timeout=60,
        )
        for line in result.stdout.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "LeaderId":
                return int(value)
        raise ServiceError(f"kafka MetadataQuorumCommand named no leader:\n{result.stdout}\n{result.stderr}")


def kafka_cluster(settings: Settings) -> list[LocalService]:
    """The cluster topology's Kafka: one service per node, ``kafka-1`` … ``kafka-N``."""
    return [KafkaNodeService(settings, node_id) for node_id, _, _ in settings.kafka_cluster_ports]
