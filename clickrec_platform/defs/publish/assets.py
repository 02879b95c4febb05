"""Publish gold tables from the lake to PostgreSQL, atomically, for the API and SQL consumers.

One asset per table (``postgres/gold/<table>``): it streams the Delta table(s) through DuckDB into a
new version of the Postgres table and switches the view to it in one transaction
(``clickrec_platform/serving/publish.py``). The model tables come from the models' Delta tables;
``user_stats`` and ``items`` from the feature tables.
"""


import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from clickrec_platform.defs import checks
from clickrec_platform.defs.features.assets import ITEM_FEATURES_KEY, USER_FEATURES_KEY
from clickrec_platform.defs.reference.assets import CATEGORIES_KEY
from clickrec_platform.defs.resources import LakeResource, PostgresResource
from clickrec_platform.defs.training.assets import (
    POPULAR_ITEMS_KEY,
    SIMILAR_ITEMS_KEY,
    USER_RECOMMENDATIONS_KEY,
)
from clickrec_platform.serving.gold_tables import (
    POPULAR_ITEMS,
    PUBLISHED_TABLES,
    SourceMissing,
    open_source,
    prepare_gold_schema,
)
from clickrec_platform.serving.publish import PublishedTable, PublishResult, publish

# What each published table is made from (asset keys of the Delta tables).
SOURCE_KEYS: dict[str, list[list[str]]] = {
    "user_recommendations": [USER_RECOMMENDATIONS_KEY],
    "similar_items": [SIMILAR_ITEMS_KEY],
    "popular_items": [POPULAR_ITEMS_KEY],
    "user_stats": [USER_FEATURES_KEY],
    "items": [ITEM_FEATURES_KEY, CATEGORIES_KEY],
}


# A publish rides out a short Postgres outage (a restart, a failover, a crash and its recovery): the step
# runs again after 10, 20, 40 and 80 s. The publish is one transaction, so a failed attempt left the live
# version as it was and the next one starts from scratch. Failures that would only repeat (the source is
# missing, the rows break the table's rules) are raised with `allow_retries=False` and fail at once.
PUBLISH_RETRY_POLICY = dg.RetryPolicy(max_retries=4, delay=10, backoff=dg.Backoff.EXPONENTIAL)


def publish_key(name: str) -> list[str]:
    return ["postgres", "gold", name]


def _preview(conn: psycopg.Connection, schema: str, name: str, rows: int = 10) -> dg.MetadataValue:
    cur = conn.execute(sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(schema, name)), (rows,))
    assert cur.description is not None  # a query that returns rows describes them
    frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    return dg.MetadataValue.md(frame.drop(columns=["search_document"], errors="ignore").to_markdown(index=False))


def _duplicate_popular_ranks(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """(duplicated (scope, category, window, rank) keys, rows whose scope and category_id disagree)."""
    view = sql.Identifier(schema, POPULAR_ITEMS.name)
    duplicates = conn.execute(sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {} GROUP BY scope, category_id, window_days, rank "
        "HAVING count(*) > 1) AS d").format(view)).fetchone()
    inconsistent = conn.execute(sql.SQL(
        "SELECT count(*) FROM {} WHERE scope NOT IN ('overall', 'category') "
        "OR (scope = 'overall') <> (category_id IS NULL)").format(view)).fetchone()
    assert duplicates is not None and inconsistent is not None  # a count has one row
    return duplicates[0], inconsistent[0]


def build_publish_asset(spec: PublishedTable) -> dg.AssetsDefinition:
    key = publish_key(spec.name)
    provenance = ", ".join(spec.provenance)
    check_specs = [
        checks.spec(key, "rows_match_source", "The published version holds as many rows as the Delta table."),
        checks.spec(key, "single_provenance",
                    f"Every row carries its provenance ({provenance}), and all rows share one."),
    ]
    if spec is POPULAR_ITEMS:
        check_specs.append(checks.spec(key, "unique_ranks",
                                       "One item per (scope, category, window, rank); category null exactly "
                                       "for scope 'overall'."))

    @dg.asset(
        key=key, deps=[dg.AssetKey(source) for source in SOURCE_KEYS[spec.name]], group_name="publish",
        kinds={"postgres", "duckdb"}, check_specs=check_specs, retry_policy=PUBLISH_RETRY_POLICY,
        description=f"{spec.comment} Loaded by COPY into a new version, indexed, and swapped in atomically "
                    f"behind the view gold.{spec.name}; rows carry {provenance}.",
    )
    def publish_table(context: dg.AssetExecutionContext, postgres: PostgresResource, lake: LakeResource):
        settings = postgres.settings()
        schema = settings.gold_schema
        try:
            with open_source(lake.settings(), spec.name) as source, postgres.connect() as conn:
                prepare_gold_schema(conn, settings)
                result: PublishResult = publish(
                    conn, spec, source.batches, schema=schema, source=source.description,
                    reader_role=settings.reader_role, keep_versions=settings.publish_keep_versions)
                preview = _preview(conn, schema, spec.name)
                popular_problems = _duplicate_popular_ranks(conn, schema) if spec is POPULAR_ITEMS else None
        except SourceMissing as exc:
            raise dg.Failure(description=str(exc), allow_retries=False, metadata={
                "hint": "materialise the upstream asset(s) first: "
                        + ", ".join("/".join(k) for k in SOURCE_KEYS[spec.name])}) from exc
        except ValueError as exc:  # rows the table refuses (nulls in a required column, duplicate keys, types)
            raise dg.Failure(description=str(exc), allow_retries=False,
                             metadata={"hint": "nothing was published: the live version is unchanged"}) from exc
        for note in source.notes:
            context.log.warning(note)
        context.log.info(f"published {schema}.{spec.name} v{result.version}: {result.rows:,} rows from "
                         f"{source.description} in {sum(result.seconds.values()):.1f}s")
        yield dg.MaterializeResult(metadata={
            "row_count": dg.MetadataValue.int(result.rows), "source": source.description,
            **result.as_metadata(), **({"warnings": "; ".join(source.notes)} if source.notes else {}),
            "preview": preview})
        yield checks.result("rows_match_source", result.rows == source.source_rows,
                            published_rows=result.rows, source_rows=source.source_rows)
        yield checks.result("single_provenance", all(len(v) == 1 for v in result.provenance.values()),
                            warn_only=True, **{k: ", ".join(v) for k, v in result.provenance.items()})
        if popular_problems is not None:
            duplicates, inconsistent = popular_problems
            yield checks.result("unique_ranks", duplicates == 0 and inconsistent == 0,
                                duplicate_keys=duplicates, scope_category_mismatches=inconsistent)

    return publish_table


PUBLISH_ASSETS = [build_publish_asset(spec) for spec in PUBLISHED_TABLES]


@dg.definitions
def publish_definitions() -> dg.Definitions:
    return dg.Definitions(assets=PUBLISH_ASSETS)
