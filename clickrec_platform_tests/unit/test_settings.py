from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from clickrec_platform.settings import Settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SPARK_MASTER", "MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"CLICKREC_{name}", raising=False)
    monkeypatch.delenv("CLICKREC_POSTGRES_PASSWORD", raising=False)
    return monkeypatch


def test_defaults_point_at_the_local_stack_on_loopback(clean_env, tmp_path):
    s = Settings(home=tmp_path)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.tracking_uri == "http://127.0.0.1:5000"
    assert s.dagster_url == "http://127.0.0.1:3000"
    assert s.spark_master == "local[*]"
    assert s.lake_uri == str(tmp_path / "lake")
    assert s.dagster_home_dir == tmp_path / "dagster_home"


@pytest.mark.parametrize(
    ("variable", "attribute", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers", "broker-1:9092,broker-2:9092"),
        ("CLICKREC_KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers", "kafka.internal:9094"),
        ("SPARK_MASTER", "spark_master", "spark://spark-master:7077"),
        ("MLFLOW_TRACKING_URI", "tracking_uri", "https://mlflow.example.org"),
        ("CLICKREC_LAKE_ROOT", "lake_uri", "s3a://lake/clickrec"),
        ("CLICKREC_POSTGRES_PORT", "postgres_port", 6543),
    ],
)
def test_each_endpoint_can_point_elsewhere_by_environment(clean_env, tmp_path, variable, attribute, value):
    clean_env.setenv(variable, str(value))
    assert getattr(Settings(home=tmp_path), attribute) == value


def test_managed_services_parse_from_json(clean_env, tmp_path):
    clean_env.setenv("CLICKREC_MANAGED_SERVICES", '["postgres", "mlflow"]')
    assert Settings(home=tmp_path).managed_services == ["postgres", "mlflow"]


def test_dsn_quotes_special_characters_in_credentials(clean_env, tmp_path):
    clean_env.setenv("CLICKREC_POSTGRES_PASSWORD", "p@ss:/w?rd#1")
    dsn = Settings(home=tmp_path).postgres_dsn("mlflow", driver="postgresql+psycopg2")
    parts = urlsplit(dsn)
    assert parts.scheme == "postgresql+psycopg2"
    assert parts.hostname == "127.0.0.1" and parts.port == 5433 and parts.path == "/mlflow"
    assert parts.password == "p%40ss%3A%2Fw%3Frd%231"


def test_missing_password_is_a_clear_error(clean_env, tmp_path):
    with pytest.raises(RuntimeError, match="CLICKREC_POSTGRES_PASSWORD"):
        Settings(home=tmp_path).postgres_dsn()


def test_local_password_is_generated_once_and_read_back(clean_env, tmp_path):
    first = Settings(home=tmp_path).ensure_local_password()
    assert len(first) >= 24
    assert (tmp_path / "state" / "postgres.password").stat().st_mode & 0o077 == 0
    again = Settings(home=tmp_path)
    assert again.postgres_password is not None and again.postgres_password.get_secret_value() == first
    assert again.ensure_local_password() == first


def test_explicit_password_wins_over_the_generated_one(clean_env, tmp_path):
    Settings(home=tmp_path).ensure_local_password()
    clean_env.setenv("CLICKREC_POSTGRES_PASSWORD", "from-env")
    password = Settings(home=tmp_path).postgres_password
    assert password is not None and password.get_secret_value() == "from-env"


def test_as_environment_round_trips_through_a_child_processs_settings(clean_env, tmp_path):
    original = Settings(home=tmp_path).model_copy(update={"kafka_topic": "t-1", "lake_root": "s3a://b/lake",
                                                          "stream_app_id": "app-7", "gold_schema": "g_7"})
    names = ("kafka_topic", "lake_root", "stream_app_id", "gold_schema")
    for variable, value in original.as_environment(*names).items():
        clean_env.setenv(variable, value)
    child = Settings(home=tmp_path)
    assert [getattr(child, n) for n in names] == ["t-1", "s3a://b/lake", "app-7", "g_7"]
