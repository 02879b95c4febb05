"""The reference tables' asset checks: each reads its table from the lake (DuckDB) and judges it
(``reference/quality.py``). Blocking ones stop what depends on the table."""

import dagster as dg
import pandas as pd

from clickrec_platform.defs import checks
from clickrec_platform.defs.reference.assets import CATEGORIES_KEY, ITEMS_KEY
from clickrec_platform.defs.resources import LakeResource
from clickrec_platform.lake import duck
from clickrec_platform.lake.tables import SILVER_CATEGORIES, SILVER_ITEMS, LakeTable
from clickrec_platform.reference.quality import judge_categories, judge_items


def _read(lake: LakeResource, table: LakeTable, columns: str) -> pd.DataFrame:
    settings = lake.settings()
    with duck.connect(settings) as con:
        return con.execute(f"SELECT {columns} FROM {duck.scan(table.path(settings))}").df()


@dg.multi_asset_check(
    specs=[
        checks.spec(CATEGORIES_KEY, "unique_category_id", "One row per category id."),
        checks.spec(CATEGORIES_KEY, "tree_is_sound",
                    "Every category reaches a root: no parent cycles, no unknown parents.", blocking=True),
    ],
    can_subset=True, name="categories_checks",
)
def categories_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    tree = _read(lake, SILVER_CATEGORIES, "category_id, problem")
    yield from checks.selected(context, CATEGORIES_KEY, judge_categories(tree))


@dg.multi_asset_check(
    specs=[
        checks.spec(ITEMS_KEY, "unique_item_version", "One row per (item_id, valid_from); no null keys.",
                    blocking=True),
        checks.spec(ITEMS_KEY, "periods_are_ordered",
                    "valid_from < valid_to, and exactly one current version per item.", blocking=True),
        checks.spec(ITEMS_KEY, "values_in_range", "price ≥ 0; available is 0 or 1."),
    ],
    can_subset=True, name="items_checks",
)
def items_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    versions = _read(lake, SILVER_ITEMS, "item_id, valid_from, valid_to, is_current, price, available")
    yield from checks.selected(context, ITEMS_KEY, judge_items(versions))
