"""One row per item: popularity by event type and over recent windows, conversion, category, price band."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clickrec_platform.features.interactions import COUNT_COLUMNS

RECENT_WINDOWS_DAYS = (1, 7, 30)
PRICE_BANDS = 5  # quintiles of the current catalogue's prices


def item_features(interactions: DataFrame, current_items: DataFrame, categories: DataFrame,
                  as_of_date: Column) -> DataFrame:
    """item_id; views/addtocarts/likes/transactions, weight and unique_visitors over all time;
    views_<n>d and weight_<n>d over the last n event dates up to `as_of_date`; conversion_rate
    (transactions per view) and cart_rate (addtocarts per view), null without views; the current
    catalogue's category_id, root_category_id, price, price_band (1 cheapest … 5) and available.

    Items in the catalogue without interactions are included (popularity 0), and interacted items
    missing from the catalogue too (no category or price).
    """
    counts = list(COUNT_COLUMNS.values())
    age_days = F.datediff(as_of_date, F.col("event_date"))
    recent = []
    for days in RECENT_WINDOWS_DAYS:
        inside = (age_days >= 0) & (age_days < days)
        recent += [F.sum(F.when(inside, F.col("views")).otherwise(0)).alias(f"views_{days}d"),
                   F.sum(F.when(inside, F.col("weight")).otherwise(0.0)).alias(f"weight_{days}d")]
    popularity = (interactions.groupBy("item_id")
                  .agg(*[F.sum(name).alias(name) for name in counts], F.sum("weight").alias("weight"),
                       F.countDistinct("visitor_id").alias("unique_visitors"), *recent))
    catalogue = (current_items.select("item_id", "category_id", "price", "available")
                 .join(categories.select("category_id", F.col("root_id").alias("root_category_id")),
                       "category_id", "left"))
    features = popularity.join(catalogue, "item_id", "full")
    zero_filled: dict[str, bool | float | int | str] = {  # the value type fillna takes
        name: 0 for name in [*counts, "unique_visitors", *[f"views_{d}d" for d in RECENT_WINDOWS_DAYS]]}
    zero_filled.update({name: 0.0 for name in ["weight", *[f"weight_{d}d" for d in RECENT_WINDOWS_DAYS]]})
    features = features.fillna(zero_filled)
    return features.select(
        "item_id", *counts, "weight", "unique_visitors",
        *[f"{kind}_{d}d" for d in RECENT_WINDOWS_DAYS for kind in ("views", "weight")],
        F.when(F.col("views") > 0, F.col("transactions") / F.col("views")).alias("conversion_rate"),
        F.when(F.col("views") > 0, F.col("addtocarts") / F.col("views")).alias("cart_rate"),
        "category_id", "root_category_id", "price",
        price_band(F.col("price"), price_band_edges(current_items)).alias("price_band"),
        "available",
    )


def price_band_edges(current_items: DataFrame) -> list[float]:
    """The inner quantile edges of the catalogue's prices (4 edges make 5 bands)."""
    priced = current_items.where(F.col("price").isNotNull() & ~F.isnan("price"))
    probabilities = [band / PRICE_BANDS for band in range(1, PRICE_BANDS)]
    return priced.approxQuantile("price", probabilities, 0.001) if priced.take(1) else []


def price_band(price: Column, edges: list[float]) -> Column:
    """1 + the number of edges at or below the price; null without a price."""
    band = F.lit(1)
    for edge in edges:
        band = band + F.when(price >= edge, 1).otherwise(0)
    return F.when(price.isNotNull() & ~F.isnan(price), band)
