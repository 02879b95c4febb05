"""The servable pyfunc, saved and loaded locally (no tracking server), and metric name mapping."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.data import InteractionData, splits_from_events
from clickrec_platform.recommend.models import ItemKNN, MostPopular
from clickrec_platform.recommend.tracking import gate_metrics, save_servable
from clickrec_platform.sources.generator import GeneratorConfig, generate_events


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return InteractionData.from_splits(
        splits_from_events(generate_events(GeneratorConfig(seed=9, events=20_000)))
    )


def saved_and_loaded(model, tmp_path):
    return mlflow.pyfunc.load_model(str(save_servable(model, tmp_path / "model")))


def test_pyfunc_recommends_by_visitor_id_like_the_model(data, tmp_path):
    model = ItemKNN("bm25").fit(data)
    served = saved_and_loaded(model, tmp_path)
    visitors = data.user_ids[[0, 3]]

    out = served.predict(pd.DataFrame({"visitor_id": np.r_[visitors, -7], "k": [5, 3, 4]}))

    assert list(out.columns) == ["visitor_id", "rank", "item_id", "score"]
    assert out.groupby("visitor_id").size().to_dict() == {-7: 4, visitors[0]: 5, visitors[1]: 3}
    expected, _ = model.recommend(data.user_index(visitors[:1]), k=5)
    assert out[out["visitor_id"] == visitors[0]]["item_id"].tolist() == data.item_ids[expected[0]].tolist()
    unknown = out[out["visitor_id"] == -7]["item_id"].tolist()
    assert unknown == data.item_ids[model.popular[:4]].tolist()  # cold-start: popular items


def test_pyfunc_similar_items_by_item_id(data, tmp_path):
    model = ItemKNN("cosine").fit(data)
    served = saved_and_loaded(model, tmp_path)
    item = int(data.item_ids[0])

    out = served.predict(pd.DataFrame({"item_id": [item, -1]}), params=None)

    assert list(out.columns) == ["item_id", "rank", "similar_item_id", "score"]
    assert set(out["item_id"]) == {item}  # the unknown item gets no rows
    assert item not in set(out["similar_item_id"])
    assert out["rank"].tolist() == list(range(1, len(out) + 1)) and len(out) <= 10


def test_pyfunc_refuses_requests_without_ids(data, tmp_path):
    served = saved_and_loaded(MostPopular().fit(data), tmp_path)

    with pytest.raises(Exception, match="visitor_id or an item_id"):
        served.predict(pd.DataFrame({"k": [3]}))


def test_run_metric_names_map_back_to_gate_names():
    flat = {"val_ndcg_at_20": 0.2, "val_ndcg_at_20_ci_low": 0.1, "val_warm_ndcg_at_20": 0.3, "val_users": 5.0}

    assert gate_metrics(flat) == {"ndcg@20": 0.2}


def test_a_logged_run_links_its_metrics_to_the_model_without_reading_each_back(data, tmp_path, monkeypatch):
    """A local sqlite store stands in for the server. Metrics logged before the model would make
    MLflow read every metric's history back (a request each on a server) to link them."""
    from mlflow import MlflowClient

    from clickrec_platform.recommend.evaluate import evaluate
    from clickrec_platform.recommend.tracking import log_model_run

    reads = []
    original = MlflowClient.get_metric_history

    def get_metric_history(self, *a, **k):
        reads.append(a)
        return original(self, *a, **k)

    monkeypatch.setattr(MlflowClient, "get_metric_history", get_metric_history)
    model = MostPopular().fit(data)
    evaluation = evaluate(model, data, n_boot=50)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # artifacts under tmp_path: a sqlite store would otherwise put them in ./mlruns of the working directory
    MlflowClient(uri).create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())

    logged = log_model_run("e", model, evaluation, data_versions={"silver": 3}, split_dates={}, training_seconds=1.0,
                           tracking_uri=uri, registered_model_name="m", test_evaluation=evaluation)

    assert reads == []
    client = MlflowClient(uri)
    metrics = client.get_run(logged.run_id).data.metrics
    assert metrics["val_ndcg_at_20"] == evaluation.value("ndcg@20") and "test_ndcg_at_20" in metrics
    model_metrics = {m.key for m in client.get_logged_model(logged.model_uri.removeprefix("models:/")).metrics or []}
    assert model_metrics == set(metrics)
    assert logged.registered_version == "1"
