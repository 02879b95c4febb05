"""How the reference tables' asset checks judge them: pure functions of the tables as pandas frames."""

from __future__ import annotations

import pandas as pd

from clickrec_platform.lake.quality import Verdict


def judge_categories(tree: pd.DataFrame) -> list[Verdict]:
    """``tree``: silver.categories (``category_hierarchy``'s frame, ``problem`` naming a broken row)."""
    duplicated = tree["category_id"].duplicated()
    broken = tree[tree["problem"].notna()]
    return [
        Verdict("unique_category_id", not duplicated.any(), {"duplicates": int(duplicated.sum())}),
        Verdict("tree_is_sound", broken.empty,
                {"broken_categories": len(broken),
                 "by_problem": {str(k): int(v) for k, v in broken["problem"].value_counts().items()},
                 "examples": [int(c) for c in broken.head(10)["category_id"]]}),
    ]


def judge_items(versions: pd.DataFrame) -> list[Verdict]:
    """``versions``: silver.items (``item_versions``' frame: one row per item and validity period)."""
    keys = versions[["item_id", "valid_from"]]
    current_per_item = versions.groupby("item_id")["is_current"].sum()
    misordered = int((versions["valid_to"].notna() & (versions["valid_to"] <= versions["valid_from"])).sum())
    bad_price = int((versions["price"] < 0).sum())
    bad_available = int((versions["available"].notna() & ~versions["available"].isin([0, 1])).sum())
    return [
        Verdict("unique_item_version", not keys.duplicated().any() and not keys.isna().any().any(),
                {"duplicates": int(keys.duplicated().sum()), "null_keys": int(keys.isna().any(axis=1).sum())}),
        Verdict("periods_are_ordered", misordered == 0 and bool((current_per_item == 1).all()),
                {"misordered_periods": misordered,
                 "items_without_one_current_version": int((current_per_item != 1).sum())}),
        Verdict("values_in_range", bad_price == 0 and bad_available == 0,
                {"negative_prices": bad_price, "bad_available": bad_available}),
    ]
