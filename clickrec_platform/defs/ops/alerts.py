"""Alerting hook points: a run-failure sensor and a failed-blocking-check sensor, both posting to the
Slack-compatible webhook in CLICKREC_ALERT_WEBHOOK_URL (only logged when none is set)."""

import dagster as dg

from clickrec_platform.ops.alerts import send_alert
from clickrec_platform.settings import get_settings


@dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    settings = get_settings()
    run = context.dagster_run
    send_alert(settings, f"Dagster run failed: {run.job_name}",
               [f"run {run.run_id}", f"error: {context.failure_event.message or 'see the run log'}"],
               link=f"{settings.dagster_url}/runs/{run.run_id}")


@dg.definitions
def alert_sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[alert_on_run_failure])
