"""Alerts to a Slack-compatible incoming webhook (CLICKREC_ALERT_WEBHOOK_URL)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from clickrec_platform.settings import Settings

log = logging.getLogger("clickrec.alerts")


def alert_payload(title: str, lines: list[str], link: str | None = None) -> dict:
    """Slack's `text` (shown by every compatible receiver) plus blocks for a richer message."""
    text = f"*{title}*\n" + "\n".join(lines) + (f"\n<{link}|Open>" if link else "")
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def send_alert(settings: Settings, title: str, lines: list[str], link: str | None = None) -> bool:
    """Post an alert; without a webhook configured it is only logged. Never raises: an alert that
    cannot be delivered must not fail what it reports on (the failure is logged instead)."""
    log.warning("ALERT %s: %s", title, " | ".join(lines))
    if settings.alert_webhook_url is None:
        return False
    try:
        response = httpx.post(settings.alert_webhook_url.get_secret_value(),
                              json=alert_payload(title, lines, link), timeout=10)
        response.raise_for_status()
        return True
    except httpx.HTTPError as error:
        log.error("alert not delivered: %s", error)
        return False


@dataclass(frozen=True)
class FailedCheck:
    """A blocking asset check that failed (severity ERROR): what a run-failure alert names."""

    asset: str
    check: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    partitions: tuple[str, ...] = ()


def run_failure_alert(job: str, run_id: str, failed_checks: list[FailedCheck], other_failures: list[str],
                      error: str | None = None) -> tuple[str, list[str]]:
    """Title and lines of the one alert a failed run gets. When blocking checks failed, it names each
    (asset, check, partitions, description, metadata) and says what else failed; otherwise the run's error."""
    if not failed_checks:
        return f"Dagster run failed: {job}", [f"run {run_id}", f"error: {error or 'see the run log'}",
                                              *(f"failed step {failure}" for failure in other_failures)]
    first = failed_checks[0]
    title = (f"Blocking check failed: {first.asset} · {first.check}" if len(failed_checks) == 1
             else f"{len(failed_checks)} blocking checks failed in {job}")
    lines = []
    for check in failed_checks:
        where = f" (partitions {_ranged(check.partitions)})" if check.partitions else ""
        lines.append(f"• `{check.asset}` check `{check.check}`{where}: {check.description or 'did not pass'}")
        if check.metadata:
            lines.append("   " + ", ".join(f"{key}={value}" for key, value in check.metadata.items()))
    lines.append(f"What depends on {'it' if len(failed_checks) == 1 else 'them'} was not materialised: "
                 f"run {run_id} of {job} failed.")
    lines += [f"also failed: {failure}" for failure in other_failures]
    return title, lines


def metadata_text(value: object, limit: int = 120) -> str:
    """A metadata value as one short line (previews and tables are cut)."""
    text = " ".join(str(getattr(value, "value", value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ranged(partitions: tuple[str, ...]) -> str:
    ordered = sorted(partitions)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]} … {ordered[-1]} ({len(ordered)})"
