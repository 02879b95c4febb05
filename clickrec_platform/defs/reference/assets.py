"""Reference data: the category tree and the point-in-time item catalogue, from the source files (their checks:
``checks.py`` beside this module)."""


import dagster as dg
import pandas as pd

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
)
def categories(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    source = read_categories(settings)
    tree = category_hierarchy(source.frame)
    version = overwrite(_to_spark(spark, tree), SILVER_CATEGORIES.path(settings),
                        description=f"from {source.files[0]}")
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(len(tree)), "delta_version": version,
        "roots": int((tree["depth"] == 0).sum()), "max_depth": int(tree["depth"].max()),
        "source": str(source.files[0]), "rejected_rows": _rejected(source.rejects),
        "rejects_file": str(source.rejects_path),
        "preview": dg.MetadataValue.md(tree.head(10).to_markdown(index=False)),
    })


@dg.asset(
    key=ITEMS_KEY, group_name="reference", kinds={"delta", "spark"},
    description="The catalogue as versions in time (SCD type 2): category, price (property 790) and "
                "availability, each valid from valid_from until valid_to, from the item-properties change "
                "log. Join on the event's time for point-in-time correct features.",
)
def items(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    source = read_catalogue_log(settings)
    versions = item_versions(source.frame)
    version = overwrite(_to_spark(spark, versions), SILVER_ITEMS.path(settings),
                        description=f"from {len(source.files)} item property files")
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(len(versions)), "delta_version": version,
        "items": int(versions["item_id"].nunique()), "property_log_rows": len(source.frame),
        "rejected_rows": _rejected(source.rejects), "rejects_file": str(source.rejects_path),
        "preview": dg.MetadataValue.md(versions.head(10).to_markdown(index=False)),
    })


def _to_spark(spark: SparkResource, frame: pd.DataFrame):
    return from_pandas(spark.get_session(), frame)


def _rejected(rejects: dict[str, dict]) -> int:
    return int(sum(tally["rejected"] for tally in rejects.values()))
