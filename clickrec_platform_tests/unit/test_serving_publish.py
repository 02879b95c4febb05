"""The pure parts of publishing: table specs, Arrow batches made ready for COPY, source queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from clickrec_platform.serving.gold_tables import PUBLISHED_TABLES, SOURCES, USER_STATS, source_query
from clickrec_platform.serving.publish import Column, PublishedTable, prepare_batch

SPEC = PublishedTable(
    "demo",
    columns=(Column("id", "bigint", pa.int64(), required=True),
             Column("tags", "bigint[]", pa.list_(pa.int64())),
             Column("profile", "double precision[]", pa.list_(pa.float64())),
             Column("at", "timestamptz", pa.timestamp("us", tz="UTC")),
             Column("flag", "boolean", pa.bool_())),
    primary_key=("id",),
)


def _batch(**columns) -> pa.RecordBatch:
    base = {"id": pa.array([1, 2], pa.int32()), "tags": pa.array([[1, 2], None], pa.list_(pa.int32())),
            "profile": pa.array([[0.5, 0.25], []]), "at": pa.array([1, 2], pa.timestamp("ms")),
            "flag": pa.array([1, 0], pa.int8()), "extra": ["dropped", "dropped"]}
    base.update(columns)
    return pa.RecordBatch.from_pydict(base)


def test_a_batch_is_cast_to_the_spec_in_its_order_and_extra_columns_are_dropped():
    ready = prepare_batch(_batch(), SPEC)
    assert ready.schema.names == ["id", "tags", "profile", "at", "flag"]
    assert ready.column("id").type == pa.int64()
    assert ready.column("tags").to_pylist() == ["{1,2}", None]  # Postgres array literals; null stays null
    assert ready.column("profile").to_pylist() == ["{0.5,0.25}", "{}"]
    assert ready.column("flag").to_pylist() == [True, False]


def test_timestamps_without_a_zone_are_taken_as_utc():
    ready = prepare_batch(_batch(), SPEC)
    assert ready.column("at").type == pa.timestamp("us", tz="UTC")
    assert ready.column("at")[1].as_py() == datetime(1970, 1, 1, 0, 0, 0, 2000, tzinfo=UTC)


@pytest.mark.parametrize(("columns", "message"), [
    ({"id": pa.array([1, None], pa.int64())}, "null value"),
    ({"tags": pa.array([[1, None], [2]], pa.list_(pa.int64()))}, "null elements"),
    ({"at": pa.array(["2015-01-01", "x"])}, "expected a timestamp"),
    ({"flag": pa.array(["maybe", "no"])}, "cannot convert"),
])
def test_bad_values_are_rejected_with_the_column_named(columns, message):
    with pytest.raises(ValueError, match=message):
        prepare_batch(_batch(**columns), SPEC)


def test_a_missing_column_is_named():
    batch = _batch()
    with pytest.raises(ValueError, match="missing column 'flag'"):
        prepare_batch(batch.drop_columns(["flag"]), SPEC)


def test_specs_refuse_duplicate_columns_and_unknown_keys():
    column = Column("id", "bigint", pa.int64())
    with pytest.raises(ValueError, match="duplicate"):
        PublishedTable("t", columns=(column, column))
    with pytest.raises(ValueError, match="unknown"):
        PublishedTable("t", columns=(column,), primary_key=("nope",))


def test_every_published_table_has_a_key_or_index_provenance_and_a_source():
    for spec in PUBLISHED_TABLES:
        assert spec.primary_key or spec.indexes, spec.name
        assert spec.provenance, spec.name
        assert spec.name in SOURCES
        query = source_query(spec.name, ["/lake/a'b"] * len(SOURCES[spec.name]), 3)
        assert "delta_scan('/lake/a''b')" in query and "ORDER BY" in query  # quoted path, clustered load
    assert "3::BIGINT AS source_version" in source_query(USER_STATS.name, ["/lake/x"], 3)
