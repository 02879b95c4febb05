"""Reading a Delta log's versions and the partitions its commits added, without Spark."""

from __future__ import annotations

import json
from pathlib import Path

from clickrec_platform.lake.delta_log import latest_version, partitions_added_since


def _commit(table: Path, version: int, dates: list[str]) -> None:
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    actions = [{"commitInfo": {"operation": "WRITE"}}]
    actions += [{"add": {"path": f"event_date={d}/part-{version}.parquet", "partitionValues": {"event_date": d}}}
                for d in dates]
    actions.append({"remove": {"path": "event_date=1999-01-01/old.parquet"}})
    (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions))


def test_partitions_added_since_a_version(tmp_path: Path):
    table = tmp_path / "events"
    assert latest_version(str(table)) is None
    assert partitions_added_since(str(table), None, "event_date") == (set(), None)
    _commit(table, 0, ["2015-05-04"])
    _commit(table, 1, ["2015-05-04", "2015-05-05"])
    _commit(table, 2, ["2015-05-07"])
    assert latest_version(str(table)) == 2
    assert partitions_added_since(str(table), None, "event_date") == ({"2015-05-04", "2015-05-05", "2015-05-07"}, 2)
    assert partitions_added_since(str(table), 1, "event_date") == ({"2015-05-07"}, 2)
    assert partitions_added_since(f"file://{table}", 2, "event_date") == (set(), 2)


def test_a_cleaned_up_log_is_reported_not_guessed(tmp_path: Path):
    table = tmp_path / "events"
    for version in (3, 4):
        _commit(table, version, ["2015-05-04"])
    assert partitions_added_since(str(table), 1, "event_date") is None  # commit 2 is gone
    assert partitions_added_since(str(table), 3, "event_date") == ({"2015-05-04"}, 4)
