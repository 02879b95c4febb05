"""Atomic publishing of a whole table to PostgreSQL: versioned tables behind a view.

A published table ``<schema>.<name>`` is a view over its live version ``<schema>.<name>__v<N>``.
:func:`publish` does everything in one transaction:

1. takes a per-table advisory lock (concurrent publishes of one table queue up);
2. creates ``<name>__v<N+1>`` and bulk-loads it with ``COPY … FREEZE`` from Arrow record batches
   (streamed, so memory stays bounded; rows land frozen and all-visible, so index-only scans work
   without a VACUUM), then adds the primary key and indexes (built once, after the load, which is
   much faster than maintaining them row by row) and ANALYZEs it;
3. repoints the view at it (``CREATE OR REPLACE VIEW``) and records the version in
   ``<schema>.publish_log``; then commits.

A reader's statement therefore sees the old version or the new one, complete, never a mix and
never an empty table in between; anything that fails (a null key, a duplicate key, a lost
connection) rolls back the whole publish and the old version stays live. Repointing the view takes
a brief exclusive lock on it: behind a long-running reader each attempt waits at most 100 ms and
retries a second later, so other readers never queue behind the publish for long. Versions beyond
``keep_versions`` are dropped afterwards, each in a short transaction of its own (one still in use
is left for the next publish to drop). :func:`activate` points the view back at a kept version.

SQL consumers (and the API) read the view; the view's name, columns, comments and grants stay the
same across publishes, so views they build on top keep working.

Over 400 lines because the steps above are one transaction's: splitting them across modules would hide
which statement runs under which lock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from clickrec_platform.serving.pg_copy import COPY_CHUNK_ROWS, TIMESTAMP, comment_on, copy_arrow

PUBLISH_LOG = "publish_log"
_MAX_IDENTIFIER = 63  # Postgres truncates longer names
SWAP_LOCK_TIMEOUT_MS = 100  # longest a reader may wait behind one attempt to switch a view


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # e.g. "bigint", "double precision[]", "timestamptz"
    arrow_type: pa.DataType  # what the column is cast to before COPY (list types for SQL arrays)
    required: bool = False  # NOT NULL; a null fails the publish before the swap
    comment: str = ""


@dataclass(frozen=True)
class Index:
    name: str  # suffix of the index name: <physical table>_<name>
    definition: str  # what follows ON <table>: "(visitor_id, rank)", "USING gin (search_document)"
    unique: bool = False


@dataclass(frozen=True)
class PublishedTable:
    """What a published table looks like in Postgres; rows come as Arrow batches with these columns."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    # Columns Postgres computes while loading, as DDL: "doc tsvector GENERATED ALWAYS AS (…) STORED".
    generated: tuple[tuple[str, str, str], ...] = ()  # (name, DDL after the name, comment)
    # Columns whose distinct values say where the rows came from (model version, run id): recorded
    # in the publish log.
    provenance: tuple[str, ...] = ()
    comment: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns] + [g[0] for g in self.generated]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names {names}")
        unknown = [n for n in (*self.primary_key, *self.provenance) if n not in names]
        if unknown:
            raise ValueError(f"{self.name}: primary key / provenance name unknown columns {unknown}")
        if len(self.physical_name(10**6)) + max((len(i.name) for i in self.indexes), default=4) + 1 > _MAX_IDENTIFIER:
            raise ValueError(f"{self.name}: name too long for versioned tables and their indexes")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + [g[0] for g in self.generated]

    def physical_name(self, version: int) -> str:
        return f"{self.name}__v{version}"


@dataclass(frozen=True)
class PublishResult:
    table: str
    version: int
    physical_table: str
    rows: int
    provenance: dict[str, list[str]]
    seconds: dict[str, float]  # load, index, swap, cleanup
    dropped: list[str] = field(default_factory=list)  # old versions removed
    kept: list[str] = field(default_factory=list)  # old versions that could not be removed yet

    def as_metadata(self) -> dict[str, int | float | str]:
        return {"version": self.version, "physical_table": self.physical_table, "rows": self.rows,
                **{name: ", ".join(values) for name, values in self.provenance.items()},
                **{f"seconds_{stage}": round(value, 3) for stage, value in self.seconds.items()},
                "dropped_versions": ", ".join(self.dropped)}


_PUBLISH_LOG_DDL = """
CREATE TABLE IF NOT EXISTS {log} (
    table_name text NOT NULL,
    version integer NOT NULL,
    physical_table text NOT NULL,
    row_count bigint NOT NULL,
    provenance jsonb NOT NULL DEFAULT '{{}}',
    source text,
    published_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    is_live boolean NOT NULL DEFAULT false,
    PRIMARY KEY (table_name, version)
)"""
_PUBLISH_LOG_COMMENTS = (
    "One row per published version of each published table (user_recommendations, similar_items, "
    "popular_items, user_stats, items): each is a view over its live version <name>__v<N>. "
    "Live versions: WHERE is_live.",
    {"table_name": "The published table (the view's name).",
     "version": "Version number, 1, 2, … per table.",
     "physical_table": "The table holding this version's rows; dropped when it is no longer kept.",
     "row_count": "Rows loaded.",
     "provenance": "Distinct model versions / MLflow run ids (or source versions) of the rows.",
     "source": "Where the rows came from, e.g. the Delta table and its version.",
     "published_at": "When this version was loaded.",
     "activated_at": "When the view last switched to this version.",
     "is_live": "True for the version the view reads now."},
)


def ensure_publish_log(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and the publish log if missing (idempotent)."""
    log = sql.Identifier(schema, PUBLISH_LOG)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.publish_log.{schema}",))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL(_PUBLISH_LOG_DDL).format(log=log))
        cur.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (table_name) WHERE is_live").format(
            sql.Identifier(f"{PUBLISH_LOG}_one_live_idx"), log))
        comment_on(cur, "TABLE", log, *_PUBLISH_LOG_COMMENTS)


def publish(
    conn: psycopg.Connection,
    spec: PublishedTable,
    rows: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
    *,
    schema: str,
    source: str = "",
    reader_role: str | None = None,
    keep_versions: int = 2,
    swap_timeout_s: float = 120.0,
) -> PublishResult:
    """Load ``rows`` as a new version of ``spec`` and make it live atomically; see the module doc.

    ``conn`` must not be inside a transaction. Call :func:`ensure_publish_log` once before. Rows are
    cast to the spec's types; extra columns are ignored, missing ones or nulls in required columns
    raise ``ValueError`` (nothing changes), as do duplicate primary keys.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("publish needs a connection outside any transaction")
    if keep_versions < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
    seconds: dict[str, float] = {}
    provenance: dict[str, set[str]] = {name: set() for name in spec.provenance}
    log = sql.Identifier(schema, PUBLISH_LOG)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.publish.{schema}.{spec.name}",))
        cur.execute(sql.SQL("SELECT coalesce(max(version), 0) + 1 FROM {} WHERE table_name = %s").format(log),
                    (spec.name,))
        next_version = cur.fetchone()
        assert next_version is not None  # an aggregate without grouping has one row
        version = next_version[0]
        physical = spec.physical_name(version)
        target = sql.Identifier(schema, physical)

        started = time.perf_counter()
        # Left over by a publish whose log row was lost (e.g. the log was recreated): not live, so safe.
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        cur.execute(_create_table_sql(spec, target))
        names = [c.name for c in spec.columns]
        batches = (_track(prepare_batch(batch, spec), provenance) for batch in _batches(rows))
        row_count = copy_arrow(cur, target, names, batches, freeze=True)
        seconds["load"] = time.perf_counter() - started

        started = time.perf_counter()
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        if spec.primary_key:
            try:
                with conn.transaction():
                    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                        target, sql.Identifier(f"{physical}_pkey"),
                        sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))))
            except errors.UniqueViolation as exc:
                raise ValueError(f"{spec.name}: duplicate primary key {list(spec.primary_key)}: "
                                 f"{exc.diag.message_detail}") from exc
        for index in spec.indexes:
            cur.execute(sql.SQL("CREATE {unique}INDEX {name} ON {target} {definition}").format(
                unique=sql.SQL("UNIQUE " if index.unique else ""),
                name=sql.Identifier(f"{physical}_{index.name}"), target=target,
                definition=sql.SQL(index.definition)))
        cur.execute(sql.SQL("ANALYZE {}").format(target))
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            target, sql.Literal(f"Version {version} of {schema}.{spec.name} (read the view, not this table).")))
        if reader_role:
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, sql.Identifier(reader_role)))
        seconds["index"] = time.perf_counter() - started

        cur.execute(sql.SQL("""
            INSERT INTO {} (table_name, version, physical_table, row_count, provenance, source)
            VALUES (%s, %s, %s, %s, %s, %s)
        """).format(log), (spec.name, version, physical, row_count,
                           Jsonb({k: sorted(v) for k, v in provenance.items()}), source))
        started = time.perf_counter()
        _switch_view(conn, spec, schema, version, reader_role, swap_timeout_s)
        seconds["swap"] = time.perf_counter() - started

    started = time.perf_counter()
    dropped, kept = drop_old_versions(conn, spec.name, schema, keep_versions)
    seconds["cleanup"] = time.perf_counter() - started
    return PublishResult(spec.name, version, physical, row_count,
                         {k: sorted(v) for k, v in provenance.items()}, seconds, dropped, kept)


def activate(conn: psycopg.Connection, spec: PublishedTable, version: int, *, schema: str,
             reader_role: str | None = None, swap_timeout_s: float = 120.0) -> None:
    """Point the view at an earlier (kept) version: a rollback, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.publish.{schema}.{spec.name}",))
        cur.execute(sql.SQL("SELECT physical_table FROM {} WHERE table_name = %s AND version = %s").format(
            sql.Identifier(schema, PUBLISH_LOG)), (spec.name, version))
        found = cur.fetchone()
        if found is None or found[0] not in _physical_tables(cur, spec.name, schema):
            raise ValueError(f"{schema}.{spec.name}: version {version} is not kept")
        _switch_view(conn, spec, schema, version, reader_role, swap_timeout_s)


def ensure_published(conn: psycopg.Connection, spec: PublishedTable, *, schema: str,
                     reader_role: str | None = None) -> PublishResult | None:
    """Publish an empty first version of a table never published, so that readers find the view
    (the API answers with its fallbacks until real data is published). None when it exists."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, spec.name))
        if cur.fetchone() is not None:
            return None
    empty = pa.RecordBatch.from_pylist([], schema=pa.schema([(c.name, c.arrow_type) for c in spec.columns]))
    return publish(conn, spec, [empty], schema=schema, source="empty placeholder (nothing published yet)",
                   reader_role=reader_role)


def live_versions(conn: psycopg.Connection, schema: str) -> dict[str, dict[str, object]]:
    """The live version of each published table: version, rows, provenance, published_at."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""
            SELECT table_name, version, row_count, provenance, source, published_at, activated_at
            FROM {} WHERE is_live ORDER BY table_name
        """).format(sql.Identifier(schema, PUBLISH_LOG)))
        return {row[0]: {"version": row[1], "rows": row[2], "provenance": row[3], "source": row[4],
                         "published_at": row[5], "activated_at": row[6]} for row in cur.fetchall()}


def drop_old_versions(conn: psycopg.Connection, name: str, schema: str, keep_versions: int
                      ) -> tuple[list[str], list[str]]:
    """Drop versions of ``name`` beyond the newest ``keep_versions`` (never the live one); each drop
    waits at most a second for readers still using it, else it is left for next time. Returns
    (dropped, left)."""
    with conn.cursor() as cur:
        with conn.transaction():
            cur.execute(sql.SQL("SELECT physical_table FROM {} WHERE table_name = %s AND is_live").format(
                sql.Identifier(schema, PUBLISH_LOG)), (name,))
            live = {row[0] for row in cur.fetchall()}
            tables = _physical_tables(cur, name, schema)
        versions = sorted(tables, key=lambda t: int(t.rsplit("__v", 1)[1]), reverse=True)
        keep = set(versions[:keep_versions]) | live
        dropped, left = [], []
        for table in versions:
            if table in keep:
                continue
            try:
                with conn.transaction():
                    cur.execute("SET LOCAL lock_timeout = '1s'")
                    cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
                dropped.append(table)
            except errors.LockNotAvailable:
                left.append(table)
    return dropped, left


# Arrow → COPY ------------------------------------------------------------------------------------

def prepare_batch(batch: pa.RecordBatch, spec: PublishedTable) -> pa.RecordBatch:
    """The spec's columns of ``batch``, in order, as types Arrow's CSV writer writes for Postgres.

    Timestamps without a zone are taken as UTC (Spark and Delta store instants in UTC); list columns
    become Postgres array literals (``{1,2,3}``; null elements are rejected).
    """
    arrays, names = [], []
    for column in spec.columns:
        if column.name not in batch.schema.names:
            raise ValueError(f"{spec.name}: missing column {column.name!r}; got {batch.schema.names}")
        array = batch.column(column.name)
        if column.required and array.null_count:
            raise ValueError(f"{spec.name}.{column.name}: {array.null_count} null value(s) in a required column")
        try:
            arrays.append(_for_csv(array, column))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise ValueError(f"{spec.name}.{column.name}: cannot convert {array.type} to "
                             f"{column.sql_type}: {exc}") from exc
        names.append(column.name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _for_csv(array: pa.Array, column: Column) -> pa.Array:
    target = column.arrow_type
    if pa.types.is_list(target) or pa.types.is_large_list(target):
        array = array.cast(target)
        if pc.list_flatten(array).null_count:
            raise ValueError("null elements inside an array are not supported")
        joined = pc.binary_join(array.cast(pa.list_(pa.string())), ",")
        return pc.binary_join_element_wise("{", joined, "}", "")
    if pa.types.is_timestamp(target):
        if not pa.types.is_timestamp(array.type):
            raise ValueError(f"expected a timestamp, got {array.type}")
        if array.type.tz is None:
            array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
        return array.cast(TIMESTAMP)
    return array.cast(target)


def _batches(rows: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if isinstance(rows, pa.Table):
        yield from rows.to_batches(max_chunksize=COPY_CHUNK_ROWS)
    else:
        yield from rows


def _track(batch: pa.RecordBatch, provenance: dict[str, set[str]]) -> pa.RecordBatch:
    for name, values in provenance.items():
        values.update(str(v) for v in pc.unique(batch.column(name)).to_pylist() if v is not None)
    return batch


# DDL and the swap ---------------------------------------------------------------------------------

def _create_table_sql(spec: PublishedTable, target: sql.Identifier) -> sql.Composed:
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.sql_type),
                                         sql.SQL(" NOT NULL" if c.required else "")) for c in spec.columns]
    columns += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(ddl)) for name, ddl, _ in spec.generated]
    return sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(columns))


def _switch_view(conn: psycopg.Connection, spec: PublishedTable, schema: str, version: int,
                 reader_role: str | None, timeout_s: float) -> None:
    """Inside the caller's transaction: the view reads ``version``; the log says so.

    Replacing the view needs an exclusive lock on it for an instant, which waits for transactions
    that read it. While the publish waits, new readers queue behind it, so each attempt waits at
    most ``SWAP_LOCK_TIMEOUT_MS`` and gives way for a second before the next, until ``timeout_s``.
    """
    view = sql.Identifier(schema, spec.name)
    select = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, spec.column_names)),
        sql.Identifier(schema, spec.physical_name(version)))
    with conn.cursor() as cur:
        cur.execute("SELECT c.relkind, ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, spec.name))
        existing = cur.fetchone()
        if existing is not None and existing[0] != "v":
            raise RuntimeError(f"{schema}.{spec.name} exists and is not a view (relkind {existing[0]!r}): "
                               f"rename or drop it, then publish again")
        if existing is None or existing[1] == spec.column_names:
            statements = [sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(view, select)]
        else:
            # The columns changed (a new spec), which CREATE OR REPLACE cannot do: drop and create. A
            # consumer's view on top makes the DROP fail, rightly: it would break silently otherwise.
            statements = [sql.SQL("DROP VIEW {}").format(view), sql.SQL("CREATE VIEW {} AS {}").format(view, select)]
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{SWAP_LOCK_TIMEOUT_MS}ms",))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with conn.transaction():  # a savepoint: a lock timeout retries without losing the load
                    for statement in statements:
                        cur.execute(statement)
                break
            except errors.LockNotAvailable as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{schema}.{spec.name}: could not switch the view for {timeout_s:.0f}s: transactions "
                        f"reading it did not end (see pg_stat_activity); nothing was published") from exc
                time.sleep(1.0)
        cur.execute("SELECT set_config('lock_timeout', '0', true)")
        comment_on(cur, "VIEW", view,
                   f"{spec.comment} Published atomically: a view over the live version (see {PUBLISH_LOG}).".strip(),
                   {**{c.name: c.comment for c in spec.columns}, **{g[0]: g[2] for g in spec.generated}})
        if reader_role:
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(view, sql.Identifier(reader_role)))
        log = sql.Identifier(schema, PUBLISH_LOG)
        cur.execute(sql.SQL("UPDATE {} SET is_live = false WHERE table_name = %s AND is_live").format(log),
                    (spec.name,))
        cur.execute(sql.SQL("UPDATE {} SET is_live = true, activated_at = now() "
                            "WHERE table_name = %s AND version = %s").format(log), (spec.name, version))


def _physical_tables(cur: psycopg.Cursor, name: str, schema: str) -> list[str]:
    pattern = re.compile(rf"^{re.escape(name)}__v(\d+)$")
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s",
                (schema, f"{name}\\_\\_v%"))
    return [row[0] for row in cur.fetchall() if pattern.match(row[0])]

