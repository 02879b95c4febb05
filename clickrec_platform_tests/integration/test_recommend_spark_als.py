"""SparkALS on the tests' shared Spark session: trains, learns, and pickles without Spark.

It uses the session fixture (one JVM per test process: a session of its own, stopped at the end,
would stop the shared context under every later Spark test).
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


def test_spark_als_learns_and_serves_without_spark(spark):
    data = InteractionData.from_splits(
        splits_from_events(generate_events(GeneratorConfig(seed=2, events=20_000)))
    )

    model = SparkALS(spark, rank=16, max_iter=5).fit(data)

    assert model.params == {"rank": 16, "reg_param": 0.05, "max_iter": 5, "alpha": 10.0, "seed": 42}
    learnt = evaluate(model, data, n_boot=100).ci("recall@20", "warm")
    chance = evaluate(RandomRecommender().fit(data), data, n_boot=100).ci("recall@20", "warm")
    assert learnt.low > chance.high, (learnt, chance)
    items, _ = model.recommend(np.arange(10), k=10)
    again = pickle.loads(pickle.dumps(model))
    assert again.spark is None
    assert np.array_equal(again.recommend(np.arange(10), k=10)[0], items)
