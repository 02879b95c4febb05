"""What every ``foreachBatch`` function of the stream job shares: idempotent Delta writes and timings.

Spark replays a micro-batch whose commit it did not record, with the same id and the same input,
so every write is keyed on that id: a Delta append or MERGE carrying (app id, batch id) that the
table has already committed is skipped by Delta itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession


@dataclass
class StageTimer:
    """Seconds per stage of a batch, for the log line and the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.2f}s" for name, secs in self.seconds.items())


class HeldRows:
    """DataFrames computed once and held as rows until the block ends.

    In local mode, local checkpoints: for a batch read several times, holding it costs a fraction of
    ``persist()``, which first encodes every column into compressed column batches; the blocks live in the
    driver's own executor, so nothing can lose them without losing the driver too. On a cluster, an
    executor (and the local checkpoint blocks it held) can die mid-batch, and a local checkpoint has no
    lineage to recompute them from: the batch would fail. There the rows are persisted (memory, then disk)
    instead, and a lost block is recomputed from its lineage (the Kafka offsets of the batch).
    """

    def __init__(self, local: bool = True) -> None:
        self.local = local
        self._held: list[DataFrame] = []

    @classmethod
    def for_master(cls, master: str) -> HeldRows:
        return cls(local=master.startswith("local"))

    def hold(self, frame: DataFrame) -> DataFrame:
        if self.local:
            held = frame.localCheckpoint(eager=True)
        else:
            from pyspark import StorageLevel

            held = frame.persist(StorageLevel.MEMORY_AND_DISK)
            held.count()  # computed once, now
        self._held.append(held)
        return held

    def __enter__(self) -> HeldRows:
        return self

    def __exit__(self, *_exc) -> None:
        for held in self._held:
            if self.local:
                # The rows belong to the checkpointed plan's RDD; unreleased, they would stay until a JVM GC.
                held._jdf.queryExecution().logical().rdd().unpersist(False)
            else:
                held.unpersist()
        self._held.clear()


def commit_tag(app_id: str, batch_id: int) -> str:
    """The user metadata of the commit of (app id, batch id), in the table's history."""
    return f"{app_id}:{batch_id}"


def append_once(frame: DataFrame, path: str, app_id: str, batch_id: int) -> None:
    """Append unless this (app id, batch id) already committed to the table; the commit carries
    ``commit_tag`` as its user metadata (``DESCRIBE HISTORY`` shows which batch wrote it)."""
    (frame.write.format("delta").mode("append").option("txnAppId", app_id).option("txnVersion", batch_id)
     .option("userMetadata", commit_tag(app_id, batch_id)).save(path))


@contextmanager
def idempotent_dml(spark: SparkSession, app_id: str, version: int):
    """Delta skips DML (MERGE here) whose (app id, version) the table has already committed."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


def in_pool(spark: SparkSession, pool: str) -> None:
    """Run this thread's Spark jobs in a fair-scheduler pool, so one query's jobs do not queue
    behind another's (the ingest query's latency path does not wait for gold's MERGEs)."""
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)
