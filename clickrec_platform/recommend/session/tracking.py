"""MLflow bookkeeping of the session models: one run per candidate, a pyfunc that serves it, and
the registry entry the API loads.

Session models are their own registered model (`CLICKREC_SESSION_REGISTERED_MODEL_NAME`), not
versions of the user-level one: the two answer different questions (what next after this session
/ what for this visitor), are scored by different metrics on different test sets, and are served
side by side. Its aliases are `session-champion` (what the API blends in) and `session-challenger`.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel  # by name: mypy reads `mlflow.pyfunc` as mlflow's lazy loader
from mlflow.types.schema import ColSpec, Schema

from clickrec_platform.recommend.session.training import SessionCandidate, SessionServable
from clickrec_platform.recommend.tracking import LoggedRun, log_metrics_of_model

SESSION_CHAMPION = "session-champion"
SESSION_CHALLENGER = "session-challenger"
SESSION_CANDIDATE_TAG = "clickrec.session_candidate"
MODEL_NAME_IN_RUN = "session_recommender"
_MODEL_FILE = "session_model.pkl"
_SERVING_PACKAGES = ("numpy", "pandas", "scipy", "mlflow")
_REQUEST_SCHEMA = Schema([ColSpec("long", "item_id"), ColSpec("long", "ts", required=False)])


class SessionPyfunc(PythonModel):
    """Input: one session as rows (item_id, optional ts), oldest first; params `k` (default 20).
    Output: rank, item_id, score of what should come next (possibly fewer than k)."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as file:
            self.servable: SessionServable = pickle.load(file)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        stamps = frame["ts"].to_numpy(dtype=np.int64) if "ts" in frame.columns else None
        ranked = self.servable.recommend_ids(frame["item_id"].to_numpy(dtype=np.int64), stamps,
                                             int((params or {}).get("k", 20)))
        return pd.DataFrame({"rank": np.arange(1, len(ranked) + 1), "item_id": [i for i, _ in ranked],
                             "score": [s for _, s in ranked]})


def log_session_run(
    experiment: str,
    candidate: SessionCandidate,
    item_ids: np.ndarray,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    tracking_uri: str | None = None,
    registered_model_name: str | None = None,
    n_boot: int = 1000,
    artifacts: Sequence[str | Path] = (),
) -> LoggedRun:
    """One run: the model's and the protocol's params; `session_*` (validation, what chose it) and
    `test_session_*` (train + validation refit, on test) metrics with intervals; `artifacts` under
    `comparison/`; the servable model."""
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    metrics = {**candidate.validation.flat("session", n_boot=n_boot),
               **candidate.test.flat("test_session", n_boot=n_boot),
               "session_fit_seconds": candidate.fit_seconds, "session_grid_points": float(candidate.searched)}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"session_{candidate.name}") as run:
        mlflow.log_params({**{k: str(v) for k, v in candidate.params.items()}, **params})
        mlflow.set_tags({**tags, SESSION_CANDIDATE_TAG: candidate.name, "model_class": type(candidate.model).__name__})
        for artifact in artifacts:
            mlflow.log_artifact(str(artifact), artifact_path="comparison")
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / _MODEL_FILE
            with open(path, "wb") as file:
                pickle.dump(SessionServable(candidate.model, item_ids), file, protocol=pickle.HIGHEST_PROTOCOL)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN, registered_model_name=registered_model_name,
                python_model=SessionPyfunc(), artifacts={"model": str(path)},
                signature=ModelSignature(inputs=_REQUEST_SCHEMA),
                pip_requirements=[f"{package}=={version(package)}" for package in _SERVING_PACKAGES])
        log_metrics_of_model({k: float(v) for k, v in metrics.items() if np.isfinite(v)}, info)
    registered = info.registered_model_version
    return LoggedRun(run.info.run_id, experiment_id, info.model_uri, registered_model_name,
                     None if registered is None else str(registered))


@dataclass(frozen=True)
class LoadedSessionModel:
    servable: SessionServable
    name: str  # the candidate's name (sknn, vsknn, ...)
    version: str
    run_id: str


def aliased_session_version(registered_model: str, alias: str = SESSION_CHAMPION,
                            tracking_uri: str | None = None) -> tuple[str, str] | None:
    """(version, run id) behind the alias, or None when there is none."""
    try:
        found = MlflowClient(tracking_uri).get_model_version_by_alias(registered_model, alias)
    except mlflow.exceptions.MlflowException:
        return None
    assert found.run_id is not None  # this project registers models from their runs
    return str(found.version), found.run_id


def session_champion_config(registered_model: str, tracking_uri: str | None = None
                            ) -> tuple[str, dict[str, str]] | None:
    """The session champion's candidate name and logged model params (protocol params left out)."""
    found = aliased_session_version(registered_model, SESSION_CHAMPION, tracking_uri)
    if found is None:
        return None
    run = MlflowClient(tracking_uri).get_run(found[1])
    params = {k: v for k, v in run.data.params.items() if not k.startswith(("protocol_", "data_version_"))}
    return run.data.tags[SESSION_CANDIDATE_TAG], params


def load_session_model(registered_model: str, alias: str = SESSION_CHAMPION, tracking_uri: str | None = None
                       ) -> LoadedSessionModel | None:
    """Download and unpickle the version behind `alias` (None when there is none)."""
    found = aliased_session_version(registered_model, alias, tracking_uri)
    if found is None:
        return None
    version_, run_id = found
    client = MlflowClient(tracking_uri)
    if tracking_uri is not None:  # `models:/` URIs resolve against the process's tracking server
        mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{registered_model}/{version_}")
    servable = model.unwrap_python_model().servable
    name = client.get_run(run_id).data.tags.get(SESSION_CANDIDATE_TAG, servable.model.name)
    return LoadedSessionModel(servable, name, version_, run_id)
