"""Stack services without any server running: what `down` and `status` need, and clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

import pytest
import yaml

from clickrec_platform.settings import Settings
from clickrec_platform.stack import services
from clickrec_platform.stack.dagster_server import write_workspace
from clickrec_platform.stack.kafka import KafkaNodeService, KafkaService
from clickrec_platform.stack.postgres import PostgresService
from clickrec_platform.stack.process import ServiceError


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    monkeypatch.delenv("CLICKREC_POSTGRES_PASSWORD", raising=False)
    return Settings(home=tmp_path)


def test_stopping_and_finding_services_needs_no_secret(fresh):
    assert fresh.postgres_password is None or fresh.local_password_file.exists()
    for service in services(fresh, on_request=True):
        assert service.process().pid() is None
        assert service.stop() is False


def test_a_cluster_whose_password_was_lost_is_never_started_blind(fresh):
    postgres = PostgresService(fresh)
    cluster = postgres.data_dir
    created = not cluster.exists()
    try:
        cluster.mkdir(parents=True, exist_ok=True)
        (cluster / "PG_VERSION").write_text("15\n")
        fresh.local_password_file.unlink(missing_ok=True)  # the home's state was wiped
        again = PostgresService(Settings(home=fresh.home))
        if again.data_dir == cluster:  # the cluster lives in the home: refuse, saying why
            with pytest.raises(ServiceError, match="password is unknown"):
                again.prepare()
        else:  # root, cluster outside the home: keyed by the password, so a new one is made
            assert not (again.data_dir / "PG_VERSION").exists()
    finally:
        if created and not str(cluster).startswith(str(fresh.home)):
            shutil.rmtree(cluster, ignore_errors=True)


def test_unknown_service_names_are_refused(fresh):
    with pytest.raises(ValueError, match="unknown service"):
        services(fresh, ["kafka", "zookeeper"])


def test_live_traffic_starts_only_on_request_and_down_and_status_cover_it(fresh):
    names = [s.name for s in services(fresh)]
    assert "stream" not in names and "live-producer" not in names  # a plain `up` (and the tests) start no Spark
    everything = services(fresh, on_request=True)
    assert [s.name for s in everything] == [*names, "stream", "speed-layer", "live-producer"]  # `down`: first
    assert [s.name for s in services(fresh, ["live-producer", "stream"])] == ["stream", "live-producer"]
    assert all(s.managed for s in everything if s.on_request)  # whatever CLICKREC_MANAGED_SERVICES says
    assert not services(fresh.model_copy(update={"managed_services": []}), ["stream"])[0].health().ok


def test_the_live_producer_runs_the_demo_world_live_with_its_metrics(fresh):
    settings = fresh.model_copy(update={"demo_events": 20_000, "demo_live_rate": 7.5, "producer_metrics_port": 9999})
    producer, stream = services(settings, ["live-producer", "stream"])[::-1]
    argv = producer.process().arguments()
    assert argv[1:] == ["produce", "--source", "synthetic", "--mode", "live", "--rate", "7.5", "--events", "20000",
                        "--days", "30", "--no-progress", "--metrics", "--metrics-port", "9999"]
    assert producer.url == "http://127.0.0.1:9999/metrics"
    assert stream.process().arguments()[1:] == ["stream"]


def test_the_speed_layer_serves_its_metrics_on_the_configured_port(fresh):
    speed, = services(fresh.model_copy(update={"speed_metrics_port": 9998}), ["speed-layer"])
    assert speed.process().arguments()[1:] == ["speed", "--metrics-port", "9998"]
    assert speed.url == "http://127.0.0.1:9998/metrics"
    assert speed.managed and speed.on_request
    assert not speed.health().ok  # not running


def test_batch_services_start_at_the_batch_niceness_and_interactive_ones_at_0(fresh):
    settings = fresh.model_copy(update={"batch_nice": 12})
    niceness = {s.name: s.launch_process().nice for s in services(settings, on_request=True)}
    assert niceness == {"postgres": 0, "kafka": 0, "mlflow": 0, "dagster-code-server": 12, "dagster-webserver": 0,
                        "dagster-daemon": 12,
                        "api": 0, "dashboard": 0, "prometheus": 0, "stream": 12, "speed-layer": 0,
                        "live-producer": 0}
    stream, = services(settings, ["stream"])
    assert stream.launch_process().command()[:3] == ["nice", "-n", "12"]
    assert services(settings.model_copy(update={"batch_nice": 0}), ["stream"])[0].launch_process().command()[1:] \
        == ["stream"]
    chosen = settings.model_copy(update={"batch_services": ["live-producer"]})
    assert {s.name for s in services(chosen, on_request=True) if s.launch_process().nice} == {"live-producer"}
    with pytest.raises(ValueError, match="less than or equal to 19"):
        Settings(home=fresh.home, batch_nice=25)


def test_the_cluster_topology_runs_three_kafka_nodes_in_place_of_the_single_broker(fresh):
    local = [s.name for s in services(fresh)]
    cluster_settings = Settings(home=fresh.home, topology="cluster")
    cluster = [s.name for s in services(cluster_settings)]
    assert local[:3] == ["postgres", "kafka", "mlflow"]
    assert cluster == [local[0], "kafka-1", "kafka-2", "kafka-3", "s3proxy", "spark-master", "spark-worker-1",
                       "spark-worker-2", *local[2:]]
    assert [s.name for s in services(cluster_settings, ["spark"])] == ["spark-master", "spark-worker-1", "spark-worker-2"]
    nodes = cast(list[KafkaNodeService], services(cluster_settings, ["kafka"]))  # the family names its members
    assert [n.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"] and all(n.managed for n in nodes)
    assert services(cluster_settings.model_copy(update={"managed_services": ["postgres"]}), ["kafka-2"])[0].managed is False

    voters = "1@127.0.0.1:9292,2@127.0.0.1:9293,3@127.0.0.1:9294"
    for node_id, (node, (broker, controller)) in enumerate(zip(nodes, [(9192, 9292), (9193, 9293), (9194, 9294)],
                                                               strict=True), start=1):
        props = node.server_properties()
        assert props["node.id"] == str(node_id) and props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}"
        assert props["log.dirs"] == str(fresh.state_dir / "kafka-cluster" / f"node-{node_id}" / "data")
        assert props["min.insync.replicas"] == "2" and props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert node.url == f"kafka://127.0.0.1:{broker}"
        assert node.process().pid_file.name == f"kafka-{node_id}.pid" and node.heap == "512m"
    assert len({n.cluster_id() for n in nodes}) == 1  # generated once, shared
    assert (fresh.state_dir / "kafka-cluster" / "cluster.id").read_text().strip() == nodes[2].cluster_id()
    assert cluster_settings.kafka_bootstrap_servers == "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194"
    assert cluster_settings.kafka_replication_factor == 3

    # The local topology's broker is as it was: one voter, internal topics of one replica.
    (single,) = services(fresh, ["kafka"])
    assert isinstance(single, KafkaService)
    assert single.server_properties()["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert single.server_properties()["offsets.topic.replication.factor"] == "1"
    assert "min.insync.replicas" not in single.server_properties()


def test_the_webserver_and_daemon_load_the_code_location_from_the_standing_code_server(fresh):
    """Not a `python_module` entry: with one, the daemon starts a code server process at every workspace refresh."""
    settings = fresh.model_copy(update={"dagster_code_server_port": 45123})
    chosen = {s.name: s for s in services(settings, ["dagster-code-server", "dagster-webserver", "dagster-daemon"])}
    assert list(chosen) == ["dagster-code-server", "dagster-webserver", "dagster-daemon"]  # the server first
    code_server = chosen["dagster-code-server"].launch_process()
    assert code_server.ports == [(settings.bind_host, 45123)]
    argv = code_server.command()
    assert argv[argv.index("-p") + 1] == "45123" and argv[argv.index("-m") + 1] == "clickrec_platform.definitions"
    written = write_workspace(settings)  # what their `prepare` writes, beside the instance's dagster.yaml
    for name in ("dagster-webserver", "dagster-daemon"):
        argv = chosen[name].launch_process().command()
        assert Path(argv[argv.index("-w") + 1]) == written
        workspace = yaml.safe_load(written.read_text())
        assert workspace == {"load_from": [{"grpc_server": {"host": settings.bind_host, "port": 45123,
                                                            "location_name": "clickrec_platform"}}]}
