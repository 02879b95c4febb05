"""Alerting: one post to the Slack-compatible webhook in CLICKREC_ALERT_WEBHOOK_URL (only logged when none
is set) for every failed run. A failed blocking check fails its step, and so the run: the run's alert
then names the checks (asset, check, partitions, description, metadata) instead of the bare error, so the
same failure is never announced twice."""

import dagster as dg
from dagster._core.events import DagsterEventType

from clickrec_platform.ops.alerts import FailedCheck, metadata_text, run_failure_alert, send_alert
from clickrec_platform.settings import get_settings

# What a step raises when a blocking check of its asset failed: its failure is the check's.
BLOCKING_CHECK_ERROR = "DagsterAssetCheckFailedError"
METADATA_SHOWN = 8  # metadata entries per check in an alert


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str,
                           repository: dg.RepositoryDefinition | None = None) -> tuple[list[FailedCheck], list[str]]:
    """The run's failed blocking checks (one per asset and check, partitions gathered; described by the
    result, else by the check's definition in ``repository``) and its step failures not caused by one."""
    records = instance.all_logs(run_id, of_type={DagsterEventType.ASSET_CHECK_EVALUATION,
                                                 DagsterEventType.STEP_FAILURE})
    checks: dict[tuple[str, str], FailedCheck] = {}
    others: list[str] = []
    for record in records:
        event = record.get_dagster_event()
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            if error is None or error.cls_name != BLOCKING_CHECK_ERROR:
                others.append(f"{event.step_key}: {_first_cause(error)}")
            continue
        data = event.asset_check_evaluation_data
        if data.passed or not data.blocking or data.severity != dg.AssetCheckSeverity.ERROR:
            continue
        key = (data.asset_key.to_user_string(), data.check_name)
        seen = checks.get(key)
        partitions = seen.partitions if seen else ()
        if data.partition and data.partition not in partitions:
            partitions = (*partitions, data.partition)
        checks[key] = FailedCheck(
            asset=key[0], check=key[1],
            description=data.description or (seen.description if seen else _described(repository, data)),
            metadata={name: metadata_text(value) for name, value in list(data.metadata.items())[:METADATA_SHOWN]},
            partitions=partitions)
    return list(checks.values()), others


def _described(repository: dg.RepositoryDefinition | None, evaluation) -> str | None:
    """What the check's definition says it checks."""
    if repository is None:
        return None
    try:
        spec = repository.asset_graph.get_check_spec(dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name))
    except Exception:  # noqa: BLE001 - a check renamed or removed since the run: the alert goes out anyway
        return None
    return spec.description


def _first_cause(error) -> str:
    """The error that started it (Dagster wraps what the asset raised), on one line."""
    if error is None:
        return "failed"
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[0] if lines else error.cls_name


@dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    settings = get_settings()
    run = context.dagster_run
    checks, others = failed_blocking_checks(context.instance, run.run_id, context.repository_def)
    title, lines = run_failure_alert(run.job_name, run.run_id, checks, others, context.failure_event.message)
    send_alert(settings, title, lines, link=f"{settings.dagster_url}/runs/{run.run_id}")


@dg.definitions
def alert_sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[alert_on_run_failure])
