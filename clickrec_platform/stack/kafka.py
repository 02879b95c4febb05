"""Apache Kafka 4.x, single-node KRaft (broker and controller in one JVM), from the official jars.

Storage is formatted on the first start and kept under the state dir, so messages survive
`down`/`up`. The platform's topics are created with the configured partition counts.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from clickrec_platform.settings import PROJECT_ROOT
from clickrec_platform.stack.jars import KAFKA_BROKER
from clickrec_platform.stack.process import ManagedProcess, ServiceError
from clickrec_platform.stack.service import Health, LocalService


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("Java 17+ is required to run Kafka and Spark: run `clickrec setup` as root, "
                           "or `apt-get install openjdk-17-jre-headless`.")
    return java


def admin_client(bootstrap_servers: str) -> AdminClient:
    # log_level 0: a probe of a broker that is still starting should fail quietly, not spam stderr.
    return AdminClient({"bootstrap.servers": bootstrap_servers, "socket.connection.setup.timeout.ms": 3000,
                        "log_level": 0})


class KafkaService(LocalService):
    name = "kafka"

    @property
    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap_servers}"

    @property
    def _listener(self) -> tuple[str, int]:
        host, _, port = self.settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
        return host or self.settings.bind_host, int(port)

    @property
    def kafka_dir(self) -> Path:
        return self.settings.state_dir / "kafka"

    @property
    def config_file(self) -> Path:
        return self.kafka_dir / "server.properties"

    def server_properties(self) -> dict[str, str]:
        host, port = self._listener
        controller = f"{host}:{self.settings.kafka_controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
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
        heap = self.settings.kafka_heap
        logs_dir = self.settings.state_dir / "logs" / "kafka"
        return [java_executable(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs_dir}",
                f"-Dlog4j2.configurationFile={PROJECT_ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
                "-cp", classpath, main_class, *args]

    def prepare(self) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by `clickrec up` from the settings; edits are overwritten.\n"
            + "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        )
        if (self.kafka_dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            self._java_argv("kafka.tools.StorageTool", "format", "--cluster-id", random_cluster_id(),
                            "--config", str(self.config_file)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"Formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")

    def process(self) -> ManagedProcess:
        host, port = self._listener
        return ManagedProcess(
            name=self.name, argv=lambda: self._java_argv("kafka.Kafka", str(self.config_file)),
            state_dir=self.settings.state_dir, ready=lambda: self.health().ok,
            ports=[(host, port), (host, self.settings.kafka_controller_port)],
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
