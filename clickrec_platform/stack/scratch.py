"""A namespace of its own on the running stack: a fresh topic, lake folder, stream app id and
Postgres schema, removed afterwards. Tests and benchmarks run the real job in one, so they never
touch the platform's own data."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from confluent_kafka.admin import NewTopic
from psycopg import sql

from clickrec_platform.settings import Settings
from clickrec_platform.stack.kafka import admin_client

# The settings that differ inside a scratch namespace (hand them to a child process as its environment).
ISOLATED_FIELDS = ("kafka_topic", "lake_root", "stream_app_id", "gold_schema")


@contextmanager
def scratch_settings(settings: Settings, prefix: str = "scratch") -> Iterator[Settings]:
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(tag, settings.kafka_topic_partitions, 1)])[tag].result(30)
    with tempfile.TemporaryDirectory(prefix=f"clickrec-{prefix}-") as lake:
        scratch = settings.model_copy(update={"kafka_topic": tag, "lake_root": lake, "stream_app_id": tag,
                                              "gold_schema": tag.replace("-", "_")})
        try:
            yield scratch
        finally:
            admin.delete_topics([tag])[tag].result(30)
            with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch.gold_schema)))
