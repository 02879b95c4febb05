"""The RetailRocket reader on small hand-written files in the real format, quirks and bad rows included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from clickrec_platform.events import FIELD_NAMES, invalid_reasons
from clickrec_platform.sources.rejects import RejectLedger
from clickrec_platform.sources.retailrocket import read_category_tree, read_events, read_item_properties

FIXTURES = Path(__file__).parents[1] / "fixtures" / "retailrocket"
PROPERTY_FILES = [FIXTURES / "item_properties_part1.csv", FIXTURES / "item_properties_part2.csv"]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[RejectLedger]:
    with RejectLedger(tmp_path / "rejects.jsonl") as ledger:
        yield ledger


def read_all_events(
    ledger: RejectLedger, path: Path = FIXTURES / "events.csv", **options: Any
) -> pd.DataFrame:
    return pd.concat(read_events(path, ledger, **options), ignore_index=True)


def rejected_rows(ledger: RejectLedger) -> list[dict[str, Any]]:
    ledger.close()
    return [orjson.loads(line) for line in ledger.rejects_path.read_bytes().splitlines()]


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple[object, ...]]:
    """Rows as plain tuples, with every kind of missing value as None."""
    values = frame[columns].astype(object)
    return [
        tuple(None if pd.isna(value) else value for value in row) for row in values.itertuples(index=False)
    ]


def test_events_come_out_in_the_contract_shape(ledger: RejectLedger) -> None:
    events = read_all_events(ledger)
    assert list(events.columns) == list(FIELD_NAMES)
    assert rows(events, ["ts", "visitor_id", "event", "item_id", "transaction_id"]) == [
        (1433221332117, 257597, "view", 355908, None),
        (1433224214164, 992329, "view", 248676, None),
        (1433221999827, 111016, "addtocart", 28417, None),
        (1433222276276, 0, "transaction", 356475, 14418),
        (1433222276276, 0, "transaction", 15335, 14418),  # written by pandas as 14418.0
        (1433221955914, 1, "view", 0, None),
        (1433223543234, 257597, "view", 355908, None),
        (1433223543234, 257597, "view", 355908, None),  # the same row twice in the file
        (1433221332117, 257597, "addtocart", 355908, None),
    ]
    assert set(events["source"]) == {"retailrocket"}
    assert set(events["schema_version"]) == {1}
    assert events["session_id"].isna().all() and events["query"].isna().all()
    assert invalid_reasons(events).tolist() == [None] * len(events)


def test_every_bad_event_row_is_counted_and_kept_with_its_line_and_reason(ledger: RejectLedger) -> None:
    read_all_events(ledger, chunk_rows=4)
    assert ledger.summary()["events.csv"] == {
        "rows_read": 22,
        "accepted": 9,
        "rejected": 13,
        "rejected_by_reason": {
            "bad_type:transaction_id": 1,
            "bad_type:ts": 1,
            "bad_type:visitor_id": 1,
            "empty_line": 1,
            "item_required": 1,
            "missing_field:ts": 1,
            "negative_id:item_id": 1,
            "transaction_required": 1,
            "ts_out_of_range": 1,
            "unexpected_transaction_id": 1,
            "unknown_event:click": 1,
            "wrong_column_count": 2,
        },
    }
    rejects = rejected_rows(ledger)
    assert [(row["line"], row["reason"]) for row in rejects] == [
        (10, "wrong_column_count"),
        (11, "wrong_column_count"),
        (12, "bad_type:visitor_id"),
        (13, "unknown_event:click"),
        (14, "negative_id:item_id"),
        (15, "bad_type:ts"),
        (16, "ts_out_of_range"),
        (17, "unexpected_transaction_id"),
        (18, "transaction_required"),
        (19, "item_required"),
        (20, "empty_line"),
        (21, "bad_type:transaction_id"),
        (22, "missing_field:ts"),
    ]
    lines = (FIXTURES / "events.csv").read_text().splitlines()
    assert all(row["file"] == "events.csv" for row in rejects)
    assert [row["raw"] for row in rejects] == [lines[row["line"] - 1] for row in rejects]


def test_event_ids_survive_rereading_and_rechunking(tmp_path: Path) -> None:
    def ids(chunk_rows: int) -> list[str]:
        with RejectLedger(tmp_path / f"rejects-{chunk_rows}.jsonl") as ledger:
            return read_all_events(ledger, chunk_rows=chunk_rows)["event_id"].tolist()

    in_one_chunk = ids(1_000)
    assert ids(3) == in_one_chunk
    assert ids(1_000) == in_one_chunk
    # The file's duplicated row is two events, so it keeps two ids.
    assert len(set(in_one_chunk)) == len(in_one_chunk)


def test_source_is_the_callers_to_name(ledger: RejectLedger) -> None:
    events = read_all_events(ledger, source="synthetic")
    assert set(events["source"]) == {"synthetic"}


def test_windows_line_endings_are_read_like_unix_ones(ledger: RejectLedger) -> None:
    events = read_all_events(ledger, FIXTURES / "events_crlf.csv")
    assert rows(events, ["ts", "visitor_id", "item_id"]) == [
        (1433221332117, 257597, 355908),
        (1433224214164, 992329, 248676),
    ]
    assert ledger.summary()["events_crlf.csv"]["rejected"] == 0


def test_a_file_with_another_header_is_refused(tmp_path: Path, ledger: RejectLedger) -> None:
    path = tmp_path / "events.csv"
    path.write_text("timestamp,visitor,event,item\n1433221332117,1,view,2\n")
    with pytest.raises(ValueError, match="expected header"):
        read_all_events(ledger, path)


def test_item_properties_become_a_tidy_frame_with_numbers_parsed(ledger: RejectLedger) -> None:
    properties = pd.concat(read_item_properties(PROPERTY_FILES, ledger, chunk_rows=4), ignore_index=True)
    assert list(properties.columns) == ["item_id", "ts", "property", "value_text", "value_number"]
    assert rows(properties, ["item_id", "ts", "property", "value_text", "value_number"]) == [
        (460429, 1435460400000, "categoryid", "1338", 1338.0),
        (206783, 1441508400000, "888", "1116094 1078426 n552.000 639502 n720.000 424566", None),
        (395014, 1439089200000, "400", "n552.000 639502 n720.000 424566", None),
        (59481, 1431226800000, "790", "n15360.000", 15360.0),
        (156781, 1431831600000, "917", "828513", None),  # a hashed token, not a number
        (285026, 1436065200000, "available", "0", 0.0),
        (89534, 1434250800000, "213", "1121373", None),
        (264319, 1431831600000, "6", "319724 n-12.500", None),
        (111057, 1433041200000, "790", "n1080.000", 1080.0),
        (111057, 1433646000000, "available", "1", 1.0),
        (111057, 1433646000000, "764", "a,b with comma", None),
    ]


def test_bad_item_property_rows_are_counted_per_file_by_reason(ledger: RejectLedger) -> None:
    for _ in read_item_properties(PROPERTY_FILES, ledger):
        pass
    summary = ledger.summary()
    assert summary["item_properties_part1.csv"] == {
        "rows_read": 12,
        "accepted": 8,
        "rejected": 4,
        "rejected_by_reason": {
            "bad_type:item_id": 1,
            "bad_value:available": 1,
            "bad_value:categoryid": 1,
            "wrong_column_count": 1,
        },
    }
    assert summary["item_properties_part2.csv"] == {
        "rows_read": 5,
        "accepted": 3,
        "rejected": 2,
        "rejected_by_reason": {"missing_field:property": 1, "ts_out_of_range": 1},
    }
    assert [(row["file"], row["line"]) for row in rejected_rows(ledger)] == [
        ("item_properties_part1.csv", 10),
        ("item_properties_part1.csv", 11),
        ("item_properties_part1.csv", 12),
        ("item_properties_part1.csv", 13),
        ("item_properties_part2.csv", 4),
        ("item_properties_part2.csv", 5),
    ]


def test_category_tree_has_null_parents_for_roots_and_rejects_bad_rows(ledger: RejectLedger) -> None:
    tree = read_category_tree(FIXTURES / "category_tree.csv", ledger)
    assert rows(tree, ["category_id", "parent_id"]) == [
        (1016, 213),
        (809, 169),
        (570, 9),
        (213, None),
        (169, None),
        (9, None),
        (1691, 885),
        (885, 1016),
    ]
    assert [(row["line"], row["reason"]) for row in rejected_rows(ledger)] == [
        (10, "bad_type:category_id"),
        (11, "duplicate_category"),  # 570 is already on line 4
        (12, "self_parent"),
        (13, "negative_id:parent_id"),
        (14, "wrong_column_count"),
    ]
    assert ledger.summary()["category_tree.csv"]["rows_read"] == 13
