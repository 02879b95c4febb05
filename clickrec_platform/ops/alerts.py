"""Alerts to a Slack-compatible incoming webhook (CLICKREC_ALERT_WEBHOOK_URL)."""

from __future__ import annotations

import logging

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
