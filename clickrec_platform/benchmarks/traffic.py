"""Live traffic for the benchmarks that need it (`bench soak`, `bench api --with-live-traffic`): a steady
stream of generated events stamped when sent, the speed layer and the continuous stream job, in a scratch
namespace, each started as the stack starts it (the services' own command lines and priorities: the stream
job at the batch niceness, on its continuous-mode Spark cores), with their pid and log files in a run folder
of their own; and probes that time produce → Postgres.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Producer
from psycopg import sql

from clickrec_platform.benchmarks.live_path import send_probe
from clickrec_platform.ops.lifecycle import process_stop_event
from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack import service
from clickrec_platform.stack.process import ManagedProcess
from clickrec_platform.stack.scratch import ISOLATED_FIELDS

PROBE_EVERY_S = 3.0
STARTUP_TIMEOUT_S = 600.0  # the stream job's first batch on a loaded 2-core machine


def stream_committed_offsets(settings: Settings) -> dict[int, int] | None:
    """Next offsets of the stream job's last committed ingest batch, from its checkpoint (None before one)."""
    from spark_jobs.clickstream_stream import checkpoint

    root = Path(checkpoint(settings, "ingest"))
    commits = sorted((int(p.name) for p in (root / "commits").glob("[0-9]*")), reverse=True)
    for batch in commits:
        try:
            lines = (root / "offsets" / str(batch)).read_text().splitlines()
        except OSError:
            continue
        offsets = json.loads(lines[-1]).get(settings.kafka_topic, {})
        return {int(p): int(o) for p, o in offsets.items()}
    return None


def stream_lag(settings: Settings) -> int:
    """Records on the topic beyond the stream job's last committed ingest batch (all of them before one)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "clickrec-bench-lag"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(settings.kafka_topic, p), timeout=10)[1]
                for p in range(settings.kafka_topic_partitions)}
    finally:
        consumer.close()
    committed = stream_committed_offsets(settings) or {}
    return sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())


def ingest_batches_since(settings: Settings, since_epoch_s: float) -> list[tuple[int, float]]:
    """(records, seconds) of the stream job's ingest micro-batches that started after ``since_epoch_s``, as the
    job booked them in ops.stream_batches (read through delta-rs)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from clickrec_platform.lake.storage import delta_rs_location
    from clickrec_platform.lake.tables import OPS_STREAM_BATCHES

    location, options = delta_rs_location(OPS_STREAM_BATCHES.path(settings), settings)
    table = DeltaTable(location, storage_options=options).to_pyarrow_table(columns=["bronze_rows", "started_at",
                                                                                    "seconds"])
    started = pc.cast(table.column("started_at"), "int64").to_pylist()  # microseconds since the epoch
    return [(rows, seconds) for rows, at, seconds in zip(table.column("bronze_rows").to_pylist(), started,
                                                        table.column("seconds").to_pylist(), strict=True)
            if at is not None and at / 1e6 >= since_epoch_s]


class Probes(threading.Thread):
    """A probe event every ``PROBE_EVERY_S``, timed from Kafka's acknowledgement until visible in Postgres."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0):
        super().__init__(daemon=True, name="soak-probes")
        self.settings, self.timeout_s = settings, timeout_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.timeouts = 0
        self.visitor = 9_100_000_000_000

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            taken, timeouts = self.latencies, self.timeouts
            self.latencies, self.timeouts = [], 0
        return taken, timeouts

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 0})
        query = sql.SQL("SELECT 1 FROM {} WHERE visitor_id = %s").format(
            sql.Identifier(self.settings.gold_schema, "user_recent_items"))
        with psycopg.connect(self.settings.postgres_dsn(), autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                self.visitor += 1
                send_probe(producer, self.settings.kafka_topic, self.visitor)
                sent = time.perf_counter()
                while True:
                    if conn.execute(query, (self.visitor,)).fetchone():
                        with self.lock:
                            self.latencies.append(time.perf_counter() - sent)
                        break
                    if time.perf_counter() - sent > self.timeout_s:
                        with self.lock:
                            self.timeouts += 1
                        break
                    time.sleep(0.005)
                self.stop.wait(max(0.0, PROBE_EVERY_S - (time.monotonic() - started)))


@dataclass
class LiveTraffic:
    settings: Settings  # the scratch namespace, with the metrics ports the processes serve on
    processes: dict[str, ManagedProcess]  # "traffic", "speed layer", "stream job"
    environment: dict[str, str]  # what points a child process at the namespace
    stream_nice: int

    def check_running(self) -> None:
        for name, process in self.processes.items():
            if process.pid() is None:
                raise RuntimeError(f"the live traffic's {name} exited; its log: {process.log_file}")


@contextmanager
def live_traffic(scratch: Settings, rate: float, minutes: float, run_dir: Path,
                 say: Callable[[str], None] = lambda _line: None) -> Iterator[LiveTraffic]:
    """Traffic at ``rate`` events/s (for at most ``minutes``), the speed layer and the stream job, on the scratch
    namespace; yields once the stream job committed its first ingest batch; stops them all afterwards."""
    scratch = scratch.model_copy(update={"stream_metrics_port": _free_port(), "speed_metrics_port": _free_port()})
    env = scratch.as_environment(*ISOLATED_FIELDS, "stream_metrics_port", "speed_metrics_port")
    stream_service, speed_service = service(scratch, "stream"), service(scratch, "speed-layer")  # their commands
    stream, speed = stream_service.launch_process(), speed_service.launch_process()
    processes = {
        "speed layer": _process("speed", speed.arguments(), run_dir, env, nice=speed.nice,
                                ready=lambda: _answers(speed_service.url), marker="speed"),
        "traffic": _process("traffic", [sys.executable, "-m", "clickrec_platform.benchmarks.traffic",
                                        "--rate", f"{rate:g}", "--minutes", f"{minutes:g}"],
                            run_dir, env, ready=lambda: True, marker="benchmarks.traffic"),
        "stream job": _process("stream", stream.arguments(), run_dir, env, nice=stream.nice,
                               ready=lambda: stream_committed_offsets(scratch) is not None, marker="stream"),
    }
    say(f"live traffic: {rate:g} events/s to topic {scratch.kafka_topic}; speed layer at nice {speed.nice}; stream "
        f"job at nice {stream.nice}, local Spark on {scratch.stream_continuous_cores or 'all'} core(s) in "
        f"continuous mode; schema {scratch.gold_schema}, lake {scratch.lake_uri}")
    started = time.monotonic()
    try:
        for name, process in processes.items():  # the stream job is ready at its first committed batch
            process.start(STARTUP_TIMEOUT_S)
            say(f"{name} running ({time.monotonic() - started:.0f}s)")
        yield LiveTraffic(scratch, processes, env, stream.nice)
    finally:
        for process in processes.values():
            process.stop(timeout_s=60)


def _process(name: str, argv: list[str], run_dir: Path, env: dict[str, str], ready: Callable[[], bool],
             nice: int = 0, marker: str = "") -> ManagedProcess:
    return ManagedProcess(name=name, argv=argv, state_dir=run_dir, ready=ready, env=lambda: env, cwd=PROJECT_ROOT,
                          cmdline_marker=marker, nice=nice)


def _answers(url: str) -> bool:

    return httpx.get(url, timeout=2).status_code == 200


def _free_port() -> int:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def traffic_main(argv: list[str]) -> None:
    """`python -m clickrec_platform.benchmarks.traffic --rate R --minutes M`: generated events stamped when
    sent, at a steady rate, to the settings' topic, until SIGTERM or M minutes."""
    import argparse

    from clickrec_platform.benchmarks.live_path import produce_live
    from clickrec_platform.settings import get_settings

    parser = argparse.ArgumentParser(prog="clickrec_platform.benchmarks.traffic")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--minutes", type=float, required=True)
    args = parser.parse_args(argv)
    stop = process_stop_event()
    delivered: list[int] = []
    threading.Timer(args.minutes * 60, stop.set).start()
    produce_live(get_settings(), args.rate, stop, delivered, seconds=args.minutes * 60)
    print(f"delivered {delivered[0] if delivered else 0}", flush=True)
    os._exit(0)  # the timer thread need not be waited for




if __name__ == "__main__":
    traffic_main(sys.argv[1:])
