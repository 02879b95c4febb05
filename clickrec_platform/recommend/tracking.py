"""MLflow bookkeeping: one run per trained model, a pyfunc that serves it, registry aliases.

Aliases, not stages (deprecated): `champion` is what gets published, `challenger` a candidate
that did not pass the gate. The pyfunc needs `clickrec_platform` importable where it is
loaded, since the pickled model is one of its classes.
"""

from __future__ import annotations

import pickle
import re
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

from clickrec_platform.recommend.data import lookup_index
from clickrec_platform.recommend.evaluate import Evaluation
from clickrec_platform.recommend.models import Recommender

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAME_IN_RUN = "recommender"
DEFAULT_K = 10

_MODEL_FILE = "model.pkl"
_ID_MAPS_FILE = "id_maps.npz"
# Pinned to what trained the model: a pickled implicit model is only safe with the same versions.
_SERVING_PACKAGES = ("implicit", "numpy", "pandas", "scipy", "threadpoolctl", "mlflow")
_REQUEST_SCHEMA = Schema(
    [
        ColSpec("long", "visitor_id", required=False),
        ColSpec("long", "item_id", required=False),
        ColSpec("long", "k", required=False),
    ]
)


class RecommenderPyfunc(PythonModel):
    """Recommendations for visitors, or similar items for items, from a logged `Recommender`.

    Input: a DataFrame with `visitor_id` (and optional `k`) -> columns visitor_id, rank,
    item_id, score; or with `item_id` (and optional `k`) -> item_id, rank, similar_item_id,
    score. Visitors unknown to the model get popular items; unknown items get no rows. A NaN
    score marks a popular item used to fill a list the model could not.
    """

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as file:
            self.model: Recommender = pickle.load(file)
        maps = np.load(context.artifacts["id_maps"])
        self.user_ids, self.item_ids = maps["user_ids"], maps["item_ids"]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        requested_k = _requested_k(frame, (params or {}).get("k", DEFAULT_K))
        if "visitor_id" in frame.columns and frame["visitor_id"].notna().any():
            return self._for_visitors(frame["visitor_id"].to_numpy(dtype=np.int64), requested_k)
        if "item_id" in frame.columns and frame["item_id"].notna().any():
            return self._similar(frame["item_id"].to_numpy(dtype=np.int64), requested_k)
        raise ValueError("input needs a visitor_id or an item_id column")

    def _for_visitors(self, visitor_ids: np.ndarray, k: np.ndarray) -> pd.DataFrame:
        rows = lookup_index(self.user_ids, visitor_ids)
        items, scores = self.model.recommend(rows, k=int(k.max()))
        return _long(visitor_ids, items, scores, k, self.item_ids, ("visitor_id", "item_id"))

    def _similar(self, item_ids: np.ndarray, k: np.ndarray) -> pd.DataFrame:
        columns = lookup_index(self.item_ids, item_ids)
        known = columns >= 0
        items, scores = self.model.similar_items(columns[known], k=int(k.max()))
        return _long(item_ids[known], items, scores, k[known], self.item_ids, ("item_id", "similar_item_id"))


def _requested_k(frame: pd.DataFrame, default: int) -> np.ndarray:
    if "k" not in frame.columns:
        return np.full(len(frame), int(default), dtype=np.int64)
    return frame["k"].fillna(default).to_numpy(dtype=np.int64)


def _long(
    keys: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    k: np.ndarray,
    item_ids: np.ndarray,
    names: tuple[str, str],
) -> pd.DataFrame:
    rank = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
    keep = (items >= 0) & (rank <= k[:, None])
    key_column, item_column = names
    return pd.DataFrame(
        {
            key_column: np.broadcast_to(keys[:, None], items.shape)[keep],
            "rank": rank[keep],
            item_column: item_ids[items[keep]],
            "score": scores[keep].astype(np.float64),
        }
    )


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str | None
    registered_version: str | None


def log_model_run(
    experiment: str,
    model: Recommender,
    evaluation: Evaluation,
    *,
    data_versions: Mapping[str, Any],
    split_dates: Mapping[str, str],
    training_seconds: float,
    params: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    artifacts: Sequence[str | Path] = (),
    registered_model_name: str | None = None,
    test_evaluation: Evaluation | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> LoggedRun:
    """One MLflow run for one fitted model: params (model's, data versions, split dates),
    metrics (`val_ndcg_at_20`, `..._ci_low`, ...; `test_...` when given), tags, the comparison
    `artifacts` under `comparison/`, and the servable model, registered when a name is given."""
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    run_params = {**(params if params is not None else model.params)}
    run_params.update({f"data_version_{_key(name)}": value for name, value in data_versions.items()})
    run_params.update({f"split_{_key(name)}": value for name, value in split_dates.items()})
    metrics = {**evaluation.flat("val"), "training_seconds": float(training_seconds)}
    if test_evaluation is not None:
        metrics.update(test_evaluation.flat("test"))
    run_tags = {
        "model_name": evaluation.model,
        "model_class": type(model).__name__,
        "evaluation_split": evaluation.split,
        **{f"data_version.{name}": str(value) for name, value in data_versions.items()},
        **(tags or {}),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or evaluation.model) as run:
        mlflow.log_params({name: _param_value(value) for name, value in run_params.items()})
        mlflow.set_tags(run_tags)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="comparison")
        with tempfile.TemporaryDirectory() as scratch:
            model_info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                registered_model_name=registered_model_name,
                **_pyfunc_arguments(model, Path(scratch)),
            )
        log_metrics_of_model({name: value for name, value in metrics.items() if np.isfinite(value)}, model_info)
    registered = model_info.registered_model_version
    return LoggedRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=model_info.model_uri,
        registered_name=registered_model_name,
        registered_version=None if registered is None else str(registered),
    )


def log_metrics_of_model(metrics: Mapping[str, float], model_info: Any) -> None:
    """The active run's metrics, linked to the model just logged in it. Logged after the model on
    purpose: metrics already in the run when a model is logged are linked by reading each one's
    history back from the server, a request per metric (~230 per candidate)."""
    mlflow.log_metrics(dict(metrics), model_id=model_info.model_id)


def save_servable(model: Recommender, path: str | Path) -> Path:
    """Write the pyfunc to a local folder, exactly as `log_model_run` logs it (for tests and
    offline use); load it back with `mlflow.pyfunc.load_model(path)`."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        mlflow.pyfunc.save_model(path, **_pyfunc_arguments(model, Path(scratch)))
    return path


def _pyfunc_arguments(model: Recommender, scratch: Path) -> dict[str, Any]:
    model_path, maps_path = scratch / _MODEL_FILE, scratch / _ID_MAPS_FILE
    with open(model_path, "wb") as file:
        pickle.dump(model, file, protocol=pickle.HIGHEST_PROTOCOL)
    np.savez(maps_path, user_ids=model.user_ids, item_ids=model.item_ids)
    return {
        "python_model": RecommenderPyfunc(),
        "artifacts": {"model": str(model_path), "id_maps": str(maps_path)},
        "signature": ModelSignature(inputs=_REQUEST_SCHEMA),
        "input_example": pd.DataFrame({"visitor_id": model.user_ids[:1], "k": [DEFAULT_K]}),
        "pip_requirements": [f"{package}=={version(package)}" for package in _SERVING_PACKAGES],
    }


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")


def _param_value(value: Any) -> str:
    return "None" if value is None else str(value)


def set_alias(name: str, version: str, alias: str, tracking_uri: str | None = None) -> None:
    """Point `alias` (`champion`, `challenger`) of registered model `name` at `version`."""
    MlflowClient(tracking_uri).set_registered_model_alias(name, alias, str(version))


def gate_metrics(flat_metrics: Mapping[str, float], prefix: str = "val") -> dict[str, float]:
    """Run metrics (`val_ndcg_at_20`) back in the evaluator's names (`ndcg@20`), all visitors,
    as `gate.decide` takes them."""
    pattern = re.compile(rf"^{prefix}_([a-z]+)_at_(\d+)$")
    out = {}
    for name, value in flat_metrics.items():
        match = pattern.match(name)
        if match:
            out[f"{match.group(1)}@{match.group(2)}"] = value
    return out


@dataclass(frozen=True)
class AliasedVersion:
    version: str
    run_id: str
    metrics: dict[str, float]  # in the evaluator's names, ready for `gate.decide`
    data_versions: dict[str, str]  # compare with the challenger's before trusting the metrics


def aliased_version(
    name: str, alias: str = CHAMPION, tracking_uri: str | None = None
) -> AliasedVersion | None:
    """The version behind an alias and its run's validation metrics; None if no such alias.

    The gate is only fair on the same frozen evaluation: use these metrics only when the data
    versions match the challenger's, otherwise re-evaluate the champion.
    """
    client = MlflowClient(tracking_uri)
    try:
        model_version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    assert model_version.run_id is not None  # this project registers models from their runs
    run = client.get_run(model_version.run_id)
    return AliasedVersion(
        version=str(model_version.version),
        run_id=model_version.run_id,
        metrics=gate_metrics(run.data.metrics),
        data_versions={
            tag.removeprefix("data_version."): value
            for tag, value in run.data.tags.items()
            if tag.startswith("data_version.")
        },
    )
