"""The champion's output tables: top-N for active visitors, similar items, popular items.

The champion's configuration is refitted on every split (train + validation + test): selection
used the held-out data, serving should not ignore it. Only visitors active in the last
`active_days` are scored ahead of time (the API serves everyone else on the fly, from popular and
session-based answers), in batches, so a million visitors stay practical on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from clickrec_platform.lake.quality import Verdict
from clickrec_platform.recommend.candidates import build_model
from clickrec_platform.recommend.data import InteractionData
from clickrec_platform.recommend.models import ItemKNN, Recommender

ALL_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Champion:
    name: str
    params: dict[str, str]
    version: str
    run_id: str


def serving_tables(splits: pd.DataFrame, items: pd.DataFrame | None, champion: Champion, *, top_n: int,
                   similar_n: int, active_days: float, popular_window_days: int, generated_at: datetime
                   ) -> dict[str, pd.DataFrame]:
    data = InteractionData.from_splits(splits, train_splits=ALL_SPLITS, items=items)
    model = build_model(champion.name, champion.params).fit(data)
    lineage = {"model_name": champion.name, "model_version": champion.version, "run_id": champion.run_id,
               "generated_at": pd.Timestamp(generated_at).tz_convert("UTC")}
    return {
        "user_recommendations": user_recommendations(model, data, splits, top_n, active_days).assign(**lineage),
        "similar_items": similar_items(model, data, similar_n).assign(**lineage),
        "popular_items": popular_items(splits, items, top_n, popular_window_days).assign(
            **{k: v for k, v in lineage.items() if k != "model_name"}),
    }


def active_visitors(splits: pd.DataFrame, active_days: float) -> np.ndarray:
    last_seen = pd.to_datetime(splits["last_ts"], utc=True).groupby(splits["visitor_id"]).max()
    return np.sort(last_seen.index[last_seen >= last_seen.max() - pd.Timedelta(days=active_days)].to_numpy())


def user_recommendations(model: Recommender, data: InteractionData, splits: pd.DataFrame, top_n: int,
                         active_days: float) -> pd.DataFrame:
    visitors = active_visitors(splits, active_days)
    item_index, scores = model.recommend(data.user_index(visitors), k=top_n, exclude_seen=True)
    return _ranked(visitors, item_index, scores, data.item_ids, ("visitor_id", "item_id"))


def similar_items(model: Recommender, data: InteractionData, top_n: int) -> pd.DataFrame:
    """Top-N similar items for every item someone interacted with; a model without a notion of
    item similarity (popularity) hands over to item-kNN (cosine) on the same data."""
    touched = np.flatnonzero(np.diff(data.user_items.tocsc().indptr) > 0)
    try:
        item_index, scores = model.similar_items(touched, k=top_n)
    except NotImplementedError:
        item_index, scores = ItemKNN("cosine").fit(data).similar_items(touched, k=top_n)
    return _ranked(data.item_ids[touched], item_index, scores, data.item_ids, ("item_id", "similar_item_id"))


def popular_items(splits: pd.DataFrame, items: pd.DataFrame | None, top_n: int, window_days: int
                  ) -> pd.DataFrame:
    """Top-N by interaction weight over the last `window_days`: overall, and per category."""
    last_ts = pd.to_datetime(splits["last_ts"], utc=True)
    recent = splits[last_ts >= last_ts.max() - pd.Timedelta(days=window_days)]
    weight = recent.groupby("item_id")["weight"].sum().rename("score").reset_index()
    overall = weight.nlargest(top_n, "score").assign(scope="overall", category_id=pd.NA)
    frames = [overall]
    if items is not None:
        by_category = weight.merge(items[["item_id", "category_id"]].dropna(), on="item_id")
        by_category = by_category.sort_values(["category_id", "score", "item_id"], ascending=[True, False, True])
        frames.append(by_category.groupby("category_id").head(top_n).assign(scope="category"))
    table = pd.concat(frames, ignore_index=True)
    table["rank"] = table.groupby(["scope", "category_id"], dropna=False)["score"].rank(
        method="first", ascending=False).astype("int32")
    table["category_id"] = table["category_id"].astype("Int64")
    table["window_days"] = np.int32(window_days)
    return table[["scope", "category_id", "item_id", "rank", "score", "window_days"]]


def _ranked(keys: np.ndarray, item_index: np.ndarray, scores: np.ndarray, item_ids: np.ndarray,
            columns: tuple[str, str]) -> pd.DataFrame:
    n, k = item_index.shape
    valid = item_index >= 0
    return pd.DataFrame({
        columns[0]: np.repeat(keys, k)[valid.ravel()],
        columns[1]: item_ids[item_index[valid]],
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[valid.ravel()],
        "score": scores[valid].astype(np.float64),
    })


def judge_serving_tables(recommendations: pd.DataFrame, similar: pd.DataFrame, popular: pd.DataFrame
                         ) -> dict[str, Verdict]:
    """Each output table's ``well_formed`` verdict, by table name."""
    bad = {"duplicate_ranks": int(recommendations.duplicated(["visitor_id", "rank"]).sum()),
           "duplicate_items": int(recommendations.duplicated(["visitor_id", "item_id"]).sum()),
           "ranks_below_1": int((recommendations["rank"] < 1).sum()),
           "missing_version": int(recommendations["model_version"].isna().sum())}
    similar_bad = {"duplicate_ranks": int(similar.duplicated(["item_id", "rank"]).sum()),
                   "self_similar": int((similar["item_id"] == similar["similar_item_id"]).sum())}
    duplicates = int(popular.duplicated(["scope", "category_id", "rank"]).sum())
    overall = int((popular["scope"] == "overall").sum())
    return {
        "user_recommendations": Verdict("well_formed", not any(bad.values()) and len(recommendations) > 0,
                                        {**bad, "visitors": int(recommendations["visitor_id"].nunique())}),
        "similar_items": Verdict("well_formed", not any(similar_bad.values()), similar_bad),
        "popular_items": Verdict("well_formed", duplicates == 0 and overall > 0,
                                 {"duplicate_ranks": duplicates, "overall_rows": overall}),
    }
