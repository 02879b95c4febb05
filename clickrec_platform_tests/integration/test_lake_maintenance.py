"""The lake's maintenance schedule: it asks for a compaction only when the Delta logs show small files, and its
job (run in-process on a scratch lake, with the real Spark and Delta) compacts them, changing no data."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.lake.maintenance import active_files, small_files
from clickrec_platform.lake.tables import OPS_STREAM_BATCHES, SILVER_EVENTS
from clickrec_platform.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch_lake(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKREC_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("CLICKREC_OPTIMIZE_MIN_SMALL_FILES", "6")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _micro_batches(spark, settings, batches: int) -> int:
    """Append ``batches`` small batches to silver.events (2 event dates each) and ops.stream_batches, as the
    stream job's micro-batches do; returns the silver rows written."""
    from pyspark.sql import functions as F

    SILVER_EVENTS.ensure(spark, settings)
    OPS_STREAM_BATCHES.ensure(spark, settings)
    silver = spark.read.format("delta").load(SILVER_EVENTS.path(settings)).schema
    rows = 0
    for batch in range(batches):
        frame = (spark.range(batch * 10, batch * 10 + 10)
                 .select(F.concat(F.lit("e"), F.col("id").cast("string")).alias("event_id"),
                         (F.lit(1_700_000_000_000) + F.col("id") % 2 * 86_400_000).alias("ts"),
                         F.col("id").alias("visitor_id"), F.lit("view").alias("event"), F.col("id").alias("item_id"),
                         F.lit("test").alias("source"), F.lit(1).alias("schema_version"))
                 .withColumn("event_time", F.timestamp_millis("ts"))
                 .withColumn("event_date", F.to_date("event_time")))
        for field in silver:
            if field.name not in frame.columns:
                frame = frame.withColumn(field.name, F.lit(None).cast(field.dataType))
        frame.select(*[F.col(f.name).cast(f.dataType) for f in silver]).coalesce(1).write.format("delta").mode("append").save(SILVER_EVENTS.path(settings))
        spark.createDataFrame([(batch, 10, 10, 0, 0, datetime.now(UTC), 0.5)],
                              OPS_STREAM_BATCHES.schema).coalesce(1).write.format("delta").mode("append").save(
            OPS_STREAM_BATCHES.path(settings))
        rows += 10
    return rows


def _evaluate(schedule: dg.ScheduleDefinition, settings, hour: int = 12):
    # The context is closed too: it enters the instance, which sets Dagster's current defs-state storage;
    # left open, that storage outlives the instance and breaks every later in-process materialisation.
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 5, hour, 7, tzinfo=UTC),
            resources={"lake": LakeResource.from_settings(settings)}) as context:
        return schedule.evaluate_tick(context)


def test_the_schedule_compacts_the_stream_tables_when_they_have_small_files(spark, scratch_lake):
    from clickrec_platform.definitions import defs
    from clickrec_platform.defs.ops.maintenance import (
        OptimizeConfig,
        optimize_lake,
        optimize_lake_every_30_minutes,
    )

    settings = scratch_lake
    schedule = defs.get_schedule_def("optimize_lake_every_30_minutes")
    assert schedule.job_name == "optimize_lake" and schedule.cron_schedule == "7,37 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert _evaluate(optimize_lake_every_30_minutes, settings).skip_message.startswith("nothing to compact")  # no tables

    rows = _micro_batches(spark, settings, batches=6)
    before = {t.key: len(active_files(settings, t) or []) for t in (SILVER_EVENTS, OPS_STREAM_BATCHES)}
    assert small_files(settings) == {"silver.events": 12, "ops.stream_batches": 6}
    (request,) = _evaluate(optimize_lake_every_30_minutes, settings).run_requests
    assert request.run_config["ops"]["compact_lake"]["config"].get("vacuum_hours") is None
    (nightly,) = _evaluate(optimize_lake_every_30_minutes, settings, hour=3).run_requests  # VACUUM at 03:xx
    assert nightly.run_config["ops"]["compact_lake"]["config"] == {"vacuum_hours": settings.optimize_vacuum_hours}

    result = optimize_lake.execute_in_process(
        run_config=dg.RunConfig(ops={"compact_lake": OptimizeConfig()}), resources={"spark": SparkResource.from_settings(settings)})
    assert result.success
    summary = result.output_for_node("compact_lake")
    assert summary["before"] == {"silver.events": 12, "ops.stream_batches": 6}
    assert summary["after"] == {"silver.events": 0, "ops.stream_batches": 0}
    after = {t.key: len(active_files(settings, t) or []) for t in (SILVER_EVENTS, OPS_STREAM_BATCHES)}
    assert before == {"silver.events": 12, "ops.stream_batches": 6}
    assert after == {"silver.events": 2, "ops.stream_batches": 1}  # one file per event date
    assert spark.read.format("delta").load(SILVER_EVENTS.path(settings)).count() == rows  # no data changed
    history = spark.sql(f"DESCRIBE HISTORY delta.`{SILVER_EVENTS.path(settings)}`").first()
    assert history.operation == "OPTIMIZE"
    assert _evaluate(optimize_lake_every_30_minutes, settings).skip_message.startswith("nothing to compact")
