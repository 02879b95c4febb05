"""A Delta table's versions and the partitions its commits added, read through delta-rs, on real tables."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from clickrec_platform.lake.table_versions import latest_version, partitions_added_since
from clickrec_platform.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, home=tmp_path)


def _append(table: Path | str, dates: list[str], **options) -> None:
    """One commit adding one file per date, partitioned by event_date (a DATE, as Spark writes silver)."""
    days = [date.fromisoformat(d) for d in dates]
    write_deltalake(str(table), pa.table({"visitor_id": list(range(len(days))), "event_date": pa.array(days)}),
                    partition_by=["event_date"], mode="append", **options)


def _compact(table: Path) -> int:
    """OPTIMIZE, as `clickrec optimize` runs it: a commit whose add actions carry dataChange=false."""
    compaction = DeltaTable(str(table)).optimize.compact()
    assert compaction["numFilesRemoved"] > 1
    version = DeltaTable(str(table)).version()
    commit = (table / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
    adds = [json.loads(line)["add"] for line in commit if '"add"' in line]
    assert adds and not any(add["dataChange"] for add in adds)  # what the test is about
    return version


def test_partitions_added_since_a_version(tmp_path: Path, settings: Settings):
    table = tmp_path / "events"
    assert latest_version(str(table), settings) is None
    assert partitions_added_since(str(table), settings, None, "event_date") == (set(), None)
    _append(table, ["2015-05-04"])
    _append(table, ["2015-05-04", "2015-05-05"])
    _append(table, ["2015-05-07"])
    assert latest_version(str(table), settings) == 2
    assert partitions_added_since(str(table), settings, None, "event_date") == (
        {"2015-05-04", "2015-05-05", "2015-05-07"}, 2)
    assert partitions_added_since(str(table), settings, 0, "event_date") == (
        {"2015-05-04", "2015-05-05", "2015-05-07"}, 2)
    assert partitions_added_since(str(table), settings, 1, "event_date") == ({"2015-05-07"}, 2)
    assert partitions_added_since(f"file://{table}", settings, 2, "event_date") == (set(), 2)


def test_a_compaction_adds_no_partitions(tmp_path: Path, settings: Settings):
    table = tmp_path / "events"
    for _ in range(3):
        _append(table, ["2015-05-04", "2015-05-05"])
    compacted = _compact(table)
    assert partitions_added_since(str(table), settings, compacted - 1, "event_date") == (set(), compacted)
    _append(table, ["2015-05-08"])
    # Data written on either side of the compaction still counts; the compaction's own files do not.
    assert partitions_added_since(str(table), settings, compacted - 1, "event_date") == (
        {"2015-05-08"}, compacted + 1)
    assert partitions_added_since(str(table), settings, 1, "event_date") == (
        {"2015-05-04", "2015-05-05", "2015-05-08"}, compacted + 1)


def test_a_cleaned_up_log_is_reported_not_guessed(tmp_path: Path, settings: Settings):
    table = tmp_path / "events"
    _append(table, ["2015-05-04"], configuration={"delta.logRetentionDuration": "interval 0 seconds"})
    for day in ("2015-05-05", "2015-05-06", "2015-05-07"):
        _append(table, [day])
    DeltaTable(str(table)).create_checkpoint()  # at version 3
    _append(table, ["2015-05-09"])
    DeltaTable(str(table)).cleanup_metadata()  # commits 0-2 are gone, the checkpoint stands for them
    assert not (table / "_delta_log" / f"{2:020d}.json").exists()
    assert partitions_added_since(str(table), settings, 1, "event_date") is None
    assert partitions_added_since(str(table), settings, 3, "event_date") == ({"2015-05-09"}, 4)
    # From nothing, every partition the table holds, which needs no old commit.
    assert partitions_added_since(str(table), settings, None, "event_date") == (
        {"2015-05-04", "2015-05-05", "2015-05-06", "2015-05-07", "2015-05-09"}, 4)


def test_a_missing_commit_is_reported_not_guessed(tmp_path: Path, settings: Settings):
    table = tmp_path / "events"
    for day in ("2015-05-04", "2015-05-05", "2015-05-06", "2015-05-07"):
        _append(table, [day])
    DeltaTable(str(table)).create_checkpoint()  # at version 3
    (table / "_delta_log" / f"{1:020d}.json").unlink()
    assert partitions_added_since(str(table), settings, 0, "event_date") is None
    assert partitions_added_since(str(table), settings, 2, "event_date") is None  # version 2 cannot be replayed
    assert partitions_added_since(str(table), settings, 3, "event_date") == (set(), 3)
    # A gap after the last checkpoint is a broken table, which no reader can load: an error, not a guess.
    _append(table, ["2015-05-08"])
    _append(table, ["2015-05-09"])
    (table / "_delta_log" / f"{4:020d}.json").unlink()
    with pytest.raises(DeltaError, match="(?i)gap"):
        partitions_added_since(str(table), settings, 3, "event_date")


def test_history_on_a_table_behind_the_log_misnumbers_commits(tmp_path: Path):
    """Why `partitions_added_since` re-reads history when a commit lands meanwhile (delta-rs 1.6.6):
    history() lists the log's newest commits but numbers them from the version the object was loaded at."""
    table = tmp_path / "events"
    _append(table, ["2015-05-04"])
    stale = DeltaTable(str(table))
    write_deltalake(str(table), pa.table({"visitor_id": [1], "event_date": pa.array([date(2015, 5, 5)])}),
                    mode="overwrite")
    assert [(c["version"], c["operationParameters"]["mode"]) for c in stale.history(1)][0] == (0, "Overwrite")


def test_a_commit_landing_while_history_is_read_is_not_misnumbered(tmp_path: Path, settings: Settings,
                                                                    monkeypatch):
    table = tmp_path / "events"
    _append(table, ["2015-05-04"])
    _append(table, ["2015-05-04"])
    history = DeltaTable.history
    landed: list[object] = []

    def history_while_compacting(self, limit=None):
        if not landed:
            landed.append(_compact(table))
        return history(self, limit)

    monkeypatch.setattr(DeltaTable, "history", history_while_compacting)
    assert partitions_added_since(str(table), settings, 0, "event_date") == ({"2015-05-04"}, landed[0])


def test_after_a_compaction_the_silver_sensor_requests_nothing(tmp_path: Path, monkeypatch):
    from clickrec_platform.defs.graph.automation import silver_events_sensor
    from clickrec_platform.defs.resources import LakeResource
    from clickrec_platform.lake.tables import SILVER_EVENTS
    from clickrec_platform.settings import get_settings

    monkeypatch.setenv("CLICKREC_LAKE_ROOT", str(tmp_path / "lake"))
    get_settings.cache_clear()
    try:
        silver = Path(SILVER_EVENTS.path(get_settings()))

        def tick(cursor: str | None) -> dg.SensorExecutionData:
            return silver_events_sensor.evaluate_tick(
                dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral(),
                                        resources={"lake": LakeResource.from_settings(get_settings())}))

        for _ in range(2):
            _append(silver, ["2015-05-04", "2015-05-05"])
        first = tick(None)
        (request,) = first.run_requests
        assert (request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"]) == ("2015-05-04", "2015-05-05")

        compacted = _compact(silver)
        after = tick(first.cursor)
        assert not after.run_requests and after.cursor == str(compacted)

        _append(silver, ["2015-05-06"])
        (request,) = tick(after.cursor).run_requests
        assert (request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"]) == ("2015-05-06", "2015-05-06")
    finally:
        get_settings.cache_clear()
