"""``clickrec speed``: one speed-layer consumer in the foreground, until SIGTERM/Ctrl-C.

It logs a line every ``--log-every`` seconds (batches, records, what became of them, the slowest
batch), serves Prometheus metrics, and on a failure it cannot recover from (Postgres and Kafka outages
it rides out) sends an alert to ``CLICKREC_ALERT_WEBHOOK_URL`` and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter

from clickrec_platform.ops.alerts import send_alert
from clickrec_platform.ops.lifecycle import process_stop_event
from clickrec_platform.settings import Settings, get_settings
from clickrec_platform.speed.consumer import BatchApplied, SpeedLayer
from clickrec_platform.speed.metrics import SpeedMetrics

log = logging.getLogger("clickrec.speed")


class BatchLog:
    """Sums batches and logs them every ``every_s`` seconds, rather than a line per batch."""

    def __init__(self, every_s: float):
        self.every_s, self.since, self.slowest = every_s, time.monotonic(), 0.0
        self.totals: Counter[str] = Counter()

    def __call__(self, batch: BatchApplied) -> None:
        self.totals.update(batches=1, records=batch.records, valid=batch.valid, rejected=sum(batch.rejected.values()),
                           inserted=batch.live.inserted, windows=batch.windows_refreshed)
        self.slowest = max(self.slowest, batch.seconds)
        if time.monotonic() - self.since >= self.every_s:
            t = self.totals
            log.info("%d batches, %d records (%d valid, %d rejected), %d new live events, %d windows refreshed; "
                     "slowest batch %.3fs", t["batches"], t["records"], t["valid"], t["rejected"], t["inserted"],
                     t["windows"], self.slowest)
            self.since, self.totals, self.slowest = time.monotonic(), Counter(), 0.0


def run(settings: Settings, stop: threading.Event, metrics: SpeedMetrics | None = None, log_every_s: float = 10.0,
        **options) -> None:
    batch_log = BatchLog(log_every_s)

    def on_batch(batch: BatchApplied) -> None:
        batch_log(batch)
        if metrics:
            metrics.record_batch(batch)

    layer = SpeedLayer(settings, on_batch=on_batch, on_lag=metrics.record_lag if metrics else None,
                       on_problem=metrics.record_problem if metrics else None, **options)
    log.info("speed layer: %s topic %s → Postgres schema %s, group %s", settings.kafka_bootstrap_servers,
             settings.kafka_topic, settings.gold_schema, layer.group)
    try:
        layer.run(stop)
    except Exception as error:
        send_alert(settings, "clickrec speed layer failed", [
            f"{type(error).__name__}: {str(error).strip()[:500]}",
            f"topic {settings.kafka_topic}, group {layer.group}, schema {settings.gold_schema}",
            "It stopped; restart it (`clickrec up speed-layer`) once the cause is fixed: it resumes from the "
            "offsets stored in Postgres and loses or duplicates nothing."])
        raise


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="clickrec speed", description=__doc__)
    parser.add_argument("--group", default=settings.speed_consumer_group, help="Kafka consumer group")
    parser.add_argument("--max-batch", type=int, default=settings.speed_max_batch_events,
                        help="records per Postgres transaction at most")
    parser.add_argument("--linger-ms", type=float, default=settings.speed_linger_ms,
                        help="how long a batch waits for more records after its first")
    parser.add_argument("--window-refresh", type=float, default=settings.speed_window_refresh_seconds,
                        help="seconds between recomputations of the live windows")
    parser.add_argument("--metrics-port", type=int, default=settings.speed_metrics_port,
                        help="Prometheus metrics port (0: none)")
    parser.add_argument("--log-every", type=float, default=10.0, help="seconds between summary log lines")
    args = parser.parse_args(argv)
    stop = process_stop_event()
    metrics = SpeedMetrics()
    if args.metrics_port:
        metrics.serve(settings.bind_host, args.metrics_port)
    try:
        run(settings, stop, metrics, log_every_s=args.log_every, group=args.group, max_batch=args.max_batch,
            window_refresh_s=args.window_refresh, linger_ms=args.linger_ms)
    except Exception:
        log.exception("speed layer failed")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
