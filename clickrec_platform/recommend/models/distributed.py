"""The model that trains on the Spark cluster: MLlib's implicit ALS, served like `ALS`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares

from clickrec_platform.recommend.data import InteractionData
from clickrec_platform.recommend.models.base import _ImplicitModel


@dataclass(eq=False)
class SparkALS(_ImplicitModel):
    """Implicit ALS trained by Spark MLlib, the option that scales out with the cluster.

    Training runs in Spark; the learnt factors are then brought home and served through
    implicit's scorer, so ranking, filtering and pickling work exactly as for `ALS`. The
    session is not pickled with the model.
    """

    name = "spark_als"

    spark: Any
    rank: int = 64
    reg_param: float = 0.05
    max_iter: int = 10
    alpha: float = 10.0
    seed: int = 42


    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["spark"] = None
        return state

    def _fit(self, data: InteractionData) -> None:
        from pyspark.ml.recommendation import ALS as SparkMLlibALS

        if self.spark is None:
            raise ValueError("SparkALS needs a SparkSession to fit")
        weights = data.user_items.tocoo()
        ratings = self.spark.createDataFrame(
            pd.DataFrame(
                {
                    "user": weights.row.astype(np.int32),
                    "item": weights.col.astype(np.int32),
                    "weight": weights.data.astype(np.float32),
                }
            )
        )
        fitted = SparkMLlibALS(
            rank=self.rank,
            maxIter=self.max_iter,
            regParam=self.reg_param,
            alpha=self.alpha,
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="weight",
            seed=self.seed,
            coldStartStrategy="drop",
        ).fit(ratings)
        self._model = AlternatingLeastSquares(factors=self.rank, num_threads=1)
        self._model.user_factors = _factor_array(fitted.userFactors.toPandas(), data.n_users, self.rank)
        self._model.item_factors = _factor_array(fitted.itemFactors.toPandas(), data.n_items, self.rank)


def _factor_array(factors: pd.DataFrame, n_rows: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as a dense array; ids Spark never saw stay zero."""
    out = np.zeros((n_rows, rank), dtype=np.float32)
    if len(factors):
        out[factors["id"].to_numpy()] = np.vstack(factors["features"].to_numpy()).astype(np.float32)
    return out
