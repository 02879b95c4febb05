"""The one settings object: every endpoint, port, path and secret the platform uses.

Values come from environment variables (``CLICKREC_<FIELD>``, plus the ecosystem's own names where
one exists: ``KAFKA_BOOTSTRAP_SERVERS``, ``SPARK_MASTER``, ``MLFLOW_TRACKING_URI``, ``DAGSTER_HOME``)
and an optional ``.env`` file. Defaults point at the local stack that ``clickrec up`` starts; set a
variable to point the same code at an existing Kafka cluster, managed Postgres, a remote MLflow or a
Spark cluster.

Over 400 lines on purpose: one settings object for the whole platform, each field documented where it
is declared (and checked against the README by a test).
"""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


def _project_root() -> Path:
    """The checkout when installed editable (the normal case); the working directory otherwise."""
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()


def _env(name: str) -> AliasChoices:
    """Accept ``CLICKREC_<NAME>`` and, where the wider ecosystem has one, its well-known name."""
    return AliasChoices(f"CLICKREC_{name}", name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLICKREC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # Where runtime state lives: pid and log files, Kafka and Postgres data, the lake, jars.
    home: Path = Field(default=PROJECT_ROOT / "data")
    bind_host: str = "127.0.0.1"
    # The shape of the local stack: `local` (one Kafka broker, Spark in the driver, the lake on this
    # file system) or `cluster` (a 3-node Kafka KRaft cluster, a Spark standalone master with workers,
    # the lake in an S3 object store served by S3Proxy). A cluster topology fills the Kafka, Spark and
    # lake settings you leave unset with its local services' (see `_apply_topology`); set them to
    # point the same code at real clusters instead.
    topology: Literal["local", "cluster"] = "local"

    # Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_controller_port: int = 9093
    kafka_topic: str = "clickstream"
    kafka_topic_partitions: int = 4
    kafka_replication_factor: int = 1
    kafka_heap: str = "1g"
    # The cluster topology's Kafka: nodes 1..N, each broker and controller in one JVM (KRaft
    # combined mode), node i's broker on kafka_cluster_port + i - 1, its controller 100 above that.
    kafka_cluster_nodes: int = 3
    kafka_cluster_port: int = 9192
    kafka_cluster_heap: str = "512m"
    # Producer tuning (see clickrec_platform/producer/kafka_sink.py); any librdkafka property can be
    # set through CLICKREC_PRODUCER_OVERRIDES='{"linger.ms": 5}'.
    producer_compression: str = "lz4"
    producer_linger_ms: int = 20
    producer_overrides: dict[str, str | int | bool] = {}
    # `clickrec produce` serves Prometheus metrics on bind_host:producer_metrics_port while it runs
    # (clickrec_platform/producer/metrics.py); `--no-metrics` or CLICKREC_PRODUCER_METRICS=false turns it off.
    producer_metrics: bool = True
    producer_metrics_port: int = 9464

    # PostgreSQL: one server, three databases (gold tables, Dagster storage, MLflow backend store)
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5433
    postgres_user: str = "clickrec"
    postgres_password: SecretStr | None = None
    postgres_db: str = "clickrec"
    dagster_db: str = "dagster"
    mlflow_db: str = "mlflow"
    postgres_sslmode: str = "prefer"

    # MLflow
    mlflow_port: int = 5000
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias=_env("MLFLOW_TRACKING_URI"))
    mlflow_experiment: str = "clickrec"
    # Where the tracking server keeps run artifacts and models (it serves them to clients: `--serve-artifacts`):
    # unset, the folder `<home>/mlflow-artifacts`; the cluster topology puts them in the object store beside the
    # lake (s3://<lake_bucket>/mlflow-artifacts, reached with the s3_* settings).
    mlflow_artifacts_destination: str | None = None

    # Dagster
    dagster_home: Path | None = Field(default=None, validation_alias=_env("DAGSTER_HOME"))
    dagster_port: int = 3000
    # The standing code server (`dagster code-server start`) the webserver and daemon connect to: it loads the
    # definitions once and launches the runs. Without it the daemon starts a fresh code server process every
    # minute (its workspace refresh), which imports the whole project each time.
    dagster_code_server_port: int = 4266

    # Spark and the lake
    spark_master: str = Field(default="local[*]", validation_alias=_env("SPARK_MASTER"))
    spark_driver_memory: str = "4g"
    spark_shuffle_partitions: int = 4
    spark_ui_enabled: bool = False
    # The cluster topology's Spark standalone cluster: a master and its workers, run from the pyspark wheel.
    spark_master_port: int = 7077
    spark_master_webui_port: int = 8580
    spark_workers: int = 2
    spark_worker_cores: int = 2  # scheduling slots each worker offers (standalone counts slots, not CPUs)
    spark_worker_memory: str = "3g"
    # On a cluster master: what one application takes (`spark.cores.max`, `spark.executor.memory`),
    # so the continuous stream job and a Dagster run can hold executors at the same time.
    spark_app_cores: int | None = 2
    spark_executor_memory: str = "1g"
    lake_root: str | None = None
    # An object-store lake (lake_root `s3a://bucket/prefix`): how readers outside Spark (delta-rs) reach
    # it. Unset fields fall back to delta-rs's own AWS_* environment variables and credential chain.
    s3_endpoint: str | None = None  # any S3-compatible store, e.g. http://127.0.0.1:9000; None: AWS S3
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    s3_path_style: bool = True  # `<endpoint>/<bucket>/<key>`, which S3Proxy and MinIO need; false: virtual-hosted
    s3_allow_http: bool = False  # a plain-http endpoint (a local store)
    # The cluster topology's object store (S3Proxy on the file system under the state dir) and bucket.
    s3proxy_port: int = 9000
    lake_bucket: str = "clickrec-lake"

    # Streaming job (spark_jobs/clickstream_stream.py)
    stream_trigger_seconds: float = 2.0  # live micro-batches (Kafka → Postgres live tables): the latency path
    stream_ingest_trigger_seconds: float = 20.0  # ingest micro-batches (Kafka → silver, bronze) in continuous mode
    stream_gold_trigger_seconds: float = 60.0  # gold micro-batches (Delta MERGEs) in continuous mode
    stream_max_offsets_per_trigger: int | None = 1_000_000  # per ingest (and live) micro-batch, across partitions
    stream_max_files_per_trigger: int = 256  # silver files per gold micro-batch
    # How long the stream job's Kafka clients wait for an answer (Kafka's default.api.timeout.ms, and an empty
    # poll's bound); Spark's source tries 3 times, then the query fails and the job starts it again from its
    # checkpoint as soon as the brokers answer (spark_jobs/clickstream_stream.py): an outage of any length.
    stream_kafka_timeout_s: float = 60.0
    stream_metrics_port: int | None = 9465  # Prometheus metrics of `clickrec stream`; None: off
    # Delta's idempotent-write id for the job; a new checkpoint location needs a new id.
    stream_app_id: str = "clickrec-stream-v1"
    gold_schema: str = "gold"  # Postgres schema of the gold tables
    trending_top_n: int = 50
    recent_items_per_visitor: int = 50
    # The live query keeps the Postgres windows of the last live_window_minutes of event time
    # current from live_clickstream_events, which keeps rows for live_events_retention_minutes
    # after ingestion (longer where a live window still needs them).
    live_window_minutes: int = 30
    live_events_retention_minutes: int = 60
    # The Spark job's own live query (Kafka → live tables every `stream_trigger_seconds`): off, as the
    # speed layer keeps the live tables; on for a side-by-side benchmark or a deployment without it.
    stream_live_query: bool = False
    # Task threads of a local Spark master (`local[*]`, `local[N]`) in continuous mode: the job only keeps up
    # with live traffic there, and every core it leaves is one the interactive services (API, Postgres) get.
    # None: the master as set. Catch-up runs (`--available-now`) and cluster masters are left alone.
    stream_continuous_cores: int | None = 1
    # If Postgres is unreachable when a micro-batch writes to it (a restart, a failover), the batch waits and
    # tries again for this long before the job fails: its Postgres writes are idempotent per batch id.
    stream_postgres_outage_s: float = 300.0
    # Lake maintenance (the Dagster schedule `optimize_lake_every_30_minutes`): compact a table once it has
    # this many small files (files of a partition that holds more than one); VACUUM daily what no version
    # of the last this-many hours reads.
    optimize_min_small_files: int = 20
    optimize_vacuum_hours: int = 168

    # Speed layer (`clickrec speed`, clickrec_platform/speed/): Kafka → Postgres live tables, offsets in Postgres.
    speed_consumer_group: str = "clickrec-speed-layer"
    speed_max_batch_events: int = 100_000  # records per Postgres transaction at most (catch-up)
    speed_linger_ms: float = 100.0  # how long a batch waits for more records after its first
    speed_window_refresh_seconds: float = 1.0  # live windows recomputed at most this often
    speed_metrics_port: int | None = 9466  # Prometheus metrics of `clickrec speed`; None: off

    # Reference data and features (Dagster assets)
    # RetailRocket's files (events.csv, item_properties_part*.csv, category_tree.csv); when unset the
    # catalogue files come from `reference_dir`, where `clickrec demo` writes the generator's.
    retailrocket_dir: Path | None = Field(default=None, validation_alias=_env("RETAILROCKET_DIR"))
    reference_dir: Path | None = None
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train / validation / test, by time
    interaction_half_life_days: float | None = None  # time decay of training weights; None: off
    silver_freshness_hours: float = 24.0  # a warning when silver.events has not grown for longer
    # Models (Dagster training assets): candidates, the gate, and what the champion writes.
    # `bpr` and `pure_svd` are fitted only when listed: at full size BPR scores half of ALS (ndcg@20 0.055
    # against 0.105, below item_knn_cosine's 0.058) and costs half of the whole training (README, Benchmarks).
    training_models: list[str] = ["most_popular", "random", "item_knn_cosine", "item_knn_bm25", "als",
                                  "recent_item_knn"]
    # Hyper-parameter grids searched on validation before a candidate is fitted for good, e.g.
    # CLICKREC_TRAINING_GRIDS='{"als": {"factors": [32, 64], "alpha": [2, 10, 40]}}'. Small by default.
    training_grids: dict[str, dict[str, list[float | int | str | None]]] = {
        "most_popular": {"window_days": [3.0, 7.0]},
        "item_knn_cosine": {"neighbours": [50, 200]},
    }
    # Fits that do not depend on each other (a candidate's validation fit and its test refit, grid points,
    # session models' validation and test fits) run side by side on this many threads, each model on one:
    # the same models and scores, sooner. 1 leaves a core to a stream job running beside the training.
    training_threads: int = Field(default=2, ge=1)
    registered_model_name: str = "clickrec-recommender"
    gate_metric: str = "ndcg@20"  # validation metric the champion/challenger gate compares
    gate_min_relative_lift: float = 0.0  # 0.05: a challenger's point estimate must also be 5% better
    # The gate promotes only when the paired bootstrap interval of (challenger - reference) lies above 0
    # at this confidence, for the champion and for the popularity baseline alike.
    gate_confidence: float = 0.95
    gate_bootstrap_samples: int = 1000

    # Sessions (gold.sessions) and the session models (next item after the visitor's current session).
    session_gap_minutes: float = 30.0  # a session ends after this many idle minutes (or a session_id change)
    session_event_types: list[str] = ["view"]  # event types kept in sessions
    session_split_on_session_id: bool = True  # also cut where the events' session_id changes
    session_min_length: int = 2  # sessions shorter than this are dropped
    session_min_item_support: int = 5  # items with fewer events are dropped
    session_test_days: float = 2.0  # sessions ending in the last N days are test
    session_validation_days: float = 2.0  # ... and those ending in the N days before, validation
    session_models: list[str] = ["popularity", "sr", "sknn", "vsknn", "stan", "recent_item_knn"]
    # Grids searched on validation, around session-rec's tuned RetailRocket values (the fixed rest).
    session_grids: dict[str, dict[str, list[float | int | str | None]]] = {
        "sr": {"steps": [5, 10]}, "sknn": {"k": [50, 100]}, "vsknn": {"weighting_score": ["div", "linear"]},
        "stan": {"lambda_inh": [0.4525, 2.05]},
    }
    session_metric: str = "mrr@20"  # validation metric the search and the session gate compare
    session_registered_model_name: str = "clickrec-session-recommender"
    recommend_top_n: int = 20
    recommend_active_days: float = 30.0  # visitors scored ahead of time; the API serves the rest on the fly
    popular_window_days: int = 7

    # Prometheus (`clickrec up`, Debian's package): scrapes the API, producer, stream job and speed layer
    # on the ports above, with infra/prometheus/alerts.yml; UI and API on bind_host:prometheus_port.
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: float = 15.0  # also how often the alert rules are evaluated
    prometheus_retention: str = "15d"  # how long samples are kept (--storage.tsdb.retention.time)

    # Slack-compatible incoming webhook for alerts (Dagster run failures, failed blocking checks).
    alert_webhook_url: SecretStr | None = None

    # Serving
    api_port: int = 8000
    dashboard_port: int = 8501  # `clickrec dashboard` (Streamlit)
    dashboard_refresh_seconds: float = 10.0  # how often the open dashboard re-reads its sections
    api_workers: int = 2  # uvicorn worker processes of `clickrec serve`
    api_pool_min_size: int = 2  # Postgres connections per worker, kept open
    api_pool_max_size: int = 8
    api_pool_timeout_s: float = 2.0  # a request waits this long for a connection, then answers 503
    api_statement_timeout_ms: int = 2000  # a query running longer is cancelled (503)
    # Each API worker holds the session champion (from MLflow) and checks this often whether its
    # alias moved; 0 turns the session model off (the live part of the blend is then similar items).
    api_session_model_refresh_seconds: float = 30.0
    # The read-only role of SQL consumers and the API; its password is generated once into the state
    # dir (reader.password, mode 600) unless set here.
    reader_role: str = "clickrec_reader"
    reader_password: SecretStr | None = None
    publish_keep_versions: int = 2  # published versions kept per table: the live one + one to roll back to

    # `clickrec demo`: the generated world (events of its history), and the live traffic it leaves running
    # (`clickrec down` stops it): a producer averaging demo_live_rate events/s on the daily curve, stamped
    # now, the speed layer, and the stream job in continuous mode.
    demo_events: int = 200_000
    demo_days: int = 7
    demo_live_rate: float = 20.0

    # Which services `clickrec up` runs on this machine; drop one to use an external deployment
    # (e.g. CLICKREC_MANAGED_SERVICES='["postgres","mlflow","dagster-code-server","dagster-webserver",
    # "dagster-daemon"]' with KAFKA_BOOTSTRAP_SERVERS pointing at your cluster). `spark` and `s3proxy` are the
    # cluster topology's Spark standalone cluster and object store.
    managed_services: list[str] = ["postgres", "kafka", "mlflow", "dagster-code-server", "dagster-webserver",
                                   "dagster-daemon", "api", "dashboard", "prometheus", "spark", "s3proxy"]
    # How long `clickrec up` waits for each service to become ready.
    startup_timeout_s: float = 180.0
    # Scheduling priority (niceness, 0-19) of what the local stack starts as batch work: the stream job, the
    # Dagster daemon (sensors, schedules, the run queue) and the code server (whose run workers, training
    # included, inherit it). The
    # interactive services (API, dashboard, Postgres, Kafka, the speed layer) keep 0, so batch work yields the
    # CPU to them. 0: no difference.
    batch_nice: int = Field(default=10, ge=0, le=19)
    batch_services: list[str] = ["stream", "dagster-daemon", "dagster-code-server"]

    @model_validator(mode="after")
    def _apply_topology(self) -> Settings:
        """In the cluster topology, what is left unset points at the cluster services `clickrec up` runs."""
        if self.topology != "cluster":
            return self
        given = self.model_fields_set
        cluster = {
            "kafka_bootstrap_servers": ",".join(f"{self.bind_host}:{broker}"
                                                for _, broker, _ in self.kafka_cluster_ports),
            "kafka_replication_factor": min(3, self.kafka_cluster_nodes),
            "spark_master": f"spark://{self.bind_host}:{self.spark_master_port}",
            "lake_root": f"s3a://{self.lake_bucket}/lake",
            "s3_endpoint": f"http://{self.bind_host}:{self.s3proxy_port}",
            "s3_allow_http": True,
            "s3_path_style": True,
            "s3_access_key": "clickrec",
            "mlflow_artifacts_destination": f"s3://{self.lake_bucket}/mlflow-artifacts",
        }
        for name, value in cluster.items():
            if name not in given:
                setattr(self, name, value)
        # The local object store's secret, generated once by `clickrec up` like the Postgres password.
        if "s3_secret_key" not in given and self.local_s3_secret_file.is_file():
            self.s3_secret_key = SecretStr(self.local_s3_secret_file.read_text().strip())
        return self

    @property
    def kafka_cluster_ports(self) -> list[tuple[int, int, int]]:
        """The cluster topology's Kafka nodes: (node id, broker port, controller port)."""
        return [(i, self.kafka_cluster_port + i - 1, self.kafka_cluster_port + 99 + i)
                for i in range(1, self.kafka_cluster_nodes + 1)]

    @model_validator(mode="after")
    def _fill_local_password(self) -> Settings:
        """The local cluster's password is generated once by `clickrec up` and kept in the state dir."""
        if self.postgres_password is None and self.local_password_file.is_file():
            self.postgres_password = SecretStr(self.local_password_file.read_text().strip())
        return self

    # Paths -----------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def jars_dir(self) -> Path:
        return self.home / "jars"

    @property
    def local_password_file(self) -> Path:
        return self.home / "state" / "postgres.password"

    @property
    def local_s3_secret_file(self) -> Path:
        return self.home / "state" / "s3proxy.secret"

    @property
    def lake_uri(self) -> str:
        return self.lake_root or str(self.home / "lake")

    @property
    def dagster_home_dir(self) -> Path:
        return self.dagster_home or self.home / "dagster_home"

    @property
    def catalogue_dir(self) -> Path:
        """Where the category tree and item property files are read from."""
        return self.retailrocket_dir or self.reference_dir or self.home / "reference"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlflow-artifacts"

    @property
    def mlflow_artifacts_uri(self) -> str:
        """The tracking server's artifact store: the destination setting, else the local folder."""
        return self.mlflow_artifacts_destination or self.mlflow_artifacts_dir.as_uri()

    # Endpoints -------------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.bind_host}:{self.mlflow_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://{self.bind_host}:{self.dagster_port}"

    def as_environment(self, *names: str) -> dict[str, str]:
        """These fields as the environment variables that set them, for a child process."""
        return {f"CLICKREC_{name.upper()}": str(getattr(self, name)) for name in names}

    def ensure_local_password(self) -> str:
        """Return the Postgres password, generating and storing one for the local cluster if unset."""
        if self.postgres_password is None:
            self.postgres_password = generate_secret(self.local_password_file)
        return self.postgres_password.get_secret_value()

    def ensure_local_s3_secret(self) -> str:
        """Return the object store's secret key, generating and storing one for the local S3Proxy if unset."""
        if self.s3_secret_key is None:
            self.s3_secret_key = generate_secret(self.local_s3_secret_file)
        return self.s3_secret_key.get_secret_value()

    def postgres_dsn(self, database: str | None = None, driver: str = "postgresql") -> str:
        """A libpq/SQLAlchemy URL for one of the platform's databases (the gold database by default)."""
        if self.postgres_password is None:
            raise RuntimeError(
                "No PostgreSQL password: set CLICKREC_POSTGRES_PASSWORD, or run `clickrec up` once "
                "to create the local cluster and its generated password."
            )
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"{driver}://{quote(self.postgres_user, safe='')}:{password}@{self.postgres_host}:"
            f"{self.postgres_port}/{database or self.postgres_db}?sslmode={self.postgres_sslmode}"
        )


def generate_secret(path: Path) -> SecretStr:
    """A random secret written to ``path`` (mode 600, created before it holds anything), as read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(24))
    return SecretStr(path.read_text().strip())


@cache
def get_settings() -> Settings:
    return Settings()
