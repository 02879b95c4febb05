"""Alerts reach a Slack-compatible webhook (a real HTTP receiver on loopback), and never raise; a failed run
is alerted once, naming the blocking checks that failed it (asset, check, metadata)."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from pydantic import SecretStr

from clickrec_platform.defs.ops.alerts import alert_on_run_failure
from clickrec_platform.ops.alerts import FailedCheck, run_failure_alert, send_alert
from clickrec_platform.settings import Settings


def test_an_alert_posts_slack_text_and_blocks(alert_webhook, tmp_path):
    url, received = alert_webhook
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


def test_the_alert_of_a_run_failed_by_checks_names_them_and_what_else_failed():
    checks = [FailedCheck("delta/silver/categories", "tree_is_sound", "2 categories in a cycle",
                          {"cycles": "[[7, 9]]"}),
              FailedCheck("delta/gold/interactions", "unique_keys", None, {}, ("2015-05-05", "2015-05-04"))]
    title, lines = run_failure_alert("training_graph", "r1", checks, ["publish: boom"])
    assert title == "2 blocking checks failed in training_graph"
    text = "\n".join(lines)
    assert "`delta/silver/categories` check `tree_is_sound`: 2 categories in a cycle" in text
    assert "cycles=[[7, 9]]" in text
    assert "`delta/gold/interactions` check `unique_keys` (partitions 2015-05-04 … 2015-05-05 (2))" in text
    assert "run r1 of training_graph failed" in text and "also failed: publish: boom" in text
    assert run_failure_alert("j", "r2", checks[:1], [])[0] == "Blocking check failed: delta/silver/categories · tree_is_sound"
    assert run_failure_alert("j", "r3", [], [], "OOM") == ("Dagster run failed: j", ["run r3", "error: OOM"])


# ------------------------------------------------------------------ the sensor, on real Dagster runs
@dg.asset(check_specs=[dg.AssetCheckSpec("no_negative_prices", asset="prices", blocking=True),
                       dg.AssetCheckSpec("few_nulls", asset="prices", blocking=False)])
def prices():
    yield dg.MaterializeResult(metadata={"rows": 3})
    yield dg.AssetCheckResult(check_name="no_negative_prices", passed=False, description="2 prices below zero",
                              metadata={"negative_rows": 2, "sample": "item 7: -3.5"})
    yield dg.AssetCheckResult(check_name="few_nulls", passed=False)  # not blocking: not what failed the run


@dg.asset(deps=[prices])
def price_bands():
    return None


@dg.asset
def broken():
    raise RuntimeError("disk full")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    repository = dg.Definitions(assets=[prices, price_bands, broken], sensors=[alert_on_run_failure]
                                ).get_repository_def()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
    return alert_on_run_failure.evaluate_tick(context).cursor


def test_a_failed_blocking_check_is_alerted_once_naming_check_asset_and_metadata(alert_webhook, instance):
    _url, received = alert_webhook
    cursor = _tick(instance, None)  # the sensor starts from now
    result = dg.materialize([prices, price_bands], instance=instance, raise_on_error=False)
    assert not result.success

    cursor = _tick(instance, cursor)
    cursor = _tick(instance, cursor)  # a later tick: the same failure is not announced again

    (payload,) = received
    text = payload["text"]
    assert text.startswith("*Blocking check failed: prices · no_negative_prices*")
    assert "`prices` check `no_negative_prices`: 2 prices below zero" in text
    assert "negative_rows=2, sample=item 7: -3.5" in text
    assert "few_nulls" not in text and "also failed" not in text
    assert f"/runs/{result.run_id}|Open>" in text


def test_a_run_failing_otherwise_gets_the_plain_run_failure_alert(alert_webhook, instance):
    _url, received = alert_webhook
    cursor = _tick(instance, None)
    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    _tick(instance, cursor)
    (payload,) = received
    assert payload["text"].startswith("*Dagster run failed: __ephemeral_asset_job__*")
    assert f"run {result.run_id}" in payload["text"] and "check" not in payload["text"]
    assert "failed step broken: RuntimeError: disk full" in payload["text"]
