"""COPY of Arrow data into PostgreSQL, for the live tables and for publishing.

A loader describes the columns it writes (`CopyColumn`: name, SQL and Arrow type, whether nulls are
refused), checks and casts what it was given (`arrow_for_copy`), COPYs it into a temporary staging
table (`stage_rows`, with `copy_arrow` under it: CSV written by Arrow's C++ writer) and applies it with
set-based SQL, e.g. an upsert that leaves unchanged rows alone (`upsert_changed_sql`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

# Postgres keeps microseconds; every timestamp column is converted to this before COPY.
TIMESTAMP = pa.timestamp("us", tz="UTC")
# Rows per CSV chunk handed to COPY: bounds the driver's memory for large batches.
COPY_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class CopyColumn:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    required: bool = False  # nulls are rejected before anything is written


def comment_on(cur: psycopg.Cursor, kind: str, target: sql.Composable, comment: str,
               column_comments: Mapping[str, str]) -> None:
    """Describe a table or view (`kind`) and its columns in the catalogue, for SQL consumers."""
    cur.execute(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), target, sql.Literal(comment)))
    for column, column_comment in column_comments.items():
        if column_comment:
            cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                target, sql.Identifier(column), sql.Literal(column_comment)))


def arrow_for_copy(rows: pa.Table, columns: Sequence[CopyColumn], what: str) -> pa.Table:
    """The columns a loader needs, in order and cast to their canonical types (extra ones dropped)."""
    missing = [column.name for column in columns if column.name not in rows.column_names]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {rows.column_names}")
    arrays = []
    for column in columns:
        array = rows.column(column.name)
        if pa.types.is_timestamp(column.arrow_type) and (
            not pa.types.is_timestamp(array.type) or array.type.tz is None
        ):
            raise ValueError(f"{what}.{column.name}: expected a timezone-aware timestamp, got {array.type}")
        if column.required and array.null_count:
            raise ValueError(f"{what}.{column.name}: {array.null_count} null value(s) in a required column")
        arrays.append(array.cast(column.arrow_type))
    return pa.Table.from_arrays(arrays, names=[column.name for column in columns])


def require_unique(data: pa.Table, key: Sequence[str], what: str) -> None:
    counts = data.group_by(list(key)).aggregate([([], "count_all")])
    duplicated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if duplicated.num_rows:
        raise ValueError(f"{what}: {duplicated.num_rows} key(s) {list(key)} occur more than once, "
                         f"e.g. {duplicated.slice(0, 3).to_pylist()}")


def stage_rows(cur: psycopg.Cursor, data: pa.Table, columns: Sequence[CopyColumn], what: str) -> sql.Identifier:
    """COPY ``data`` into a new temporary table, dropped at commit; return its name."""
    # Unique so that two loads inside one caller's transaction (savepoints) do not collide.
    stage = sql.Identifier(f"stage_{what}_{uuid.uuid4().hex[:12]}")
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        stage,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(column.sql_type))
            for column in columns),
    ))
    if data.num_rows == 0:
        return stage
    copy_arrow(cur, stage, data.column_names, data.to_batches(max_chunksize=COPY_CHUNK_ROWS))
    return stage


def copy_arrow(cur: psycopg.Cursor, target: sql.Composable, names: Sequence[str],
               batches: Iterable[pa.RecordBatch], *, freeze: bool = False) -> int:
    """COPY Arrow record batches (columns ``names``, in that order) into ``target``; return rows copied.

    Columns must be of types that Arrow's CSV writer writes as text Postgres parses: numbers, strings,
    booleans, timezone-aware timestamps. ``freeze`` (COPY FREEZE) is for a table created in the same
    transaction: its rows land frozen and all-visible, so index-only scans work without a VACUUM.
    """
    # Arrow writes nulls as empty fields and quotes every string, which is how COPY's CSV format
    # tells NULL from '' ; timestamps come out as ISO 8601 with a Z suffix.
    options = pacsv.WriteOptions(include_header=False)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv{})").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in names),
        sql.SQL(", FREEZE") if freeze else sql.SQL(""))
    copied = 0
    with cur.copy(statement) as copy:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            buffer = pa.BufferOutputStream()
            pacsv.write_csv(batch, buffer, options)
            copy.write(memoryview(buffer.getvalue()))
            copied += batch.num_rows
    return copied


def upsert_changed_sql(
    target: sql.Identifier,
    stage: sql.Identifier,
    columns: Sequence[str],
    key: Sequence[str],
    values: Sequence[str],
) -> sql.Composed:
    """INSERT the staged rows; on a key conflict update only rows whose values differ."""
    names = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    return sql.SQL("""
        INSERT INTO {target} AS t ({names}) SELECT {names} FROM {stage}
        ON CONFLICT ({key}) DO UPDATE SET {assignments}, updated_at = now()
        WHERE ({current}) IS DISTINCT FROM ({incoming})
    """).format(
        target=target,
        names=names,
        stage=stage,
        key=sql.SQL(", ").join(sql.Identifier(name) for name in key),
        assignments=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in values),
        current=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(name)) for name in values),
        incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(name)) for name in values),
    )
