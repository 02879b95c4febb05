"""The real-time path with the session champion: a model registered on the real MLflow server is
loaded by the API, a visitor's clicks written by the stream job's loader change `/recommendations`
to exactly what that model puts next after the session, and moving the alias swaps the model."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from clickrec_platform.recommend.session.protocol import SessionProtocol, build_sessions
from clickrec_platform.recommend.session.tracking import SESSION_CHAMPION, log_session_run
from clickrec_platform.recommend.session.training import SessionServable, train_session_candidates
from clickrec_platform.serving.api import create_app
from clickrec_platform.serving.gold_tables import prepare_gold_schema
from clickrec_platform.serving.live_tables import upsert_recent_items
from clickrec_platform.sources.generator import GeneratorConfig, generate_events
from clickrec_platform.stack.scratch import scratch_settings
from clickrec_platform_tests.integration.test_api import recent

pytestmark = pytest.mark.integration
K = 5


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def trained():
    columns = ["visitor_id", "session_id", "ts", "event", "item_id"]
    events = pd.concat([f[columns] for f in generate_events(GeneratorConfig(events=30_000, days=8, seed=21))])
    data = build_sessions(events, SessionProtocol(test_days=1, validation_days=1))
    return data, train_session_candidates(data, ["sknn", "sr"], grids={})


def test_clicks_change_the_answer_to_what_the_session_champion_says_and_a_moved_alias_swaps_it(stack, trained):
    data, candidates = trained
    with scratch_settings(stack, "apisession") as settings, \
            psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        settings = settings.model_copy(update={"mlflow_experiment": f"apisession-{uuid.uuid4().hex[:8]}",
                                               "api_session_model_refresh_seconds": 0.2})
        client = MlflowClient(settings.tracking_uri)
        try:
            _scenario(settings, conn, client, data, candidates)
        finally:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(settings.session_registered_model_name)
            experiment = client.get_experiment_by_name(settings.mlflow_experiment)
            if experiment is not None:
                client.delete_experiment(experiment.experiment_id)


def _scenario(settings, conn, client, data, candidates) -> None:
    registered = settings.session_registered_model_name
    runs = {c.name: log_session_run(settings.mlflow_experiment, c, data.item_ids, params={}, tags={},
                                    tracking_uri=settings.tracking_uri, registered_model_name=registered, n_boot=50)
            for c in candidates}
    client.set_registered_model_alias(registered, SESSION_CHAMPION, runs["sknn"].registered_version)
    prepare_gold_schema(conn, settings)

    session = [int(i) for i in data.item_ids[data.test.session(0)[0]]]
    session = list(dict.fromkeys(session))  # user_recent_items holds an item once
    assert len(session) >= 2, "the first test session should have two distinct items"
    visitor, now = 777_001, datetime.now(UTC).replace(microsecond=0)
    clicks = [(item, now - timedelta(minutes=len(session) - n)) for n, item in enumerate(session)]

    def expected(model: SessionServable, n_clicks: int) -> list[int]:
        items = [item for item, _ in clicks[:n_clicks]]
        stamps = [int(at.timestamp() * 1000) for _, at in clicks[:n_clicks]]
        return [i for i, _ in model.recommend_ids(items, stamps, K + n_clicks) if i not in items][:K]

    app = create_app(settings)
    with TestClient(app) as api:
        holder = app.state.session_model
        _wait_for(lambda: holder.loaded is not None, "the API to load the session champion")
        assert holder.loaded.version == runs["sknn"].registered_version
        sknn = holder.loaded.servable

        def answer() -> dict:
            response = api.get(f"/recommendations/{visitor}?k={K}")
            assert response.status_code == 200, response.text
            return response.json()

        assert answer()["source"] != "session"  # no clicks yet: trending/popular (or nothing)
        upsert_recent_items(conn, recent(visitor, clicks[0][0], clicks[0][1]), schema=settings.gold_schema)
        first = answer()
        assert first["source"] == "session" and first["session_model_version"] == runs["sknn"].registered_version
        assert [i["item_id"] for i in first["items"]][:len(expected(sknn, 1))] == expected(sknn, 1)

        upsert_recent_items(conn, recent(visitor, clicks[1][0], clicks[1][1]), schema=settings.gold_schema)
        second = answer()
        assert second["based_on_recent_items"][:2] == [clicks[1][0], clicks[0][0]]
        want = expected(sknn, 2)
        assert want and [i["item_id"] for i in second["items"]][:len(want)] == want
        assert len(second["items"]) <= K

        # The alias moves to sequential rules: the workers reload, and the same session gets its answer.
        client.set_registered_model_alias(settings.session_registered_model_name, SESSION_CHAMPION,
                                          runs["sr"].registered_version)
        _wait_for(lambda: holder.loaded.version == runs["sr"].registered_version, "the API to reload on the alias")
        moved = answer()
        want = expected(holder.loaded.servable, 2)
        assert moved["session_model_name"] == "session:sr"
        assert want and [i["item_id"] for i in moved["items"]][:len(want)] == want
