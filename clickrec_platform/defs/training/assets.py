"""Models: every candidate trained and evaluated on the chronological split (validation chooses; a
refit on train + validation is scored once on test) and logged to MLflow, the champion/challenger
gate, and the champion's recommendation tables (Delta gold)."""

import os
from datetime import UTC, datetime

import dagster as dg
from mlflow import MlflowClient

from clickrec_platform.defs import checks
from clickrec_platform.defs.features.assets import ITEM_FEATURES_KEY, TRAINING_SPLITS_KEY
from clickrec_platform.defs.resources import LakeResource, MlflowResource, SparkResource
from clickrec_platform.lake import duck
from clickrec_platform.lake.table_versions import latest_version
from clickrec_platform.lake.tables import (
    GOLD_ITEM_FEATURES,
    GOLD_POPULAR_ITEMS,
    GOLD_SIMILAR_ITEMS,
    GOLD_TRAINING_SPLITS,
    GOLD_USER_RECOMMENDATIONS,
    SILVER_EVENTS,
)
from clickrec_platform.lake.writes import from_pandas, overwrite
from clickrec_platform.recommend.candidates import BASELINE, CONTROL
from clickrec_platform.recommend.outputs import Champion, serving_tables
from clickrec_platform.recommend.training import (
    champion_model,
    run_gate,
    train_candidates,
    with_champion_config,
)

# implicit and numpy's BLAS must not both spread threads over the two cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Progress bars for each small artifact would drown the run's own report.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CANDIDATES_KEY = ["mlflow", "clickrec", "candidate_models"]
CHAMPION_KEY = ["mlflow", "clickrec", "champion"]
USER_RECOMMENDATIONS_KEY = ["delta", "gold", "user_recommendations"]
SIMILAR_ITEMS_KEY = ["delta", "gold", "similar_items"]
POPULAR_ITEMS_KEY = ["delta", "gold", "popular_items"]
CONTROL_CEILING = 0.1  # the random control must score below a tenth of the baseline


def _read(settings, table, columns="*"):
    with duck.connect(settings) as con:
        return con.execute(f"SELECT {columns} FROM {duck.scan(table.path(settings))}").df()


@dg.multi_asset(
    specs=[
        dg.AssetSpec(CANDIDATES_KEY, deps=[TRAINING_SPLITS_KEY, ITEM_FEATURES_KEY], group_name="training",
                     kinds={"mlflow", "python"},
                     description="Every candidate (CLICKREC_TRAINING_MODELS) fitted on train and evaluated on "
                                 "validation, one MLflow run each with parameters, Delta versions of the inputs, "
                                 "split dates, metrics with 95% CIs, training time and the model (registered)."),
        dg.AssetSpec(CHAMPION_KEY, deps=[CANDIDATES_KEY], group_name="training", kinds={"mlflow"},
                     description="The champion/challenger gate: the best challenger gets the `champion` alias only "
                                 "when the paired bootstrap interval of its difference with the current champion and "
                                 "with the popularity baseline on validation lies above 0 (CLICKREC_GATE_CONFIDENCE); "
                                 "otherwise it gets `challenger` and the reason is recorded."),
    ],
    check_specs=[
        checks.spec(CANDIDATES_KEY, "control_scores_near_zero",
                    "The random control scores below a tenth of the popularity baseline (the evaluation "
                    "itself is sound)."),
        checks.spec(CANDIDATES_KEY, "runs_on_tracking_server",
                    "Every candidate's run reads back from the MLflow server, finished, with val_* and test_* metrics."),
        checks.spec(CHAMPION_KEY, "champion_beats_baseline",
                    "A champion exists and beats the popularity baseline on this validation split.", blocking=True),
    ],
)
def models(context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource):
    settings = mlflow.over(lake.settings())
    splits = _read(settings, GOLD_TRAINING_SPLITS)
    items = _read(settings, GOLD_ITEM_FEATURES, "item_id, category_id")
    data_versions = {"gold.training_splits": latest_version(GOLD_TRAINING_SPLITS.path(settings), settings),
                     "silver.events": latest_version(SILVER_EVENTS.path(settings), settings)}
    run_id = context.run.run_id
    training = train_candidates(
        splits, items, with_champion_config(settings.training_models, settings.registered_model_name,
                                            settings.tracking_uri), training_id=run_id,
        experiment=settings.mlflow_experiment, registered_model=settings.registered_model_name,
        tracking_uri=settings.tracking_uri, data_versions=data_versions,
        artifacts_dir=settings.state_dir / "model-reports" / run_id, grids=settings.training_grids,
        metric=settings.gate_metric, half_life_days=settings.interaction_half_life_days,
        threads=settings.training_threads, progress=context.log.info)
    outcome = run_gate(training, settings.registered_model_name, settings.tracking_uri, settings.gate_metric,
                       settings.gate_min_relative_lift, settings.gate_confidence, settings.gate_bootstrap_samples)
    metric = settings.gate_metric
    experiment_url = f"{settings.tracking_uri}/#/experiments/{training.candidates[0].logged_run.experiment_id}"
    yield dg.MaterializeResult(asset_key=CANDIDATES_KEY, metadata={
        "comparison": dg.MetadataValue.md(training.report_markdown),
        "chart": dg.MetadataValue.path(str(training.chart_path)),
        "mlflow_experiment": dg.MetadataValue.url(experiment_url),
        "seconds": round(training.seconds, 1),
        **{f"{c.name}_{metric}": round(c.metrics[metric], 5) for c in training.candidates},
        **{f"split_{k}": v for k, v in training.split_dates.items()},
        **{f"data_version {k}": str(v) for k, v in training.data_versions.items()},
    })
    yield dg.MaterializeResult(asset_key=CHAMPION_KEY, metadata={
        "promoted": outcome.promoted, "reason": outcome.reason, "challenger": outcome.challenger,
        "challenger_version": str(outcome.challenger_version), "champion_version": str(outcome.champion_version),
        "registered_model": settings.registered_model_name})

    baseline, control = training.candidate(BASELINE).metrics, training.candidate(CONTROL).metrics if any(
        c.name == CONTROL for c in training.candidates) else None
    yield dg.AssetCheckResult(
        asset_key=CANDIDATES_KEY, check_name="control_scores_near_zero",
        passed=control is None or control["recall@20"] < CONTROL_CEILING * baseline["recall@20"],
        metadata={"control_recall@20": None if control is None else control["recall@20"],
                  "baseline_recall@20": baseline["recall@20"]})
    client = MlflowClient(settings.tracking_uri)
    read_back = {c.name: client.get_run(c.logged_run.run_id) for c in training.candidates}
    missing = [name for name, run in read_back.items()
               if run.info.status != "FINISHED" or not {"val_ndcg_at_20", "test_ndcg_at_20"} <= set(run.data.metrics)]
    yield dg.AssetCheckResult(asset_key=CANDIDATES_KEY, check_name="runs_on_tracking_server", passed=not missing,
                              metadata={"runs": len(read_back), "incomplete": missing})
    yield dg.AssetCheckResult(
        asset_key=CHAMPION_KEY, check_name="champion_beats_baseline",
        passed=outcome.champion_beats_baseline(metric),
        metadata={"champion_version": str(outcome.champion_version), "reason": outcome.reason,
                  f"baseline_{metric}": baseline[metric],
                  f"champion_{metric}": None if outcome.champion_metrics is None
                  else outcome.champion_metrics.get(metric)})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(USER_RECOMMENDATIONS_KEY, deps=[CHAMPION_KEY, TRAINING_SPLITS_KEY], group_name="training",
                     kinds={"delta", "python"},
                     description="The champion's top-N (CLICKREC_RECOMMEND_TOP_N) for visitors active in the last "
                                 "CLICKREC_RECOMMEND_ACTIVE_DAYS, with score, rank, model version and run id."),
        dg.AssetSpec(SIMILAR_ITEMS_KEY, deps=[CHAMPION_KEY, TRAINING_SPLITS_KEY], group_name="training",
                     kinds={"delta", "python"}, description="Top-N similar items for every interacted item."),
        dg.AssetSpec(POPULAR_ITEMS_KEY, deps=[CHAMPION_KEY, TRAINING_SPLITS_KEY, ITEM_FEATURES_KEY],
                     group_name="training", kinds={"delta", "python"},
                     description="Most popular items of the last CLICKREC_POPULAR_WINDOW_DAYS, overall and per "
                                 "category."),
    ],
)
def recommendation_tables(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource,
                          mlflow: MlflowResource):
    settings = mlflow.over(lake.settings())
    found = champion_model(settings.registered_model_name, settings.tracking_uri)
    if found is None:
        raise dg.Failure(f"model {settings.registered_model_name!r} has no champion yet: materialise "
                         f"{'/'.join(CHAMPION_KEY)} first")
    champion = Champion(*found)
    splits = _read(settings, GOLD_TRAINING_SPLITS)
    items = _read(settings, GOLD_ITEM_FEATURES, "item_id, category_id")
    tables = serving_tables(splits, items, champion, top_n=settings.recommend_top_n,
                            similar_n=settings.recommend_top_n, active_days=settings.recommend_active_days,
                            popular_window_days=settings.popular_window_days, generated_at=datetime.now(UTC))
    session = spark.get_session()
    targets = {"user_recommendations": (USER_RECOMMENDATIONS_KEY, GOLD_USER_RECOMMENDATIONS),
               "similar_items": (SIMILAR_ITEMS_KEY, GOLD_SIMILAR_ITEMS),
               "popular_items": (POPULAR_ITEMS_KEY, GOLD_POPULAR_ITEMS)}
    for name, frame in tables.items():
        key, table = targets[name]
        version = overwrite(from_pandas(session, frame), table.path(settings),
                            description=f"champion {champion.name} v{champion.version}")
        yield dg.MaterializeResult(asset_key=key, metadata={
            "row_count": dg.MetadataValue.int(len(frame)), "delta_version": version,
            "model": f"{champion.name} v{champion.version}", "run_id": champion.run_id,
            "preview": dg.MetadataValue.md(frame.head(10).to_markdown(index=False))})

