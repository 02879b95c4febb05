"""Alerts reach a Slack-compatible webhook (a real HTTP receiver on loopback), and never raise."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from pydantic import SecretStr

from clickrec_platform.ops.alerts import send_alert
from clickrec_platform.settings import Settings


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_an_alert_posts_slack_text_and_blocks(receiver, tmp_path):
    url, received = receiver
    settings = Settings(home=tmp_path, alert_webhook_url=SecretStr(url))
    assert send_alert(settings, "Dagster run failed: training_graph", ["run 42", "error: boom"], link="http://x/runs/42")
    (payload,) = received
    assert payload["text"].startswith("*Dagster run failed: training_graph*")
    assert "error: boom" in payload["text"] and "<http://x/runs/42|Open>" in payload["text"]
    assert payload["blocks"][0]["text"]["type"] == "mrkdwn"


def test_without_a_webhook_or_with_a_dead_one_nothing_raises(tmp_path):
    assert send_alert(Settings(home=tmp_path), "t", ["l"]) is False
    dead = Settings(home=tmp_path, alert_webhook_url=SecretStr("http://127.0.0.1:9/nothing-listens"))
    assert send_alert(dead, "t", ["l"]) is False
