"""Reference data: the category tree and the point-in-time item catalogue, from the source files."""


import dagster as dg
import pandas as pd

from clickrec_platform.defs import checks
from clickrec_platform.defs.resources import LakeResource, SparkResource
from clickrec_platform.lake.tables import SILVER_CATEGORIES, SILVER_ITEMS
from clickrec_platform.lake.writes import from_pandas, overwrite
from clickrec_platform.reference.categories import category_hierarchy
from clickrec_platform.reference.items import item_versions
from clickrec_platform.reference.load import read_catalogue_log, read_categories

CATEGORIES_KEY = ["delta", "silver", "categories"]
ITEMS_KEY = ["delta", "silver", "items"]


@dg.asset(
    key=CATEGORIES_KEY, group_name="reference", kinds={"delta", "spark"},
    description="The category tree (category_tree.csv) with each category's root, depth and path.",
    check_specs=[
        checks.spec(CATEGORIES_KEY, "unique_category_id", "One row per category id."),
        checks.spec(CATEGORIES_KEY, "tree_is_sound",
                    "Every category reaches a root: no parent cycles, no unknown parents.", blocking=True),
    ],
)
def categories(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    source = read_categories(settings)
    tree = category_hierarchy(source.frame)
    version = overwrite(_to_spark(spark, tree), SILVER_CATEGORIES.path(settings),
                        description=f"from {source.files[0]}")
    broken = tree[tree["problem"].notna()]
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(len(tree)), "delta_version": version,
        "roots": int((tree["depth"] == 0).sum()), "max_depth": int(tree["depth"].max()),
        "source": str(source.files[0]), "rejected_rows": _rejected(source.rejects),
        "rejects_file": str(source.rejects_path),
        "preview": dg.MetadataValue.md(tree.head(10).to_markdown(index=False)),
    })
    yield checks.result("unique_category_id", not tree["category_id"].duplicated().any(),
                        duplicates=int(tree["category_id"].duplicated().sum()))
    yield checks.result("tree_is_sound", broken.empty, broken_categories=len(broken),
                        by_problem=broken["problem"].value_counts().to_dict(),
                        examples=broken.head(10)["category_id"].tolist())


@dg.asset(
    key=ITEMS_KEY, group_name="reference", kinds={"delta", "spark"},
    description="The catalogue as versions in time (SCD type 2): category, price (property 790) and "
                "availability, each valid from valid_from until valid_to, from the item-properties change "
                "log. Join on the event's time for point-in-time correct features.",
    check_specs=[
        checks.spec(ITEMS_KEY, "unique_item_version", "One row per (item_id, valid_from); no null keys.",
                    blocking=True),
        checks.spec(ITEMS_KEY, "periods_are_ordered",
                    "valid_from < valid_to, and exactly one current version per item.", blocking=True),
        checks.spec(ITEMS_KEY, "values_in_range", "price ≥ 0; available is 0 or 1."),
    ],
)
def items(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    source = read_catalogue_log(settings)
    versions = item_versions(source.frame)
    version = overwrite(_to_spark(spark, versions), SILVER_ITEMS.path(settings),
                        description=f"from {len(source.files)} item property files")
    keys = versions[["item_id", "valid_from"]]
    current_per_item = versions.groupby("item_id")["is_current"].sum()
    yield dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(len(versions)), "delta_version": version,
        "items": int(versions["item_id"].nunique()), "property_log_rows": len(source.frame),
        "rejected_rows": _rejected(source.rejects), "rejects_file": str(source.rejects_path),
        "preview": dg.MetadataValue.md(versions.head(10).to_markdown(index=False)),
    })
    yield checks.result("unique_item_version", not keys.duplicated().any() and not keys.isna().any().any(),
                        duplicates=int(keys.duplicated().sum()), null_keys=int(keys.isna().any(axis=1).sum()))
    misordered = int((versions["valid_to"].notna() & (versions["valid_to"] <= versions["valid_from"])).sum())
    yield checks.result("periods_are_ordered", misordered == 0 and (current_per_item == 1).all(),
                        misordered_periods=misordered,
                        items_without_one_current_version=int((current_per_item != 1).sum()))
    bad_price = int((versions["price"] < 0).sum())
    bad_available = int((versions["available"].notna() & ~versions["available"].isin([0, 1])).sum())
    yield checks.result("values_in_range", bad_price == 0 and bad_available == 0,
                        negative_prices=bad_price, bad_available=bad_available)


def _to_spark(spark: SparkResource, frame: pd.DataFrame):
    return from_pandas(spark.get_session(), frame)


def _rejected(rejects: dict[str, dict]) -> int:
    return int(sum(tally["rejected"] for tally in rejects.values()))
