"""The gold tables published from the lake to PostgreSQL: their Postgres shape, and how each is read
from its Delta table(s) with DuckDB.

Model tables (user_recommendations, similar_items, popular_items) carry the model version and the
MLflow run id on every row, as the models write them. Feature tables (user_stats from
gold.user_features, items from gold.item_features) carry ``source_version``: the Delta version of
the feature table they were published from.

RetailRocket items have no names (their properties are hashed), so ``items.title`` is made from what
is known ("Item 123 · category 45 (root 12) · price band 3/5") and the full-text document from the
item id (weight A), the ids along its category path from the root (B) and its availability (C):
``/search?q=1338`` finds item 1338 first, then the items anywhere under category 1338.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import psycopg
import pyarrow as pa

from clickrec_platform.lake import duck
from clickrec_platform.lake.table_versions import latest_version
from clickrec_platform.lake.tables import table_path
from clickrec_platform.serving.live_ddl import ensure_live_tables
from clickrec_platform.serving.publish import (
    Column,
    Index,
    PublishedTable,
    ensure_publish_log,
    ensure_published,
)
from clickrec_platform.serving.roles import ensure_reader_role, grant_schema_to_reader
from clickrec_platform.settings import Settings

TS = pa.timestamp("us", tz="UTC")
_ROWS_PER_BATCH = 65_536

_MODEL_PROVENANCE = (
    Column("model_name", "text", pa.string(), comment="Model that produced the row (e.g. als, item_knn)."),
    Column("model_version", "text", pa.string(), required=True,
           comment="Registry version of the model (the champion when published)."),
    Column("run_id", "text", pa.string(), required=True, comment="MLflow run that trained the model."),
    Column("generated_at", "timestamptz", TS, comment="When the model wrote the row."),
)

USER_RECOMMENDATIONS = PublishedTable(
    "user_recommendations",
    columns=(
        Column("visitor_id", "bigint", pa.int64(), required=True, comment="RetailRocket visitor id."),
        Column("item_id", "bigint", pa.int64(), required=True, comment="Recommended item."),
        Column("rank", "integer", pa.int32(), required=True, comment="1 = best."),
        Column("score", "double precision", pa.float64(), comment="Model score (higher is better)."),
        *_MODEL_PROVENANCE,
    ),
    primary_key=("visitor_id", "rank"),
    provenance=("model_name", "model_version", "run_id"),
    comment="The champion model's top-N items per visitor, from the lake's gold.user_recommendations.",
)
SIMILAR_ITEMS = PublishedTable(
    "similar_items",
    columns=(
        Column("item_id", "bigint", pa.int64(), required=True, comment="The item."),
        Column("similar_item_id", "bigint", pa.int64(), required=True, comment="A similar item."),
        Column("rank", "integer", pa.int32(), required=True, comment="1 = most similar."),
        Column("score", "double precision", pa.float64(), comment="Similarity (higher is closer)."),
        *_MODEL_PROVENANCE,
    ),
    primary_key=("item_id", "rank"),
    provenance=("model_name", "model_version", "run_id"),
    comment="Nearest items per item, from the lake's gold.similar_items.",
)
POPULAR_ITEMS = PublishedTable(
    "popular_items",
    columns=(
        Column("scope", "text", pa.string(), required=True, comment="'overall' or 'category'."),
        Column("category_id", "bigint", pa.int64(), comment="The category (scope 'category'); null overall."),
        Column("item_id", "bigint", pa.int64(), required=True, comment="The item."),
        Column("rank", "integer", pa.int32(), required=True, comment="1 = most popular in its scope."),
        Column("score", "double precision", pa.float64(), comment="Popularity score."),
        Column("window_days", "integer", pa.int32(), required=True, comment="Days of events counted."),
        *_MODEL_PROVENANCE[1:],
    ),
    # No primary key: category_id is null for 'overall' (the publish asset checks uniqueness).
    indexes=(Index("scope_idx", "(scope, category_id, window_days, rank)"),),
    provenance=("model_version", "run_id"),
    comment="Most popular items overall and per category, from the lake's gold.popular_items.",
)
USER_STATS = PublishedTable(
    "user_stats",
    columns=(
        Column("visitor_id", "bigint", pa.int64(), required=True, comment="RetailRocket visitor id."),
        *(Column(name, "bigint", pa.int64(), comment=f"Number of {name}.")
          for name in ("views", "addtocarts", "likes", "transactions", "searches", "events")),
        Column("first_seen", "timestamptz", TS, comment="First event."),
        Column("last_seen", "timestamptz", TS, comment="Latest event."),
        Column("active_days", "bigint", pa.int64(), comment="Distinct days with events."),
        Column("sessions", "bigint", pa.int64(), comment="Sessions (session ids, or 30 idle minutes)."),
        Column("hour_profile", "double precision[]", pa.list_(pa.float64()),
               comment="Share of events per hour of day (24 values, UTC)."),
        Column("weekday_profile", "double precision[]", pa.list_(pa.float64()),
               comment="Share of events per weekday (7 values, Monday first)."),
        Column("recency_days", "double precision", pa.float64(), comment="Days since the latest event."),
        Column("events_per_active_day", "double precision", pa.float64()),
        Column("view_to_cart_rate", "double precision", pa.float64()),
        Column("view_to_purchase_rate", "double precision", pa.float64()),
        Column("cart_to_purchase_rate", "double precision", pa.float64()),
        Column("top_categories", "bigint[]", pa.list_(pa.int64()), comment="Top 3 categories by weight."),
        Column("source_version", "bigint", pa.int64(), required=True,
               comment="Delta version of the lake's gold.user_features these rows were published from."),
    ),
    primary_key=("visitor_id",),
    provenance=("source_version",),
    comment="Per-visitor behaviour statistics, from the lake's gold.user_features.",
)
ITEMS = PublishedTable(
    "items",
    columns=(
        Column("item_id", "bigint", pa.int64(), required=True, comment="RetailRocket item id."),
        Column("title", "text", pa.string(), required=True,
               comment="A display title made from what is known (items have no names in RetailRocket)."),
        Column("category_id", "bigint", pa.int64(), comment="Current category."),
        Column("root_category_id", "bigint", pa.int64(), comment="Root of the category's tree."),
        Column("category_path", "bigint[]", pa.list_(pa.int64()),
               comment="Category ids from the root down to the item's category."),
        Column("category_terms", "text", pa.string(), comment="The category path as words, for search."),
        Column("price", "double precision", pa.float64(), comment="Current price (property 790)."),
        Column("price_band", "integer", pa.int32(), comment="Price quintile, 1 cheapest … 5."),
        Column("available", "boolean", pa.bool_(), comment="Currently available."),
        *(Column(name, "bigint", pa.int64()) for name in ("views", "addtocarts", "likes", "transactions")),
        Column("weight", "double precision", pa.float64(), comment="Interaction weight, all time."),
        Column("unique_visitors", "bigint", pa.int64()),
        *(Column(f"{kind}_{days}d", sql_type, arrow, comment=f"{kind.capitalize()} over the last {days} days.")
          for days in (1, 7, 30)
          for kind, sql_type, arrow in (("views", "bigint", pa.int64()), ("weight", "double precision", pa.float64()))),
        Column("conversion_rate", "double precision", pa.float64(), comment="Transactions per view."),
        Column("cart_rate", "double precision", pa.float64(), comment="Add-to-carts per view."),
        Column("source_version", "bigint", pa.int64(), required=True,
               comment="Delta version of the lake's gold.item_features these rows were published from."),
    ),
    generated=(("search_document",
                "tsvector GENERATED ALWAYS AS ("
                "setweight(to_tsvector('simple', item_id::text), 'A') || "
                "setweight(to_tsvector('simple', coalesce(category_terms, '')), 'B') || "
                "setweight(to_tsvector('simple', CASE WHEN available THEN 'available' "
                "WHEN NOT available THEN 'unavailable' ELSE '' END), 'C')) STORED",
                "Full-text document (config 'simple'): item id (A), category path ids (B), availability (C)."),),
    primary_key=("item_id",),
    indexes=(Index("search_idx", "USING gin (search_document)"),
             Index("category_path_idx", "USING gin (category_path)")),
    provenance=("source_version",),
    comment="The item catalogue with popularity, price and availability, from the lake's gold.item_features "
            "and silver.categories; full-text search over search_document.",
)

PUBLISHED_TABLES = (USER_RECOMMENDATIONS, SIMILAR_ITEMS, POPULAR_ITEMS, USER_STATS, ITEMS)


@dataclass(frozen=True)
class GoldSource:
    """A Delta table (with the tables it joins) as Arrow batches, and where it came from."""

    batches: pa.RecordBatchReader
    path: str
    delta_version: int
    source_rows: int
    notes: list[str] = field(default_factory=list)  # what could not be read as intended

    @property
    def description(self) -> str:
        return f"{self.path}@v{self.delta_version}"


class SourceMissing(LookupError):
    """The Delta table a published table comes from has not been written yet."""


# Lake table that each published table comes from (layer, name), and the ones it joins.
SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "user_recommendations": (("gold", "user_recommendations"),),
    "similar_items": (("gold", "similar_items"),),
    "popular_items": (("gold", "popular_items"),),
    "user_stats": (("gold", "user_features"),),
    "items": (("gold", "item_features"), ("silver", "categories")),
}


def source_query(name: str, paths: list[str], version: int) -> str:
    """DuckDB SQL reading a published table's rows from its Delta table(s), in primary-key order
    (rows of one visitor or item land together on disk, so the API reads a page or two per request)."""
    main = duck.scan(paths[0])
    if name == "user_recommendations":
        return f"SELECT * FROM {main} ORDER BY visitor_id, rank"
    if name == "similar_items":
        return f"SELECT * FROM {main} ORDER BY item_id, rank"
    if name == "popular_items":
        return f"SELECT * FROM {main} ORDER BY scope, category_id, window_days, rank"
    if name == "user_stats":
        return f"SELECT *, {int(version)}::BIGINT AS source_version FROM {main} ORDER BY visitor_id"
    if name == "items":
        # The path from silver.categories; where it is unknown (an item whose category is not in the
        # tree, or no readable tree), what item_features knows: the root and the category itself.
        tree = (f"SELECT category_id, string_split(path, '/')::BIGINT[] AS tree_path FROM {duck.scan(paths[1])}"
                if len(paths) > 1 else "SELECT NULL::BIGINT AS category_id, NULL::BIGINT[] AS tree_path LIMIT 0")
        return f"""
            WITH f AS (SELECT * FROM {main}), c AS ({tree}),
            p AS (
                SELECT f.*, coalesce(c.tree_path, CASE
                    WHEN f.category_id IS NULL THEN NULL
                    WHEN f.root_category_id IS NULL OR f.root_category_id = f.category_id THEN [f.category_id]
                    ELSE [f.root_category_id, f.category_id] END) AS category_path
                FROM f LEFT JOIN c USING (category_id))
            SELECT p.*, array_to_string(p.category_path, ' ') AS category_terms,
                   'Item ' || p.item_id
                     || coalesce(' · category ' || p.category_id, '')
                     || coalesce(' (root ' || p.root_category_id || ')', '')
                     || coalesce(' · price band ' || p.price_band || '/5', '') AS title,
                   {int(version)}::BIGINT AS source_version
            FROM p
            ORDER BY p.item_id"""
    raise ValueError(f"no source for published table {name!r}")


@contextmanager
def open_source(settings: Settings, name: str) -> Iterator[GoldSource]:
    """The rows to publish as ``name``, streamed from the lake; ``SourceMissing`` when a Delta table
    it needs was never written."""
    paths = [table_path(settings, layer, table) for layer, table in SOURCES[name]]
    versions = [latest_version(path, settings) for path in paths]
    missing = [path for path, version in zip(paths, versions, strict=True) if version is None]
    if missing:
        raise SourceMissing(f"{name}: no Delta table at {', '.join(missing)} yet")
    version = versions[0]
    assert version is not None  # none is missing
    con = duck.connect(settings)
    try:
        notes = []
        for extra in paths[1:]:
            try:
                con.execute(f"SELECT * FROM {duck.scan(extra)} LIMIT 0")
            except duckdb.Error as exc:  # e.g. a column of type void, which DuckDB's Delta reader rejects
                paths.remove(extra)
                notes.append(f"{extra} unreadable by DuckDB, joined without it ({str(exc).splitlines()[0][:200]})")
        counted = con.execute(f"SELECT count(*) FROM {duck.scan(paths[0])}").fetchone()
        assert counted is not None  # a count has one row
        (rows,) = counted
        reader = con.execute(source_query(name, paths, version)).fetch_record_batch(_ROWS_PER_BATCH)
        yield GoldSource(reader, paths[0], version, rows, notes)
    finally:
        con.close()


def prepare_gold_schema(conn: psycopg.Connection, settings: Settings) -> None:
    """Everything readers expect, created where missing (idempotent): the read-only role, the live
    tables the stream job writes, the publish log, an empty first version of each published table
    never published, and the reader's grants."""
    schema, role = settings.gold_schema, settings.reader_role
    ensure_reader_role(conn, settings)
    ensure_live_tables(conn, schema)
    ensure_publish_log(conn, schema)
    for spec in PUBLISHED_TABLES:
        ensure_published(conn, spec, schema=schema, reader_role=role)
    grant_schema_to_reader(conn, schema, role)
