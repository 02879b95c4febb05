"""The champion's output tables' asset checks: each table read back from the lake and judged
(``recommend/outputs.judge_serving_tables``). Blocking: publishing waits for them.

The candidates' and the champion's checks stay with their asset (``assets.py``): they judge what that
training run did (its control, its runs on the tracking server, the gate's decision)."""

import dagster as dg

from clickrec_platform.defs import checks
from clickrec_platform.defs.resources import LakeResource
from clickrec_platform.defs.training.assets import (
    POPULAR_ITEMS_KEY,
    SIMILAR_ITEMS_KEY,
    USER_RECOMMENDATIONS_KEY,
)
from clickrec_platform.lake import duck
from clickrec_platform.lake.tables import GOLD_POPULAR_ITEMS, GOLD_SIMILAR_ITEMS, GOLD_USER_RECOMMENDATIONS
from clickrec_platform.recommend.outputs import judge_serving_tables

TABLES = {"user_recommendations": (USER_RECOMMENDATIONS_KEY, GOLD_USER_RECOMMENDATIONS,
                                   "visitor_id, item_id, rank, model_version"),
          "similar_items": (SIMILAR_ITEMS_KEY, GOLD_SIMILAR_ITEMS, "item_id, similar_item_id, rank"),
          "popular_items": (POPULAR_ITEMS_KEY, GOLD_POPULAR_ITEMS, "scope, category_id, rank")}


@dg.multi_asset_check(
    specs=[
        checks.spec(USER_RECOMMENDATIONS_KEY, "well_formed",
                    "Unique (visitor, rank) and (visitor, item); ranks from 1; every row has its model version.",
                    blocking=True),
        checks.spec(SIMILAR_ITEMS_KEY, "well_formed", "Unique (item, rank); no item similar to itself.",
                    blocking=True),
        checks.spec(POPULAR_ITEMS_KEY, "well_formed", "Unique (scope, category, rank) and a non-empty overall list.",
                    blocking=True),
    ],
    can_subset=True, name="recommendation_tables_checks",
)
def recommendation_tables_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    settings = lake.settings()
    with duck.connect(settings) as con:
        frames = {name: con.execute(f"SELECT {columns} FROM {duck.scan(table.path(settings))}").df()
                  for name, (_, table, columns) in TABLES.items()}
    verdicts = judge_serving_tables(frames["user_recommendations"], frames["similar_items"], frames["popular_items"])
    for name, verdict in verdicts.items():
        yield from checks.selected(context, TABLES[name][0], [verdict])
