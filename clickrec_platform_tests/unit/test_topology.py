"""The cluster topology's settings, and how Spark and DuckDB are pointed at an object-store lake."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from clickrec_platform.lake import duck
from clickrec_platform.lake.spark import object_store_conf
from clickrec_platform.settings import Settings


def test_the_cluster_topology_fills_only_what_is_left_unset(tmp_path):
    local = Settings(home=tmp_path)
    assert (local.kafka_bootstrap_servers, local.spark_master, local.lake_uri) == (
        "127.0.0.1:9092", "local[*]", str(tmp_path / "lake"))
    cluster = Settings(home=tmp_path, topology="cluster")
    assert cluster.kafka_bootstrap_servers == "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194"
    assert (cluster.spark_master, cluster.lake_uri, cluster.s3_endpoint) == (
        "spark://127.0.0.1:7077", "s3a://clickrec-lake/lake", "http://127.0.0.1:9000")
    assert cluster.kafka_replication_factor == 3 and cluster.s3_allow_http and cluster.s3_secret_key is None
    mine = Settings(home=tmp_path, topology="cluster", spark_master="spark://spark.example:7077",
                    lake_root="s3a://shop/lake", kafka_replication_factor=2)
    assert (mine.spark_master, mine.lake_uri, mine.kafka_replication_factor) == (
        "spark://spark.example:7077", "s3a://shop/lake", 2)
    assert mine.kafka_bootstrap_servers == cluster.kafka_bootstrap_servers  # still filled: it was left unset


def test_the_local_object_store_secret_is_generated_once_and_read_back(tmp_path):
    generated = Settings(home=tmp_path, topology="cluster").ensure_local_s3_secret()
    assert len(generated) >= 24 and (tmp_path / "state" / "s3proxy.secret").stat().st_mode & 0o777 == 0o600
    read_back = Settings(home=tmp_path, topology="cluster").s3_secret_key
    assert read_back is not None and read_back.get_secret_value() == generated
    given = Settings(home=tmp_path, topology="cluster", s3_secret_key="given").s3_secret_key
    assert given is not None and given.get_secret_value() == "given"


def test_spark_gets_s3a_settings_only_for_an_object_store_lake(tmp_path):
    assert object_store_conf(Settings(home=tmp_path)) == {}
    conf = object_store_conf(Settings(home=tmp_path, topology="cluster", s3_secret_key=SecretStr("s")))
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "clickrec" and conf["spark.hadoop.fs.s3a.secret.key"] == "s"
    assert conf["spark.sql.streaming.checkpointFileManagerClass"].endswith("FileSystemBasedCheckpointFileManager")
    chain = object_store_conf(Settings(home=tmp_path, lake_root="s3a://b/l"))  # no keys: AWS's credential chain
    assert "spark.hadoop.fs.s3a.access.key" not in chain and "spark.hadoop.fs.s3a.endpoint" not in chain


def test_duckdb_scans_quote_the_path_and_speak_s3_for_s3a():
    assert duck.scan("/lake/a'b") == "delta_scan('/lake/a''b')"
    assert duck.scan("s3a://bucket/lake/silver/events") == "delta_scan('s3://bucket/lake/silver/events')"


def test_duckdb_s3_secret_from_the_settings(tmp_path):
    secret = duck._s3_secret(Settings(home=tmp_path, topology="cluster", s3_secret_key="p'w"))
    assert "TYPE s3" in secret and "ENDPOINT '127.0.0.1:9000'" in secret and "URL_STYLE 'path'" in secret
    assert "USE_SSL false" in secret and "KEY_ID 'clickrec'" in secret and "SECRET 'p''w'" in secret
    chain = duck._s3_secret(Settings(home=tmp_path, lake_root="s3a://b/l", s3_path_style=False))
    assert "PROVIDER credential_chain" in chain and "URL_STYLE 'vhost'" in chain and "USE_SSL true" in chain


def test_dagster_resources_carry_the_topology_they_were_configured_for(tmp_path, monkeypatch):
    from clickrec_platform.defs.resources import platform_resources
    from clickrec_platform.settings import get_settings

    monkeypatch.setenv("CLICKREC_HOME", str(tmp_path))
    monkeypatch.delenv("CLICKREC_TOPOLOGY", raising=False)
    get_settings.cache_clear()
    try:
        # Read by their fields: typed as any ConfigurableResource
        cluster: dict[str, Any] = platform_resources(Settings(home=tmp_path, topology="cluster", postgres_port=6543))
        local: dict[str, Any] = platform_resources(get_settings())
        # Configuration as fields (what Dagster's UI shows, what run config may override) …
        assert (cluster["lake"].root, cluster["lake"].s3_endpoint) == ("s3a://clickrec-lake/lake", "http://127.0.0.1:9000")
        assert (cluster["spark"].master, cluster["spark"].lake.root) == ("spark://127.0.0.1:7077", cluster["lake"].root)
        assert (local["spark"].master, local["lake"].root) == ("local[*]", str(tmp_path / "lake"))
        # … and the settings each hands the assets are the process's with the resource's fields in place,
        # whatever topology the process itself was started with.
        lake = cluster["lake"].settings()
        assert (lake.lake_uri, lake.s3_allow_http, lake.s3_access_key) == ("s3a://clickrec-lake/lake", True, "clickrec")
        assert cluster["postgres"].settings().postgres_port == 6543
        assert local["postgres"].settings().postgres_port == get_settings().postgres_port != 6543
        assert local["lake"].settings().lake_uri == str(tmp_path / "lake")
        # MLflow's server and names laid over the lake's settings, as the training assets read them.
        elsewhere = Settings(home=tmp_path, mlflow_tracking_uri="http://mlflow.example:5000",
                             registered_model_name="other", mlflow_experiment="exp")
        mlflow: Any = platform_resources(elsewhere)["mlflow"]
        assert (mlflow.tracking_uri, mlflow.registered_model, mlflow.experiment) == (
            "http://mlflow.example:5000", "other", "exp")
        merged = mlflow.over(cluster["lake"].settings())
        assert (merged.tracking_uri, merged.registered_model_name, merged.lake_uri) == (
            "http://mlflow.example:5000", "other", "s3a://clickrec-lake/lake")
        assert local["mlflow"].tracking_uri == get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
