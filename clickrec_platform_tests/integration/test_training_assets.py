"""The model assets against the real services: candidates trained and logged to the MLflow server,
the champion/challenger gate, and the champion's recommendation tables in Delta."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest
from mlflow import MlflowClient

from clickrec_platform import orchestration
from clickrec_platform.lake import duck
from clickrec_platform.lake.tables import GOLD_POPULAR_ITEMS, GOLD_SIMILAR_ITEMS, GOLD_USER_RECOMMENDATIONS
from clickrec_platform.recommend.session.tracking import SESSION_CANDIDATE_TAG
from clickrec_platform.recommend.training import CANDIDATE_TAG, GATE_TAG, TRAINING_TAG
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.sources.generator import GeneratorConfig
from clickrec_platform_tests.support import lake_of_its_own

pytestmark = pytest.mark.integration

CONFIG = GeneratorConfig(events=80_000, days=10, seed=11)
MODELS = "group:training"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Iterator[Settings]:
    with lake_of_its_own(spark, tmp_path_factory.mktemp("training"), CONFIG) as settings:
        features = orchestration.materialize(settings, "group:reference or group:features")
        assert features.success
        yield settings


def _train(monkeypatch, models: list[str], grids: dict | None = None) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("CLICKREC_TRAINING_MODELS", json.dumps(models))
    if grids is not None:
        monkeypatch.setenv("CLICKREC_TRAINING_GRIDS", json.dumps(grids))
    else:
        monkeypatch.delenv("CLICKREC_TRAINING_GRIDS", raising=False)
    get_settings.cache_clear()
    try:
        return orchestration.materialize(get_settings(), "key:mlflow/clickrec/candidate_models+",
                                         raise_on_error=False)
    finally:
        get_settings.cache_clear()


def _gate(result: dg.ExecuteInProcessResult, asset: str = "champion") -> dict:
    (champion,) = [e.step_materialization_data.materialization for e in result.all_events
                   if e.event_type_value == "ASSET_MATERIALIZATION"
                   and e.step_materialization_data.materialization.asset_key.path[-1] == asset]
    return {key: value.value for key, value in champion.metadata.items()}


def _champion(settings: Settings) -> str:
    client = MlflowClient(settings.tracking_uri)
    return client.get_model_version_by_alias(settings.registered_model_name, "champion").version


def test_candidates_are_logged_and_the_champion_writes_recommendations(lake):
    result = orchestration.materialize(lake, MODELS, raise_on_error=False)
    checks = {(e.asset_check_evaluation_data.asset_key.path[-1], e.asset_check_evaluation_data.check_name):
              e.asset_check_evaluation_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert result.success and all(checks.values()) and len(checks) == 10, checks

    client = MlflowClient(lake.tracking_uri)
    experiment = client.get_experiment_by_name(lake.mlflow_experiment)
    assert experiment is not None
    all_runs = client.search_runs([experiment.experiment_id], f"tags.`{TRAINING_TAG}` = '{result.run_id}'")
    runs = [run for run in all_runs if CANDIDATE_TAG in run.data.tags]
    assert {run.data.tags[CANDIDATE_TAG] for run in runs} == set(lake.training_models)
    for run in runs:  # what the issue asks each run to carry: validation (chooses) and test (reported once)
        assert {"val_recall_at_20", "val_ndcg_at_20", "val_ndcg_at_20_ci_low", "training_seconds",
                "val_cold_start_recall_at_20", "test_ndcg_at_20", "test_ndcg_at_20_ci_low",
                "test_recall_at_20"} <= set(run.data.metrics)
        assert run.data.metrics["test_users"] > 0
        assert "data_version_gold_training_splits" in run.data.params and "split_train_start" in run.data.params

    session_runs = [run for run in all_runs if SESSION_CANDIDATE_TAG in run.data.tags]
    assert {run.data.tags[SESSION_CANDIDATE_TAG] for run in session_runs} == set(lake.session_models)
    for run in session_runs:
        assert {"session_hitrate_at_20", "session_mrr_at_20", "session_ndcg_at_10", "session_hitrate_at_20_ci_low",
                "test_session_hitrate_at_20", "test_session_mrr_at_20", "test_session_cases"} <= set(run.data.metrics)
        assert run.data.params["protocol_gap_minutes"] == "30.0"
        logged = {f.path: f.file_size for f in client.list_artifacts(run.info.run_id, "comparison")}
        assert logged.keys() == {"comparison/session_comparison.md", "comparison/session_comparison.png"}, logged
        assert (logged["comparison/session_comparison.png"] or 0) > 5_000
    session_hr = {run.data.tags[SESSION_CANDIDATE_TAG]: run.data.metrics["session_hitrate_at_20"]
                  for run in session_runs}
    assert max(session_hr["sknn"], session_hr["vsknn"], session_hr["stan"]) > 1.5 * session_hr["popularity"]
    session_gate = _gate(result, "session_champion")
    assert session_gate["promoted"], session_gate["reason"]
    session_champion = client.get_model_version_by_alias(lake.session_registered_model_name, "session-champion")
    assert session_champion.version == session_gate["champion_version"]
    assert "above 0" in session_champion.tags[GATE_TAG]
    metric = {run.data.tags[CANDIDATE_TAG]: run.data.metrics["val_recall_at_20"] for run in runs}
    assert metric["als"] > 1.5 * metric["most_popular"] and metric["random"] < 0.1 * metric["most_popular"]

    gate = _gate(result)
    assert gate["promoted"] and gate["champion_version"] == _champion(lake)
    champion_run_id = client.get_model_version_by_alias(lake.registered_model_name, "champion").run_id
    assert champion_run_id is not None
    champion_run = client.get_run(champion_run_id)
    assert champion_run.data.tags[CANDIDATE_TAG] not in ("most_popular", "random")

    with duck.connect(lake) as con:
        recs = con.execute(f"SELECT * FROM {duck.scan(GOLD_USER_RECOMMENDATIONS.path(lake))}").df()
        similar = con.execute(f"SELECT * FROM {duck.scan(GOLD_SIMILAR_ITEMS.path(lake))}").df()
        popular = con.execute(f"SELECT * FROM {duck.scan(GOLD_POPULAR_ITEMS.path(lake))}").df()
    assert len(recs) > 0 and set(recs["model_version"]) == {gate["champion_version"]}
    assert set(recs["run_id"]) == {champion_run.info.run_id}
    assert recs.groupby("visitor_id")["rank"].max().max() == lake.recommend_top_n
    assert not (similar["item_id"] == similar["similar_item_id"]).any()
    assert {"overall", "category"} == set(popular["scope"])


def test_the_gate_promotes_a_clear_winner_and_keeps_the_champion_when_the_interval_straddles_zero(lake, monkeypatch):
    monkeypatch.setenv("CLICKREC_REGISTERED_MODEL_NAME", f"{lake.registered_model_name}-gate")
    lake = lake.model_copy(update={"registered_model_name": f"{lake.registered_model_name}-gate"})
    client = MlflowClient(lake.tracking_uri)
    try:
        _gate_scenario(lake, monkeypatch)
    finally:
        client.delete_registered_model(lake.registered_model_name)


def _gate_scenario(lake: Settings, monkeypatch) -> None:
    client = MlflowClient(lake.tracking_uri)
    # A first champion: item-kNN (cosine) against the popularity baseline.
    first = _train(monkeypatch, ["most_popular", "random", "item_knn_cosine"])
    assert first.success and _gate(first)["promoted"]
    cosine_version = _champion(lake)

    # Item-kNN (BM25) beats it on the same validation visitors, beyond resampling noise: promoted.
    better = _train(monkeypatch, ["most_popular", "random", "item_knn_bm25"], {"item_knn_bm25": {"neighbours": [100]}})
    gate = _gate(better)
    assert gate["promoted"], gate["reason"]
    assert "beats the champion" in gate["reason"] and "above 0" in gate["reason"]
    bm25_version = _champion(lake)
    assert bm25_version != cosine_version

    # BM25 with 150 neighbours scores a hair higher than the champion's configuration (100
    # neighbours, retrained here on the same data), but the paired interval of the difference
    # straddles 0: the point estimate alone would have promoted it; the gate keeps the champion.
    noise = _train(monkeypatch, ["most_popular", "random", "item_knn_bm25"], {"item_knn_bm25": {"neighbours": [150]}})
    gate = _gate(noise)
    assert not gate["promoted"] and _champion(lake) == bm25_version, gate["reason"]
    assert "does not beat the champion" in gate["reason"] and "straddles 0" in gate["reason"]
    assert "lift +" in gate["reason"].split("does not beat the champion")[1]  # higher, yet not promoted
    challenger = client.get_model_version_by_alias(lake.registered_model_name, "challenger")
    assert challenger.version == gate["challenger_version"]
    assert "keep" in client.get_model_version(lake.registered_model_name, challenger.version).tags[GATE_TAG]


def _train_sessions(monkeypatch, models: list[str], select: str = "key:mlflow/clickrec/session_models+"
                    ) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("CLICKREC_SESSION_MODELS", json.dumps(models))
    monkeypatch.setenv("CLICKREC_SESSION_GRIDS", "{}")
    get_settings.cache_clear()
    try:
        return orchestration.materialize(get_settings(), select, raise_on_error=False)
    finally:
        get_settings.cache_clear()


def test_the_session_gate_keeps_its_champion_against_a_tie_and_promotes_a_clear_winner(lake, monkeypatch):
    name = f"{lake.session_registered_model_name}-gate"
    monkeypatch.setenv("CLICKREC_SESSION_REGISTERED_MODEL_NAME", name)
    client = MlflowClient(lake.tracking_uri)
    try:
        first = _train_sessions(monkeypatch, ["popularity", "sknn"],
                                "key:delta/gold/sessions or key:mlflow/clickrec/session_models+")
        gate = _gate(first, "session_champion")
        assert first.success and gate["promoted"] and gate["challenger"] == "sknn", gate["reason"]
        sknn_version = client.get_model_version_by_alias(name, "session-champion").version

        # SKNN again: the champion's configuration, retrained on the same sessions, scores the same
        # cases identically, so the interval of the difference is [0, 0]: not above 0, kept out.
        tie = _gate(_train_sessions(monkeypatch, ["popularity", "sknn"]), "session_champion")
        assert not tie["promoted"] and "does not beat the champion" in tie["reason"], tie["reason"]
        assert client.get_model_version_by_alias(name, "session-champion").version == sknn_version
        assert client.get_model_version_by_alias(name, "session-challenger").version == tie["challenger_version"]

        # V-SKNN clears SKNN (and popularity) beyond resampling noise on the same sessions: promoted.
        better = _gate(_train_sessions(monkeypatch, ["popularity", "vsknn"]), "session_champion")
        assert better["promoted"] and better["challenger"] == "vsknn", better["reason"]
        assert "beats the champion" in better["reason"] and "above 0" in better["reason"]
        assert client.get_model_version_by_alias(name, "session-champion").version == better["challenger_version"]
    finally:
        client.delete_registered_model(name)
