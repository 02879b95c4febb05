"""Sessions as data (gold.sessions) and the session models: next item after the current session.

`gold.sessions` is the literature's protocol (`recommend.session.protocol`) over silver.events;
`session_models` searches each candidate's parameters on validation, logs `session_*` (validation)
and `test_session_*` (refit on train + validation, scored once on test) metrics to MLflow, and the
session gate gives the best the `session-champion` alias of its own registered model only when the
paired bootstrap interval of its difference with the champion and with popularity lies above 0.
"""

import tempfile
from pathlib import Path

import dagster as dg
from mlflow import MlflowClient

from clickrec_platform.defs import checks
from clickrec_platform.defs.ingest.sources import SILVER_EVENTS_KEY
from clickrec_platform.defs.resources import LakeResource, MlflowResource, SparkResource
from clickrec_platform.lake import duck
from clickrec_platform.lake.table_versions import latest_version
from clickrec_platform.lake.tables import GOLD_SESSIONS, SILVER_EVENTS
from clickrec_platform.lake.writes import from_pandas, overwrite
from clickrec_platform.recommend.gate import decide
from clickrec_platform.recommend.session.protocol import SessionProtocol, build_sessions
from clickrec_platform.recommend.session.table import (
    protocol_fields,
    session_data_from_frame,
    sessions_frame,
)
from clickrec_platform.recommend.session.tracking import (
    SESSION_CHALLENGER,
    SESSION_CHAMPION,
    log_session_run,
    session_champion_config,
)
from clickrec_platform.recommend.session.training import (
    best_session_challenger,
    session_comparison_chart,
    session_comparison_table,
    session_gate_references,
    train_session_candidates,
)
from clickrec_platform.recommend.training import GATE_TAG, TRAINING_TAG
from clickrec_platform.settings import Settings

SESSIONS_KEY = ["delta", "gold", "sessions"]
SESSION_MODELS_KEY = ["mlflow", "clickrec", "session_models"]
SESSION_CHAMPION_KEY = ["mlflow", "clickrec", "session_champion"]


def session_protocol(settings: Settings) -> SessionProtocol:
    return SessionProtocol(
        event_types=tuple(settings.session_event_types), gap_minutes=settings.session_gap_minutes,
        split_on_session_id=settings.session_split_on_session_id, min_session_length=settings.session_min_length,
        min_item_support=settings.session_min_item_support, test_days=settings.session_test_days,
        validation_days=settings.session_validation_days)


@dg.asset(
    key=SESSIONS_KEY, deps=[SILVER_EVENTS_KEY], group_name="training", kinds={"delta", "python"},
    description="One row per kept event of a session: silver events cut into sessions at session_id changes or "
                "CLICKREC_SESSION_GAP_MINUTES idle, filtered (event types, length, item support) and split by "
                "time (last CLICKREC_SESSION_TEST_DAYS test, CLICKREC_SESSION_VALIDATION_DAYS validation).",
)
def sessions(context: dg.AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    settings = lake.settings()
    with duck.connect(settings) as con:
        events = con.execute("SELECT visitor_id, session_id, ts, event, item_id FROM "
                             f"{duck.scan(SILVER_EVENTS.path(settings))}").df()
    data = build_sessions(events, session_protocol(settings))
    frame = sessions_frame(data)
    version = overwrite(from_pandas(spark.get_session(), frame), GOLD_SESSIONS.path(settings),
                        description=f"sessions {protocol_fields(data.protocol)}")
    return dg.MaterializeResult(metadata={
        "row_count": dg.MetadataValue.int(len(frame)), "delta_version": version, **data.summary(),
        **protocol_fields(data.protocol),
        "preview": dg.MetadataValue.md(frame.head(10).to_markdown(index=False))})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(SESSION_MODELS_KEY, deps=[SESSIONS_KEY], group_name="training", kinds={"mlflow", "python"},
                     description="Every session model (CLICKREC_SESSION_MODELS): grid searched on validation, "
                                 "session_* metrics on validation, test_session_* after a refit on train + "
                                 "validation; one MLflow run each, registered under "
                                 "CLICKREC_SESSION_REGISTERED_MODEL_NAME."),
        dg.AssetSpec(SESSION_CHAMPION_KEY, deps=[SESSION_MODELS_KEY], group_name="training", kinds={"mlflow"},
                     description="The session gate: the best session model gets `session-champion` only when its "
                                 "paired bootstrap interval over the champion and popularity lies above 0."),
    ],
    check_specs=[
        checks.spec(SESSION_MODELS_KEY, "runs_on_tracking_server",
                    "Every session model's run reads back finished, with session_* and test_session_* metrics."),
        checks.spec(SESSION_CHAMPION_KEY, "session_champion_exists",
                    "A session champion is registered (what the API blends in).", blocking=True),
    ],
)
def session_models(context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource):
    settings = mlflow.over(lake.settings())
    with duck.connect(settings) as con:
        frame = con.execute(f"SELECT * FROM {duck.scan(GOLD_SESSIONS.path(settings))}").df()
    protocol = session_protocol(settings)
    data = session_data_from_frame(frame, protocol)
    registered, uri, metric = settings.session_registered_model_name, settings.tracking_uri, settings.session_metric
    champion = session_champion_config(registered, uri)
    names = list(settings.session_models) + ([champion] if champion else [])
    candidates = train_session_candidates(data, names, settings.session_grids, metric, progress=context.log.info,
                                          workers=settings.training_threads)
    versions = {"data_version_gold_sessions": str(latest_version(GOLD_SESSIONS.path(settings), settings))}
    table = session_comparison_table(candidates)
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "session_comparison.md"
        report.write_text(table + "\n")
        chart = session_comparison_chart(candidates, Path(scratch) / "session_comparison.png",
                                         n_boot=settings.gate_bootstrap_samples)
        for candidate in candidates:
            candidate.run = log_session_run(
                settings.mlflow_experiment, candidate, data.item_ids, params={**protocol_fields(protocol), **versions},
                tags={TRAINING_TAG: context.run.run_id}, tracking_uri=uri, artifacts=[report, chart],
                registered_model_name=registered, n_boot=settings.gate_bootstrap_samples)

    best = best_session_challenger(candidates, metric)
    references, note = session_gate_references(best, candidates, champion, metric, settings.gate_confidence,
                                               settings.gate_bootstrap_samples)
    decision = decide(best.value(metric), references, f"session {metric}", settings.gate_confidence,
                      settings.gate_min_relative_lift)
    reason = decision.reason + (f" ({note})" if note else "")
    client = MlflowClient(uri)
    version = best.run.registered_version
    client.set_registered_model_alias(registered, SESSION_CHAMPION if decision.promote else SESSION_CHALLENGER,
                                      version)
    client.set_model_version_tag(registered, version, GATE_TAG, reason[:5000])
    client.set_tag(best.run.run_id, GATE_TAG, reason[:5000])

    yield dg.MaterializeResult(asset_key=SESSION_MODELS_KEY, metadata={
        **{f"{c.name}_session_{metric}": round(c.value(metric), 5) for c in candidates},
        **{f"{c.name}_test_session_{metric}": round(c.test.value(metric), 5) for c in candidates},
        "comparison": dg.MetadataValue.md(table), **data.summary()})
    current = client.get_model_version_by_alias(registered, SESSION_CHAMPION).version if decision.promote or \
        champion else None
    yield dg.MaterializeResult(asset_key=SESSION_CHAMPION_KEY, metadata={
        "promoted": decision.promote, "reason": reason, "challenger": best.name, "challenger_version": version,
        "champion_version": str(current), "registered_model": registered})

    read_back = {c.name: client.get_run(c.run.run_id) for c in candidates}
    incomplete = [name for name, run in read_back.items() if run.info.status != "FINISHED"
                  or not {"session_hitrate_at_20", "test_session_hitrate_at_20"} <= set(run.data.metrics)]
    yield dg.AssetCheckResult(asset_key=SESSION_MODELS_KEY, check_name="runs_on_tracking_server",
                              passed=not incomplete, metadata={"runs": len(read_back), "incomplete": incomplete})
    yield dg.AssetCheckResult(asset_key=SESSION_CHAMPION_KEY, check_name="session_champion_exists",
                              passed=current is not None, metadata={"champion_version": str(current)})
