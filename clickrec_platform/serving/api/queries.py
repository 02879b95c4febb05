"""Every query the API runs: parameterised, against the gold schema, one round trip per answer where
possible, each served by an index (see ``serving/gold_tables.py`` and ``serving/live_ddl.py``).

The SQL is rendered once per schema; connections prepare each statement on first use.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from clickrec_platform.serving.api.blend import (
    SESSION_SEEDS,
    FallbackRow,
    ModelRow,
    Provenance,
    SimilarRow,
)
from clickrec_platform.serving.gold_tables import USER_STATS
from clickrec_platform.serving.publish import PUBLISH_LOG

# The visitor's recent items (newest first), the model's list and the recent items' neighbours,
# as one result: kind, item_id, position (model rank / recency), rank among neighbours (for a recent
# item: when it was last seen, epoch ms), provenance. `seeds` 0 leaves the neighbours out.
_PERSONAL = """
WITH recent AS MATERIALIZED (
    SELECT item_id, row_number() OVER (ORDER BY last_seen_at DESC, item_id DESC) AS pos,
           (extract(epoch FROM last_seen_at) * 1000)::bigint AS seen_ms
    FROM (SELECT item_id, last_seen_at FROM {recent_items}
          WHERE visitor_id = %(visitor)s
          ORDER BY last_seen_at DESC, item_id DESC LIMIT %(seen)s) AS latest
)
SELECT 'model' AS kind, item_id, rank::bigint AS pos, 0::bigint AS sub_rank, model_name, model_version, run_id
FROM (SELECT item_id, rank, model_name, model_version, run_id FROM {recommendations}
      WHERE visitor_id = %(visitor)s ORDER BY rank LIMIT %(model_n)s) AS model
UNION ALL
SELECT 'recent', item_id, pos, seen_ms, NULL, NULL, NULL FROM recent
UNION ALL
SELECT 'similar', s.similar_item_id, r.pos, s.rank, s.model_name, s.model_version, s.run_id
FROM recent AS r CROSS JOIN LATERAL (
    SELECT similar_item_id, rank, model_name, model_version, run_id FROM {similar}
    WHERE item_id = r.item_id ORDER BY rank LIMIT %(per_seed)s) AS s
WHERE r.pos <= %(seeds)s
"""

# The latest trending window's items, then the overall popular list of the shortest window.
_FALLBACK = """
(SELECT 'trending' AS kind, item_id, NULL::text AS model_version, NULL::text AS run_id
 FROM {trending} WHERE window_end = (SELECT max(window_end) FROM {trending})
 ORDER BY rank NULLS LAST, item_id LIMIT %(n)s)
UNION ALL
(SELECT 'popular', item_id, model_version, run_id FROM {popular}
 WHERE scope = 'overall' AND category_id IS NULL
   AND window_days = (SELECT min(window_days) FROM {popular} WHERE scope = 'overall')
 ORDER BY rank LIMIT %(n)s)
"""

_SIMILAR = """
SELECT similar_item_id, rank, score, model_name, model_version, run_id
FROM {similar} WHERE item_id = %(item)s ORDER BY rank LIMIT %(k)s
"""
_ITEM_EXISTS = "SELECT EXISTS (SELECT 1 FROM {items} WHERE item_id = %(item)s)"

# Trending over the windows that ended within `window` before the latest one (sliding windows
# overlap, so an item's score is summed over the windows it was in).
_TRENDING = """
WITH latest AS (SELECT max(window_end) AS end_at FROM {trending})
SELECT t.item_id, sum(t.score) AS score, sum(t.event_count)::bigint AS events, max(latest.end_at) AS as_of
FROM {trending} AS t CROSS JOIN latest
WHERE t.window_end > latest.end_at - %(window)s::interval
GROUP BY t.item_id
ORDER BY score DESC, t.item_id
LIMIT %(limit)s
"""

_POPULAR_OVERALL = """
SELECT item_id, rank, score, window_days, model_version, run_id FROM {popular}
WHERE scope = 'overall' AND category_id IS NULL
  AND window_days = coalesce(%(window_days)s::integer,
                             (SELECT min(window_days) FROM {popular} WHERE scope = 'overall'))
ORDER BY rank LIMIT %(limit)s
"""
_POPULAR_CATEGORY = """
SELECT item_id, rank, score, window_days, model_version, run_id FROM {popular}
WHERE scope = 'category' AND category_id = %(category)s
  AND window_days = coalesce(%(window_days)s::integer,
                             (SELECT min(window_days) FROM {popular}
                              WHERE scope = 'category' AND category_id = %(category)s))
ORDER BY rank LIMIT %(limit)s
"""
# A category the popularity model has no list for: its items by recent interaction weight.
_POPULAR_FROM_CATALOGUE = """
SELECT item_id, weight_30d AS score FROM {items}
WHERE category_path @> ARRAY[%(category)s::bigint]
ORDER BY weight_30d DESC NULLS LAST, item_id LIMIT %(limit)s
"""

_USER_STATS = """
SELECT {columns},
       ARRAY(SELECT item_id FROM {recent_items} WHERE visitor_id = %(visitor)s
             ORDER BY last_seen_at DESC, item_id DESC LIMIT 10) AS recent_items
FROM {user_stats} WHERE visitor_id = %(visitor)s
"""

_SEARCH = """
SELECT item_id, title, category_id, category_path, price, price_band, available, weight_30d,
       ts_rank_cd(search_document, query) AS relevance
FROM {items}, websearch_to_tsquery('simple', %(q)s) AS query
WHERE search_document @@ query
  AND (%(category)s::bigint IS NULL OR category_path @> ARRAY[%(category)s::bigint])
  AND (%(min_price)s::float8 IS NULL OR price >= %(min_price)s::float8)
  AND (%(max_price)s::float8 IS NULL OR price <= %(max_price)s::float8)
  AND (%(available)s::boolean IS NULL OR available = %(available)s::boolean)
ORDER BY relevance DESC, weight_30d DESC NULLS LAST, item_id
LIMIT %(limit)s
"""

_LIVE_VERSIONS = """
SELECT table_name, version, row_count, provenance, published_at FROM {log} WHERE is_live ORDER BY table_name
"""


class GoldQueries:
    """The API's statements for one gold schema."""

    def __init__(self, schema: str) -> None:
        names = {
            "recent_items": "user_recent_items", "recommendations": "user_recommendations",
            "similar": "similar_items", "trending": "trending_items", "popular": "popular_items",
            "items": "items", "user_stats": "user_stats", "log": PUBLISH_LOG,
        }
        tables = {key: sql.Identifier(schema, table) for key, table in names.items()}
        stats_columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in USER_STATS.columns)

        def render(template: str, **extra: sql.Composable) -> str:
            return sql.SQL(template).format(**tables, **extra).as_string()

        self.personal = render(_PERSONAL)
        self.fallback = render(_FALLBACK)
        self.similar = render(_SIMILAR)
        self.item_exists = render(_ITEM_EXISTS)
        self.trending = render(_TRENDING)
        self.popular_overall = render(_POPULAR_OVERALL)
        self.popular_category = render(_POPULAR_CATEGORY)
        self.popular_from_catalogue = render(_POPULAR_FROM_CATALOGUE)
        self.user_stats = render(_USER_STATS, columns=stats_columns)
        self.search = render(_SEARCH)
        self.live_versions = render(_LIVE_VERSIONS)


async def personal_rows(conn: AsyncConnection, q: GoldQueries, visitor: int, k: int, seen_limit: int,
                        neighbours: bool = True
                        ) -> tuple[list[ModelRow], list[int], list[SimilarRow], list[int]]:
    """The model's list, the visitor's recent items (newest first), their neighbours (unless
    `neighbours` is false) and when each recent item was last seen (epoch ms)."""
    cur = await conn.execute(q.personal, {"visitor": visitor, "seen": seen_limit, "model_n": 2 * k + 10,
                                          "per_seed": k, "seeds": SESSION_SEEDS if neighbours else 0})
    model, recent, similar = [], [], []
    provenances: dict[tuple, Provenance] = {}  # a handful of distinct values over dozens of rows
    for kind, item, pos, sub_rank, name, version, run_id in await cur.fetchall():
        if kind == "recent":
            recent.append((pos, item, sub_rank))
            continue
        key = (name, version, run_id)
        provenance = provenances.get(key) or provenances.setdefault(key, Provenance(*key))
        if kind == "model":
            model.append(ModelRow(item, pos, provenance))
        else:
            similar.append(SimilarRow(item, pos, sub_rank, provenance))
    model.sort(key=lambda row: row.rank)
    recent.sort()
    return model, [item for _, item, _ in recent], similar, [seen_ms for _, _, seen_ms in recent]


async def fallback_rows(conn: AsyncConnection, q: GoldQueries, n: int) -> list[FallbackRow]:
    cur = await conn.execute(q.fallback, {"n": n})
    return [FallbackRow(item, kind, None if kind == "trending" else Provenance(None, version, run_id))
            for kind, item, version, run_id in await cur.fetchall()]


async def similar_items(conn: AsyncConnection, q: GoldQueries, item: int, k: int) -> list[dict[str, Any]] | None:
    """The item's neighbours; None when the item is unknown (neither neighbours nor in the catalogue)."""
    cur = conn.cursor(row_factory=dict_row)
    rows = await (await cur.execute(q.similar, {"item": item, "k": k})).fetchall()
    if rows:
        return rows
    exists = await (await conn.execute(q.item_exists, {"item": item})).fetchone()
    assert exists is not None  # SELECT EXISTS (...) has one row
    return [] if exists[0] else None


async def trending(conn: AsyncConnection, q: GoldQueries, window: timedelta, limit: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return await (await cur.execute(q.trending, {"window": window, "limit": limit})).fetchall()


async def popular(conn: AsyncConnection, q: GoldQueries, category: int | None, window_days: int | None,
                  limit: int) -> tuple[str, list[dict[str, Any]]]:
    """(source, rows): the popularity model's list, or for a category it has none for, the catalogue's
    most interacted items of that category (and its subcategories)."""
    cur = conn.cursor(row_factory=dict_row)
    params = {"category": category, "window_days": window_days, "limit": limit}
    if category is None:
        return "popular_items", await (await cur.execute(q.popular_overall, params)).fetchall()
    rows = await (await cur.execute(q.popular_category, params)).fetchall()
    if rows or window_days is not None:
        return "popular_items", rows
    return "catalogue", await (await cur.execute(q.popular_from_catalogue, params)).fetchall()


async def user_stats(conn: AsyncConnection, q: GoldQueries, visitor: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    return await (await cur.execute(q.user_stats, {"visitor": visitor})).fetchone()


async def search(conn: AsyncConnection, q: GoldQueries, text: str, category: int | None,
                 min_price: float | None, max_price: float | None, available: bool | None,
                 limit: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    params = {"q": text, "category": category, "min_price": min_price, "max_price": max_price,
              "available": available, "limit": limit}
    return await (await cur.execute(q.search, params)).fetchall()


async def live_versions(conn: AsyncConnection, q: GoldQueries) -> dict[str, dict[str, Any]]:
    cur = await conn.execute(q.live_versions)
    return {name: {"version": version, "rows": rows, "provenance": provenance, "published_at": published_at}
            for name, version, rows, provenance, published_at in await cur.fetchall()}
