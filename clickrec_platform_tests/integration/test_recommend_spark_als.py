"""SparkALS on a tiny local Spark session (no lake, no stack): trains, learns, and pickles.

Integration-marked because it starts a JVM (about 20 s), not because it needs the services.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from clickrec_platform.recommend.data import InteractionData, splits_from_events
from clickrec_platform.recommend.evaluate import evaluate
from clickrec_platform.recommend.models import RandomRecommender, SparkALS
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("clickrec-test-spark-als")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_als_learns_and_serves_without_spark(local_spark):
    data = InteractionData.from_splits(
        splits_from_events(generate_events(GeneratorConfig(seed=2, events=20_000)))
    )

    model = SparkALS(local_spark, rank=16, max_iter=5).fit(data)

    assert model.params == {"rank": 16, "reg_param": 0.05, "max_iter": 5, "alpha": 10.0, "seed": 42}
    learnt = evaluate(model, data, n_boot=100).ci("recall@20", "warm")
    chance = evaluate(RandomRecommender().fit(data), data, n_boot=100).ci("recall@20", "warm")
    assert learnt.low > chance.high, (learnt, chance)
    items, _ = model.recommend(np.arange(10), k=10)
    again = pickle.loads(pickle.dumps(model))
    assert again.spark is None
    assert np.array_equal(again.recommend(np.arange(10), k=10)[0], items)
