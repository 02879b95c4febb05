"""The production deployment files under infra/ agree with the code.

No Docker engine runs on the development machines, so infra/docker-compose.yml, the Dockerfile, the
Prometheus rules and the Grafana dashboard are never started here. These tests check what can be
checked without running them: the files parse; every setting a container is given is one that
clickrec_platform/settings.py reads (and parses to what the service expects); ports agree with the
settings' defaults; images are pinned; secrets come from infra/.env; Prometheus targets are compose
services; every API or producer metric charted or alerted on is one that the API or the producer exports.

Over 400 lines: every deployment file is checked here, so that one module answers "do the files agree".
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from clickrec_platform.settings import PROJECT_ROOT, Settings

INFRA = PROJECT_ROOT / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "Dockerfile"
ENV_EXAMPLE = INFRA / ".env.example"
DAGSTER_DOCKER_INSTANCE = INFRA / "dagster" / "dagster.docker.yaml"
PROMETHEUS_FILE = INFRA / "prometheus" / "prometheus.yml"
ALERTS_FILE = INFRA / "prometheus" / "alerts.yml"
GRAFANA_DATASOURCE = INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_PROVIDER = INFRA / "grafana" / "provisioning" / "dashboards" / "clickrec.yml"
GRAFANA_DASHBOARD = INFRA / "grafana" / "dashboards" / "clickrec.json"
API_METRICS_MODULE = PROJECT_ROOT / "clickrec_platform" / "serving" / "api" / "metrics.py"

PLATFORM_IMAGE = "clickrec-platform"
# The services of the platform image that are configured by settings alone. mlflow is the MLflow
# server's own CLI (configured by MLflow's variables); `init` is a one-shot helper.
SETTINGS_CONFIGURED = {"api", "stream", "speed-layer", "dagster-webserver", "dagster-daemon", "dashboard", "producer",
                       "init"}
MLFLOW_OWN_VARIABLES = {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_SERVER_ALLOWED_HOSTS"}
EXPECTED_SERVICES = {"kafka", "postgres", "spark-master", "spark-worker", "dagster-webserver", "dagster-daemon",
                     "mlflow", "api", "dashboard", "stream", "speed-layer", "prometheus", "grafana"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
CLICKREC_VARIABLE = re.compile(r"\bCLICKREC_[A-Z0-9_]+\b")
PROMQL_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "WEBHOOK")


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def settings_variables() -> dict[str, str]:
    """Every environment variable the settings read -> the field it sets (prefix, and the aliases)."""
    variables = {}
    for field, info in Settings.model_fields.items():
        variables[f"CLICKREC_{field.upper()}"] = field
        alias = info.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            variables[str(choice)] = field
    return variables


def environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def resolve(value: str) -> str:
    """Compose interpolation with infra/.env absent: defaults, and a placeholder for required values."""
    def substitute(match: re.Match) -> str:
        op, arg = match.group("op"), match.group("arg")
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"placeholder-{match.group('name').lower()}"
        return ""
    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def container_ports(service: dict) -> set[int]:
    """The container side of each published port ("addr:host:container" or "host:container")."""
    return {int(resolve(str(spec)).split(":")[-1].split("/")[0]) for spec in service.get("ports", [])}


def host_ports(service: dict) -> set[int]:
    return {int(resolve(str(spec)).split(":")[-2]) for spec in service.get("ports", [])}


def command_words(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word in names:
            return words[i + 1]
    return None


def is_platform(service: dict) -> bool:
    return str(service.get("image", "")).startswith(f"{PLATFORM_IMAGE}:")


def api_exported_names() -> set[str]:
    """The series names the API exposes, from the metric definitions in its metrics module."""
    suffixes = {"Counter": ("_total",), "Histogram": ("_bucket", "_sum", "_count"), "Gauge": ("",),
                "Summary": ("_sum", "_count"), "Info": ("_info",)}
    names: set[str] = set()
    for node in ast.walk(ast.parse(API_METRICS_MODULE.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in suffixes):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            base = first.value.removesuffix("_total") if node.func.id == "Counter" else first.value
            names.update(base + suffix for suffix in suffixes[node.func.id])
    return names


def producer_exported_names() -> set[str]:
    """The series names the producer exposes, from a real exposition of its collector (a failure recorded, so
    that the labelled error counter has a series too)."""
    from collections import Counter
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from clickrec_platform.producer.kafka_sink import DeliveryTally
    from clickrec_platform.producer.metrics import ProducerCollector
    from clickrec_platform.producer.pacing import RatePacer

    # stands in for a KafkaEventSink
    sink: Any = SimpleNamespace(deliveries=DeliveryTally(), failed_by_reason=Counter({"MSG_TIMED_OUT": 1}), in_flight=0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProducerCollector(sink, RatePacer(10), source_rejected=lambda: 1))
    return {line.split("{")[0].split(" ")[0] for line in generate_latest(registry).decode().splitlines()
            if line and not line.startswith("#")}


def stream_exported_names() -> set[str]:
    """The series names the stream job exposes, from its registry after one recorded batch."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from spark_jobs.metrics import StreamMetrics

    metrics = StreamMetrics()
    metrics.record_ingest(0, SimpleNamespace(records=3, quarantined=1, reasons={"malformed_json": 1}), 1, 0.1)
    metrics.batch_seconds.labels("ingest").observe(1.0)
    for gauge in (metrics.input_rate, metrics.processed_rate, metrics.last_batch, metrics.up):
        gauge.labels("ingest").set(1)
    metrics.consumer_lag.labels("ingest", "clickstream", "0").set(0)
    metrics.failures.labels("ingest").inc(0)
    metrics.input_rows.labels("ingest").inc(0)
    metrics.batches.labels("ingest").inc(0)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def speed_exported_names() -> set[str]:
    """The series names the speed layer exposes, from its registry after one recorded batch."""
    from collections import Counter
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from clickrec_platform.speed.metrics import SpeedMetrics

    metrics = SpeedMetrics()
    batch: Any = SimpleNamespace(valid=2, rejected=Counter(malformed_json=1), live=SimpleNamespace(inserted=2),
                                 windows_refreshed=1, seconds=0.01)  # what record_batch reads of a BatchApplied
    metrics.record_batch(batch)
    metrics.record_lag({0: 0})
    metrics.record_problem("postgres")
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_speed_layer_exports_what_its_module_documents():
    from clickrec_platform.speed import metrics

    documented = set(re.findall(r"``(clickrec_speed_\w+)``", metrics.__doc__))
    exported = {re.sub(r"_(bucket|count|sum)$", "", name) for name in speed_exported_names()
                if not name.endswith("_created")}
    assert documented == exported


def exported_names() -> set[str]:
    """Every series the platform's own services export."""
    return api_exported_names() | producer_exported_names() | stream_exported_names() | speed_exported_names()


def promql_metric_names(expr: str) -> set[str]:
    """Names in a PromQL expression that look like ours (string literals, e.g. label values, removed)."""
    return {name for name in PROMQL_NAME.findall(PROMQL_STRING.sub('""', expr)) if name.startswith("clickrec_")}


def dashboard_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def uv_lock_version(package: str) -> str:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


# ------------------------------------------------------------------------------------------ compose
def test_compose_defines_the_platform(services):
    assert set(services) >= EXPECTED_SERVICES, EXPECTED_SERVICES - set(services)
    for name in ("api", "stream", "dagster-webserver", "dagster-daemon", "mlflow", "dashboard"):
        assert is_platform(services[name]), f"{name} should run from the project image"


def test_every_image_is_the_project_image_or_a_pinned_tag(services):
    for name, service in services.items():
        image = resolve(str(service.get("image", "")))
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"{name}: {image!r} has no tag"
        assert tag != "latest", f"{name}: {image!r} is not pinned"
        if repository == PLATFORM_IMAGE:
            build = service.get("build") or {}
            assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_images_match_the_versions_the_code_is_locked_to(services):
    spark_tag = services["spark-master"]["image"].split(":")[1]
    assert spark_tag.split("-")[0] == uv_lock_version("pyspark"), "Spark image vs pyspark in uv.lock"
    assert services["spark-worker"]["image"] == services["spark-master"]["image"]
    kafka_pom = (INFRA / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", kafka_pom)
    assert found is not None
    kafka_version = found.group(1)
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    assert services["postgres"]["image"].startswith("postgres:15")


def test_every_clickrec_variable_is_a_settings_field():
    """CLICKREC_FOO_BAR anywhere in the deployment files must be the field foo_bar of Settings."""
    fields = set(Settings.model_fields)
    for path in (COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, DAGSTER_DOCKER_INSTANCE, INFRA / "postgres" / "init-databases.sh"):
        for variable in set(CLICKREC_VARIABLE.findall(path.read_text())):
            assert variable.removeprefix("CLICKREC_").lower() in fields, f"{path.name}: {variable} is no setting"


def test_platform_containers_are_configured_only_through_settings(services):
    known = settings_variables()
    for name, service in services.items():
        if not is_platform(service):
            continue
        allowed = MLFLOW_OWN_VARIABLES if name == "mlflow" else set(known)
        unknown = set(environment(service)) - allowed
        assert not unknown, f"{name}: {sorted(unknown)} are not read by clickrec_platform/settings.py"
        assert name in SETTINGS_CONFIGURED | {"mlflow"}, f"{name}: new platform service, classify it here"


@pytest.mark.parametrize("name", sorted(SETTINGS_CONFIGURED - {"init"}))
def test_each_container_environment_parses_into_the_settings_it_needs(services, monkeypatch, tmp_path, name):
    for variable in settings_variables():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = environment(services[name])
    for key, value in env.items():
        if value is None:
            continue  # passed through from infra/.env only when set there
        resolved = resolve(value)
        assert resolved != "", f"{name}: {key} would be an empty string, which the settings do not read as unset"
        monkeypatch.setenv(key, resolved)
    s = Settings(_env_file=None)
    assert s.managed_services == []
    assert s.postgres_host == "postgres" and s.postgres_port == 5432
    assert s.postgres_password is not None
    assert s.reader_password is not None, "every container must share the read-only role's password"
    assert s.kafka_bootstrap_servers == "kafka:9092"
    assert s.tracking_uri == "http://mlflow:5000"
    assert s.spark_master == "spark://spark-master:7077"
    assert s.lake_uri == "/srv/lake"
    assert str(s.dagster_home_dir) == "/opt/dagster/home"
    if name in ("stream", "dagster-daemon"):
        # Spark drivers: spark.driver.host is the bind host, which executors on spark-worker must reach.
        assert s.bind_host == name
    else:
        assert s.bind_host == "0.0.0.0"


def test_every_clickrec_command_a_container_runs_exists(services):
    """A container started with `clickrec X` would exit at once if the CLI had no command X."""
    import typer.core
    import typer.main

    from clickrec_platform.cli import app

    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    commands = set(cli.commands)
    for name, service in services.items():
        words = command_words(service)
        if words[:1] == ["clickrec"]:
            assert words[1] in commands, f"{name}: `clickrec {words[1]}` is no command of the CLI"


def test_ports_match_the_settings_defaults(services, compose):
    defaults = {field: info.default for field, info in Settings.model_fields.items()}
    platform_env = {k: resolve(v) for k, v in environment(services["api"]).items() if v is not None}

    assert defaults["api_port"] in container_ports(services["api"])
    assert int(platform_env.get("CLICKREC_API_PORT", defaults["api_port"])) == defaults["api_port"]

    webserver = command_words(services["dagster-webserver"])
    webserver_port = option(webserver, "-p", "--port")
    assert webserver_port is not None and int(webserver_port) == defaults["dagster_port"]
    assert defaults["dagster_port"] in container_ports(services["dagster-webserver"])

    mlflow = command_words(services["mlflow"])
    mlflow_port = option(mlflow, "--port", "-p")
    assert mlflow_port is not None and int(mlflow_port) == defaults["mlflow_port"]
    assert defaults["mlflow_port"] in container_ports(services["mlflow"])
    assert platform_env["MLFLOW_TRACKING_URI"].endswith(f":{defaults['mlflow_port']}")

    assert defaults["dashboard_port"] in container_ports(services["dashboard"])

    # PostgreSQL listens on 5432 inside compose; published on the local stack's port.
    assert int(platform_env["CLICKREC_POSTGRES_PORT"]) in container_ports(services["postgres"])
    assert defaults["postgres_port"] in host_ports(services["postgres"])
    assert "/mlflow" in resolve(environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"] or "")

    # Clients use a listener the broker advertises, on the compose network.
    kafka = environment(services["kafka"])
    advertised = (kafka["KAFKA_ADVERTISED_LISTENERS"] or "").split(",")
    assert f"PLAINTEXT://{platform_env['KAFKA_BOOTSTRAP_SERVERS']}" in advertised
    assert f"1@kafka:{defaults['kafka_controller_port']}" == kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert not any(listener.startswith("CONTROLLER:") for listener in advertised)

    # No two services publish the same host port.
    published = [port for service in services.values() for port in host_ports(service)]
    assert len(published) == len(set(published)), sorted(published)


def test_secrets_come_from_the_env_file(services):
    for name, service in services.items():
        for key, value in environment(service).items():
            secret_key = any(word in key for word in SECRET_WORDS)
            if secret_key and value is not None:
                assert "${" in value, f"{name}: {key} is written in the compose file"
            if key.endswith("_URI") and value and "@" in value:  # credentials inside a URL
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                assert "${" in userinfo.split(":", 1)[1], f"{name}: {key} has a literal password"
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if not line.startswith("#") and any(word in key for word in SECRET_WORDS):
            assert value.startswith("change-me"), f".env.example: {key} should be a placeholder"


def test_dependencies_wait_for_health_or_completion(services):
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert spec.get("condition") in conditions, f"{name} -> {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert "restart" not in services[target], f"{target} is one-shot: it must not restart"
    for name in EXPECTED_SERVICES - {"stream"}:  # the stream job has nothing to probe yet
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_mounted_files_and_volumes_exist(services, compose):
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for spec in service.get("volumes", []):
            source = resolve(str(spec)).split(":")[0]
            if source.startswith((".", "/")):
                if source.startswith("."):
                    assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} missing"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"


def test_the_dockerfile_builds_the_locked_environment():
    text = DOCKERFILE.read_text()
    found = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)", text)
    assert found is not None
    python = found.group(1)
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={python}" in requires
    assert "uv sync --frozen" in text
    assert re.search(r"clickrec\s+setup", text), "jars are resolved by `clickrec setup` at build time"
    for copied in re.findall(r"^COPY (?!--)(\S+)", text, flags=re.MULTILINE):
        assert (PROJECT_ROOT / copied).exists(), f"Dockerfile copies {copied}, which does not exist"
    assert re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE) == ["${PYTHON_IMAGE}"] * 2
    assert re.search(r"ARG PYTHON_IMAGE=python:[\d.]+-slim-bookworm\n", text), "pinned, with openjdk-17"
    assert 'USER 185' in text, "the Spark images' uid, so that executors and drivers can both write the lake"


# ------------------------------------------------------------------------------------------ dagster
def test_the_dagster_instance_for_containers_is_valid_and_matches_the_local_one(services, monkeypatch):
    from dagster._config import process_config
    from dagster._config.field import resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config

    env = {k: resolve(v) for k, v in environment(services["dagster-daemon"]).items() if v is not None}
    used = set(re.findall(r"env:\s*(\S+)", DAGSTER_DOCKER_INSTANCE.read_text()))
    assert used <= set(env), f"dagster.docker.yaml reads {used - set(env)}, which the containers do not set"
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    config, _ = dagster_instance_config(str(DAGSTER_DOCKER_INSTANCE.parent), DAGSTER_DOCKER_INSTANCE.name)
    storage = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()),
                             config["storage"]["postgres"])
    assert storage.success and storage.value is not None, storage.errors
    url = pg_url_from_config(storage.value)
    assert url.startswith("postgresql+psycopg2://") and "@postgres:5432/dagster" in url

    local = yaml.safe_load((INFRA / "dagster" / "dagster.yaml").read_text())
    docker = yaml.safe_load(DAGSTER_DOCKER_INSTANCE.read_text())
    assert {k: v for k, v in docker.items() if k != "storage"} == local

    for name in ("dagster-webserver", "dagster-daemon"):
        home = resolve(environment(services[name])["DAGSTER_HOME"] or "")
        mounts = [str(v) for v in services[name]["volumes"]]
        assert f"./dagster/{DAGSTER_DOCKER_INSTANCE.name}:{home}/dagster.yaml:ro" in mounts


# ------------------------------------------------------------------------------------------ prometheus
def test_prometheus_scrapes_compose_services(services):
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in jobs.values():
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host == "localhost" or host in services, f"{job['job_name']}: {host} is no compose service"
    api_target = jobs["clickrec-api"]["static_configs"][0]["targets"]
    assert api_target == [f"api:{Settings.model_fields['api_port'].default}"]
    assert jobs["clickrec-api"].get("metrics_path", "/metrics") == "/metrics"
    producer_target = jobs["clickrec-producer"]["static_configs"][0]["targets"]
    assert producer_target == [f"producer:{Settings.model_fields['producer_metrics_port'].default}"]
    assert jobs["clickrec-producer"].get("metrics_path", "/metrics") == "/metrics"
    assert "--no-metrics" not in command_words(services["producer"])

    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["prometheus"]["volumes"]}
    config_path = next(w.split("=", 1)[1] for w in command_words(services["prometheus"])
                       if w.startswith("--config.file="))
    assert (COMPOSE_FILE.parent / mounts[config_path]).resolve() == PROMETHEUS_FILE
    for rule_file in config["rule_files"]:
        assert (COMPOSE_FILE.parent / mounts[rule_file]).resolve() == ALERTS_FILE


def test_alert_rules_use_real_api_and_producer_metrics():
    exported = exported_names()
    jobs = {job["job_name"] for job in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]}
    rules = [rule for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 3
    for rule in rules:
        assert rule["alert"] and rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        names = promql_metric_names(rule["expr"])
        assert names <= exported, f"{rule['alert']}: {names - exported} are not exported by the platform"
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, f"{rule['alert']}: no scrape job {job}"
    assert any("clickrec_api_request_duration_seconds_bucket" in rule["expr"] for rule in rules)
    assert any("clickrec_producer_events_failed_total" in rule["expr"] for rule in rules)


# ------------------------------------------------------------------------------------------ grafana
def test_grafana_dashboard_charts_real_api_and_producer_metrics():
    exported = api_exported_names()
    producer = producer_exported_names()
    stream = stream_exported_names()
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    datasource_uid = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"][0]["uid"]
    panels = list(dashboard_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    charted = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            names = promql_metric_names(expr)
            api_names = {n for n in names if n.startswith("clickrec_api_")}
            producer_names = {n for n in names if n.startswith("clickrec_producer_")}
            assert api_names <= exported, f"{panel['title']}: {api_names - exported} are not exported by the API"
            assert producer_names <= producer, f"{panel['title']}: {producer_names - producer} not exported"
            stream_names = names - api_names - producer_names
            assert stream_names <= stream, f"{panel['title']}: {stream_names - stream} not exported by the stream job"
            charted |= api_names | producer_names
    for variable in dashboard["templating"]["list"]:
        assert promql_metric_names(variable["definition"]) <= exported
    assert exported - {"clickrec_api_request_duration_seconds_count"} <= charted | {
        "clickrec_api_request_duration_seconds_sum"}, "every API metric has a panel"
    assert producer - {"clickrec_producer_delivery_latency_seconds_count", "clickrec_producer_delivery_latency_seconds_sum",
                       "clickrec_producer_events_produced_total"} <= charted, "every producer metric has a panel"
    quantiles = {q for panel in panels for t in panel.get("targets", [])
                 for q in re.findall(r"histogram_quantile\((0\.\d+),\s*sum by \([^)]*\)\s*\(rate\("
                                     r"clickrec_api_request_duration_seconds_bucket", t["expr"])}
    assert {"0.5", "0.95", "0.99"} <= quantiles


def test_grafana_provisioning_points_at_the_mounted_dashboards(services):
    provider = yaml.safe_load(GRAFANA_PROVIDER.read_text())["providers"][0]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["grafana"]["volumes"]}
    assert (COMPOSE_FILE.parent / mounts[provider["options"]["path"]]).resolve() == GRAFANA_DASHBOARD.parent
    assert (COMPOSE_FILE.parent / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA_PROVIDER.parent.parent
    url = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"][0]["url"]
    assert url == f"http://prometheus:{next(iter(container_ports(services['prometheus'])))}"


def test_the_producer_exports_what_its_module_documents():
    from clickrec_platform.producer import metrics

    documented = set(re.findall(r"``(clickrec_producer_\w+)``", metrics.__doc__))
    histogram = "clickrec_producer_delivery_latency_seconds"
    exposed = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
               if name.startswith(histogram) else name for name in producer_exported_names()}
    assert exposed == documented


def test_metric_names_read_from_the_module_are_what_the_api_exports():
    """The parse above against a real exposition: a metric renamed or added there changes both."""
    from prometheus_client import generate_latest

    from clickrec_platform.serving.api.metrics import ApiMetrics

    metrics = ApiMetrics()
    metrics.observe("/recommendations/{user_id}", "GET", 200, 0.01)
    metrics.recommendation_source.labels("model").inc()
    # The app's own registry: the names of multiprocess mode, plus *_created (not exported there).
    exposed = {line.split("{")[0].split(" ")[0] for line in generate_latest(metrics.registry).decode().splitlines()
               if line and not line.startswith("#")}
    assert {name for name in exposed if not name.endswith("_created")} == api_exported_names()
