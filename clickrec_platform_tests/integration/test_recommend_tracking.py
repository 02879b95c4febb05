"""Recommender runs on the real MLflow server: logged, read back, registered, aliased, served."""

from __future__ import annotations

import uuid

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from clickrec_platform.recommend.data import InteractionData, splits_from_events
from clickrec_platform.recommend.evaluate import evaluate, paired_user_difference
from clickrec_platform.recommend.gate import BASELINE_REFERENCE, Reference, decide
from clickrec_platform.recommend.models import ItemKNN, MostPopular
from clickrec_platform.recommend.report import comparison_chart, comparison_table
from clickrec_platform.recommend.tracking import (
    CHALLENGER,
    CHAMPION,
    aliased_version,
    gate_metrics,
    log_model_run,
    set_alias,
)
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration


@pytest.fixture
def names(stack):
    suffix = uuid.uuid4().hex[:10]
    experiment, registered = f"test-recommend-{suffix}", f"test-recommender-{suffix}"
    yield experiment, registered
    client = MlflowClient(stack.tracking_uri)
    if client.search_registered_models(filter_string=f"name = '{registered}'"):
        client.delete_registered_model(registered)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        client.delete_experiment(found.experiment_id)


def test_runs_are_logged_registered_aliased_and_served(stack, names, tmp_path):
    experiment, registered = names
    uri = stack.tracking_uri
    data = InteractionData.from_splits(
        splits_from_events(generate_events(GeneratorConfig(seed=4, events=30_000)))
    )
    baseline = MostPopular().fit(data)
    challenger = ItemKNN("bm25").fit(data)
    baseline_eval = evaluate(baseline, data, n_boot=200)
    challenger_eval = evaluate(challenger, data, n_boot=200)
    table = tmp_path / "comparison.md"
    table.write_text(comparison_table([baseline_eval, challenger_eval]))
    chart = comparison_chart([baseline_eval, challenger_eval], tmp_path / "comparison.png")

    logged = {
        model.name: log_model_run(
            experiment,
            model,
            evaluation,
            data_versions={"gold.training_splits": 7},
            split_dates=data.split_dates(),
            training_seconds=model.fit_seconds or 0.0,
            tracking_uri=uri,
            artifacts=[table, chart],
            registered_model_name=registered,
        )
        for model, evaluation in ((baseline, baseline_eval), (challenger, challenger_eval))
    }

    client = MlflowClient(uri)
    run = client.get_run(logged["item_knn"].run_id)
    assert run.data.metrics["val_ndcg_at_20"] == pytest.approx(challenger_eval.value("ndcg@20"))
    assert run.data.metrics["val_warm_recall_at_20_ci_low"] == pytest.approx(
        challenger_eval.ci("recall@20", "warm").low
    )
    assert run.data.params["similarity"] == "bm25"
    assert run.data.params["data_version_gold_training_splits"] == "7"
    assert run.data.params["split_validation_start"] == data.split_dates()["validation_start"]
    assert run.data.tags["model_class"] == "ItemKNN"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "comparison")} == {
        "comparison/comparison.md",
        "comparison/comparison.png",
    }
    popular_version, item_knn_version = logged["most_popular"].registered_version, logged["item_knn"].registered_version
    assert popular_version is not None and item_knn_version is not None
    assert {popular_version, item_knn_version} == {"1", "2"}

    # The gate reads the values back from the runs, as a scheduled job would; the paired interval needs
    # both models' per-visitor values, which the evaluations hold.
    baseline_value = gate_metrics(client.get_run(logged["most_popular"].run_id).data.metrics)["ndcg@20"]
    references = {BASELINE_REFERENCE: Reference(
        baseline_value, paired_user_difference(challenger_eval, baseline_eval, "ndcg@20", n_boot=200))}
    decision = decide(gate_metrics(run.data.metrics)["ndcg@20"], references, "ndcg@20")
    assert decision.promote, decision.reason
    set_alias(registered, item_knn_version, CHAMPION, uri)
    set_alias(registered, popular_version, CHALLENGER, uri)
    champion = aliased_version(registered, CHAMPION, uri)
    assert champion is not None and champion.run_id == run.info.run_id
    assert champion.metrics["ndcg@20"] == pytest.approx(challenger_eval.value("ndcg@20"))
    assert champion.data_versions == {"gold.training_splits": "7"}
    assert aliased_version(registered, "no-such-alias", uri) is None

    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model(f"models:/{registered}@{CHAMPION}")
    visitor = int(data.user_ids[0])
    out = served.predict(pd.DataFrame({"visitor_id": [visitor], "k": [5]}))
    expected, _ = challenger.recommend(data.user_index([visitor]), k=5)
    assert out["item_id"].tolist() == data.item_ids[expected[0]].tolist()
    similar = served.predict(pd.DataFrame({"item_id": [int(data.item_ids[0])]}))
    assert len(similar) > 0 and int(data.item_ids[0]) not in set(similar["similar_item_id"])
