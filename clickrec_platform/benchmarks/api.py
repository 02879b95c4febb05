"""`clickrec bench api`: the API under load from wrk on loopback, against generated data.

Everything happens in a scratch schema: the published tables are filled through the real publish
path (so its COPY throughput is measured too), live tables through the stream job's loaders, then
`clickrec serve` runs as a child process and wrk loads one endpoint at a time with ids drawn at
random (a tenth of the visitors unknown, so the fallback path is part of the mix).

By default a session champion (V-SKNN on generated sessions) is registered under a scratch name and
every worker loads it, and the visitors with live recent items replay real sessions, so
`/recommendations` is measured with the session model in the request path (`--no-session-model`:
the recent items' similar items instead, as before issue #18).

Over 400 lines because it is one benchmark end to end (scratch data, the server as a child process, wrk,
the report); each part is a function used only here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pyarrow as pa

from clickrec_platform.serving.gold_tables import (
    ITEMS,
    POPULAR_ITEMS,
    SIMILAR_ITEMS,
    USER_RECOMMENDATIONS,
    USER_STATS,
    prepare_gold_schema,
)
from clickrec_platform.serving.live_tables import replace_windows, upsert_recent_items
from clickrec_platform.serving.publish import publish
from clickrec_platform.settings import Settings
from clickrec_platform.stack.scratch import scratch_settings

TOP_N = 20
CATEGORIES = 200
RECENT_SHARE = 0.2  # visitors with live recent items
RECENT_PER_VISITOR = 10

_LUA = """
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", string.format("%(template)s", math.random(%(low)d, %(high)d)))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non2xx\\": %%d, \\"socket_errors\\": %%d, " ..
    "\\"p50_us\\": %%d, \\"p95_us\\": %%d, \\"p99_us\\": %%d, \\"max_us\\": %%d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def seed_serving_data(conn: psycopg.Connection, settings: Settings, visitors: int, items: int,
                      seed: int = 7, sessions: list[list[int]] | None = None) -> list[str]:
    """Fill the scratch schema: recommendations, similar items, popularity, stats, the catalogue and
    live tables; returns lines about the publishes (rows/s). With `sessions` (item id lists), each
    visitor with live recent items gets the first items of one of them, a minute apart, so the
    session model has real sessions to answer for; otherwise random items."""
    rng = np.random.default_rng(seed)
    schema, role = settings.gold_schema, settings.reader_role
    now = datetime.now(UTC)
    lineage = {"model_name": "bench", "model_version": "1", "run_id": "bench-run", "generated_at": now}

    def ranked(keys: np.ndarray, key: str, other: str) -> pa.Table:
        n = len(keys) * TOP_N
        return pa.table({key: np.repeat(keys, TOP_N), other: rng.integers(1, items + 1, n),
                         "rank": np.tile(np.arange(1, TOP_N + 1, dtype=np.int32), len(keys)),
                         "score": np.tile(np.linspace(1, 0.05, TOP_N), len(keys)),
                         **{k: pa.array([v] * n) for k, v in lineage.items()}})

    categories = rng.integers(1, CATEGORIES + 1, items)
    price = np.round(rng.lognormal(3, 1, items), 2)
    weight = rng.pareto(1.2, items) * 10
    catalogue = pa.table({
        "item_id": np.arange(1, items + 1), "title": [f"Item {i}" for i in range(1, items + 1)],
        "category_id": categories, "root_category_id": (categories - 1) // 20 + 1,
        "category_path": [[int((c - 1) // 20 + 1000), int(c)] for c in categories],
        "category_terms": [f"{(c - 1) // 20 + 1000} {c}" for c in categories],
        "price": price, "price_band": np.searchsorted(np.quantile(price, [0.2, 0.4, 0.6, 0.8]), price) + 1,
        "available": rng.random(items) < 0.8,
        **{name: rng.integers(0, 100, items) for name in
           ("views", "addtocarts", "likes", "transactions", "unique_visitors", "views_1d", "views_7d", "views_30d")},
        **{name: weight for name in ("weight", "weight_1d", "weight_7d", "weight_30d")},
        "conversion_rate": rng.random(items) * 0.05, "cart_rate": rng.random(items) * 0.1,
        "source_version": np.full(items, 1)})
    overall = pa.table({"scope": ["overall"] * 100, "category_id": pa.nulls(100, pa.int64()),
                        "item_id": np.argsort(-weight)[:100] + 1, "rank": np.arange(1, 101, dtype=np.int32),
                        "score": np.sort(weight)[::-1][:100], "window_days": np.full(100, 7, dtype=np.int32),
                        "model_version": ["1"] * 100, "run_id": ["bench-run"] * 100, "generated_at": [now] * 100})
    per_category = pa.table({
        "scope": ["category"] * (CATEGORIES * 50), "category_id": np.repeat(np.arange(1, CATEGORIES + 1), 50),
        "item_id": rng.integers(1, items + 1, CATEGORIES * 50), "rank": np.tile(np.arange(1, 51, dtype=np.int32), CATEGORIES),
        "score": np.tile(np.linspace(50, 1, 50), CATEGORIES), "window_days": np.full(CATEGORIES * 50, 7, dtype=np.int32),
        "model_version": ["1"] * (CATEGORIES * 50), "run_id": ["bench-run"] * (CATEGORIES * 50),
        "generated_at": [now] * (CATEGORIES * 50)})
    stats = pa.table({
        "visitor_id": np.arange(1, visitors + 1),
        **{name: rng.integers(0, 50, visitors) for name in
           ("views", "addtocarts", "likes", "transactions", "searches", "events", "active_days", "sessions")},
        "first_seen": [now - timedelta(days=30)] * visitors, "last_seen": [now] * visitors,
        "hour_profile": pa.array([[1 / 24] * 24] * visitors), "weekday_profile": pa.array([[1 / 7] * 7] * visitors),
        **{name: rng.random(visitors) for name in ("recency_days", "events_per_active_day", "view_to_cart_rate",
                                                    "view_to_purchase_rate", "cart_to_purchase_rate")},
        "top_categories": pa.array([[1, 2, 3]] * visitors), "source_version": np.full(visitors, 1)})

    lines = []
    prepare_gold_schema(conn, settings)
    for spec, table in ((USER_RECOMMENDATIONS, ranked(np.arange(1, visitors + 1), "visitor_id", "item_id")),
                        (SIMILAR_ITEMS, ranked(np.arange(1, items + 1), "item_id", "similar_item_id")),
                        (POPULAR_ITEMS, pa.concat_tables([overall, per_category])),
                        (USER_STATS, stats), (ITEMS, catalogue)):
        result = publish(conn, spec, table, schema=schema, reader_role=role)
        total = sum(result.seconds.values())
        lines.append(f"published {spec.name:<21} {result.rows:>10,} rows in {total:5.1f}s "
                     f"({result.rows / max(result.seconds['load'], 1e-9):,.0f} rows/s COPY; "
                     f"indexes {result.seconds['index']:.1f}s, swap {result.seconds['swap'] * 1000:.0f} ms)")

    recent_visitors = rng.choice(np.arange(1, visitors + 1), int(visitors * RECENT_SHARE), replace=False)
    n = len(recent_visitors) * RECENT_PER_VISITOR
    seen_at = pa.array([now - timedelta(seconds=int(s)) for s in rng.integers(0, 3600, n)], pa.timestamp("us", tz="UTC"))
    recent = {"visitor_id": np.repeat(recent_visitors, RECENT_PER_VISITOR), "item_id": rng.integers(1, items + 1, n),
              "last_event": ["view"] * n, "last_seen_at": seen_at}
    if sessions:
        rows = [(visitor, item, now - timedelta(minutes=len(chosen) - position))
                for visitor in recent_visitors.tolist()
                for chosen in [list(dict.fromkeys(sessions[rng.integers(len(sessions))]))[:RECENT_PER_VISITOR]]
                for position, item in enumerate(chosen)]
        recent = {"visitor_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "last_event": ["view"] * len(rows),
                  "last_seen_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC"))}
    upsert_recent_items(conn, pa.table(recent), schema=schema)
    ends = [now.replace(second=0, microsecond=0) - timedelta(minutes=5 * w) for w in range(12)]
    trending = pa.table({"window_start": [end - timedelta(minutes=10) for end in ends for _ in range(50)],
                         "window_end": [end for end in ends for _ in range(50)],
                         "item_id": np.concatenate([rng.choice(np.arange(1, items + 1), 50, replace=False)
                                                    for _ in ends]),
                         "score": rng.random(600) * 100, "event_count": rng.integers(1, 100, 600),
                         "rank": np.tile(np.arange(1, 51, dtype=np.int32), 12)})
    replace_windows(conn, "trending_items", trending, [end - timedelta(minutes=10) for end in ends], schema=schema)
    lines.append(f"live tables: {len(recent_visitors):,} visitors with up to {RECENT_PER_VISITOR} recent items"
                 f"{' (the first items of generated sessions)' if sessions else ''}, "
                 f"{trending.num_rows} trending rows in 12 windows")
    return lines


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with code {server.returncode} before answering")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not answer {url}/health within {timeout_s:.0f}s")


def _counted(exposition: str, endpoint: str) -> float:
    """Requests to ``endpoint`` in a Prometheus exposition, over every status code."""
    prefix = f'clickrec_api_requests_total{{endpoint="{endpoint}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(prefix))


def run_wrk(url: str, template: str, low: int, high: int, duration_s: float, connections: int,
            threads: int = 1, seed: int = 1) -> dict[str, float]:
    """One wrk run over ``url + template % random id``; requests/s and latency percentiles (ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"seed": seed, "template": template, "low": low, "high": high})
    try:
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "5s",
             "-s", script.name, url], capture_output=True, text=True, timeout=duration_s + 60)
    finally:
        os.unlink(script.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout[-500:]}")
    raw = json.loads(line.removeprefix("RESULT "))
    seconds = raw["duration_us"] / 1e6
    return {"rps": raw["requests"] / seconds, "requests": raw["requests"], "non2xx": raw["non2xx"],
            "socket_errors": raw["socket_errors"], **{f"{p}_ms": raw[f"{p}_us"] / 1000 for p in ("p50", "p95", "p99", "max")}}


def register_session_model(settings: Settings, events: int = 400_000) -> tuple[list[list[int]], str]:
    """V-SKNN (session-rec's tuned RetailRocket values, the benchmark's best session model) fitted on
    generated sessions and registered as `settings`' session champion; returns the test sessions
    (item ids) the benchmark's visitors replay, and a line saying what was registered."""
    from mlflow import MlflowClient

    from clickrec_platform.benchmarks.sessions import prepare
    from clickrec_platform.recommend.session.protocol import SessionProtocol
    from clickrec_platform.recommend.session.tracking import SESSION_CHAMPION, log_session_run
    from clickrec_platform.recommend.session.training import train_session_candidates
    from clickrec_platform.sources.generator import GeneratorConfig

    data = prepare(GeneratorConfig(events=events, days=27, seed=42),
                   SessionProtocol(split_on_session_id=False, test_days=2, validation_days=2))
    (candidate,) = train_session_candidates(data, ["vsknn"], grids={}, progress=lambda _: None)
    run = log_session_run(settings.mlflow_experiment, candidate, data.item_ids, params={}, tags={},
                          tracking_uri=settings.tracking_uri, registered_model_name=settings.session_registered_model_name,
                          n_boot=100)
    assert run.registered_version is not None  # logged with a registered model name
    MlflowClient(settings.tracking_uri).set_registered_model_alias(settings.session_registered_model_name,
                                                                   SESSION_CHAMPION, run.registered_version)
    sessions = [data.item_ids[data.test.session(i)[0]].tolist() for i in range(len(data.test))]
    return sessions, (f"session champion: vsknn fitted on {len(data.train_full):,} generated sessions "
                      f"({data.n_items:,} items), v{run.registered_version} of {settings.session_registered_model_name}")


def _remove_session_model(settings: Settings) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(settings.tracking_uri)
    with contextlib.suppress(MlflowException):  # nothing registered
        client.delete_registered_model(settings.session_registered_model_name)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        client.delete_experiment(experiment.experiment_id)


def _wait_for_session_model(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # several probes: each worker loads its own copy
        if all(httpx.get(f"{url}/health", timeout=2.0).json().get("session_model") for _ in range(8)):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the API workers did not load the session model within {timeout_s:.0f}s")


@dataclass(frozen=True)
class LiveTrafficOptions:
    """`--with-live-traffic`: the endpoints measured again while live traffic runs (see ``benchmarks/traffic.py``)."""

    rate: float = 200.0  # events/s; the demo's live producer at its evening peak (10 × 20 events/s)
    batch_nice: int | None = None  # the stream job's niceness for this run (None: CLICKREC_BATCH_NICE)
    warmup_batches: int = 4  # ingest batches the stream job commits before the measurement (its JIT warm-up)


def run_api_benchmark(settings: Settings, *, visitors: int, items: int, duration_s: float, connections: int,
                      workers: int, only: str | None = None, session_model: bool = True,
                      live: LiveTrafficOptions | None = None) -> Iterator[str]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `clickrec setup` (as root) or `apt-get install wrk`")
    with scratch_settings(settings, "benchapi") as scratch:
        scratch = scratch.model_copy(update={"mlflow_experiment": scratch.session_registered_model_name})
        started = time.monotonic()
        sessions = None
        try:
            if session_model:
                sessions, line = register_session_model(scratch)
                yield f"{line} in {time.monotonic() - started:.1f}s"
            with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
                yield from seed_serving_data(conn, scratch, visitors, items, sessions=sessions)
            yield f"test data ready in {time.monotonic() - started:.1f}s"
            yield from _load(settings, scratch, visitors, items, duration_s, connections, workers, only, session_model,
                             live)
        finally:
            if session_model:
                _remove_session_model(scratch)


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _endpoints(visitors: int, items: int, only: str | None) -> list[tuple[str, str, int, int]]:
    unknown = visitors // 10
    endpoints = [
        ("/recommendations/{user_id}", "/recommendations/%d", 1, visitors + unknown),
        ("/similar-items/{item_id}", "/similar-items/%d", 1, items),
        ("/trending", "/trending?limit=20&window=1h&r=%d", 1, 1000),
        ("/popular-products?category=", "/popular-products?limit=20&category=%d", 1, CATEGORIES),
        ("/user-stats/{user_id}", "/user-stats/%d", 1, visitors),
        ("/search?q=<category>", "/search?q=%d&limit=20", 1, CATEGORIES),
    ]
    return [e for e in endpoints if only is None or only in e[0]]


def _measure(url: str, endpoints, duration_s: float, connections: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, template, low, high in endpoints:
        warm = run_wrk(url, template, low, high, 2, connections)  # prepared statements, caches
        results[name] = run_wrk(url, template, low, high, duration_s, connections)
        results[name]["requests_with_warmup"] = warm["requests"] + results[name]["requests"]
    return results


def _result_line(name: str, r: dict[str, float]) -> str:
    return (f"{name:<30} {r['rps']:>8,.0f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['non2xx'] + r['socket_errors']:>8,}")


def _load(settings: Settings, scratch: Settings, visitors: int, items: int, duration_s: float, connections: int,
          workers: int, only: str | None, session_model: bool, live: LiveTrafficOptions | None) -> Iterator[str]:
    """`clickrec serve` on the scratch schema (and session model), then wrk on each endpoint; with ``live``, each
    again while live traffic runs (into the same schema), side by side."""
    host = settings.bind_host
    port = _free_port(host)
    url = f"http://{host}:{port}"
    env = {**os.environ, "CLICKREC_GOLD_SCHEMA": scratch.gold_schema, "CLICKREC_API_PORT": str(port),
           "CLICKREC_SESSION_REGISTERED_MODEL_NAME": scratch.session_registered_model_name,
           "CLICKREC_API_SESSION_MODEL_REFRESH_SECONDS": "30" if session_model else "0"}
    log_path = settings.state_dir / "bench-api-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    endpoints = _endpoints(visitors, items, only)
    header = f"{'endpoint':<30} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-2xx':>8}"
    with log_path.open("wb") as server_log:
        server = subprocess.Popen(
            [sys.executable, "-m", "clickrec_platform.cli", "serve", "--workers", str(workers)],
            env=env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_healthy(url, server)
            if session_model:
                _wait_for_session_model(url)
            yield (f"API: {workers} uvicorn worker(s) on {url}; wrk 1 thread, {connections} connections, "
                   f"{duration_s:.0f}s per endpoint, on the same 2-core machine")
            yield f"no live traffic (load average {_load_average()}):"
            yield header
            quiet = _measure(url, endpoints, duration_s, connections)
            for name, r in quiet.items():
                yield _result_line(name, r)
            yield f"  (load average after: {_load_average()})"
            if live is not None:
                yield from _with_live_traffic(scratch, live, url, endpoints, duration_s, connections, quiet, header)
            counted = _counted(httpx.get(f"{url}/metrics", timeout=5).text, "/recommendations/{user_id}")
            sent = sum(r["requests_with_warmup"] for n, r in quiet.items() if n.startswith("/recommendations"))
            yield (f"/metrics (all workers) counted {counted:,.0f} answered /recommendations requests; "
                   f"wrk completed {sent:,} without live traffic" + (" (plus those with it)" if live else ""))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    yield f"server log: {Path(log_path)}"


def _with_live_traffic(scratch: Settings, live: LiveTrafficOptions, url: str, endpoints, duration_s: float,
                       connections: int, quiet: dict[str, dict[str, float]], header: str) -> Iterator[str]:
    """The same endpoints while the demo's live traffic runs: traffic at ``live.rate``, the speed layer and the
    continuous stream job (as the stack starts them), with probes timing produce → Postgres meanwhile."""
    from clickrec_platform.benchmarks.traffic import Probes, ingest_batches_since, live_traffic, stream_lag

    if live.batch_nice is not None:
        scratch = scratch.model_copy(update={"batch_nice": live.batch_nice})
    minutes = len(endpoints) * (duration_s + 2 + 5) / 60 + 20  # the traffic's own deadline: long enough
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="clickrec-benchapi-") as run, \
            live_traffic(scratch, live.rate, minutes, Path(run), say=lines.append) as traffic:
        yield from lines
        # Measured in the steady state the demo leaves running, not while a fresh Spark JVM compiles its code.
        warm = time.monotonic()
        while len(ingest_batches_since(traffic.settings, 0)) < live.warmup_batches:
            traffic.check_running()
            if time.monotonic() - warm > 600:
                raise RuntimeError(f"the stream job did not commit {live.warmup_batches} ingest batches in 10 minutes")
            time.sleep(1.0)
        yield (f"warm: the stream job committed {live.warmup_batches} ingest batches "
               f"({time.monotonic() - warm:.0f}s after its first)")
        probes = Probes(traffic.settings)
        probes.start()
        try:
            started_at, before = time.time(), _load_average()
            loaded = _measure(url, endpoints, duration_s, connections)
            traffic.check_running()
        finally:
            probes.stop.set()
            probes.join(timeout=60)
        latencies, timeouts = probes.take()
        batches = ingest_batches_since(traffic.settings, started_at)
        behind = stream_lag(traffic.settings)
    yield f"with live traffic (load average before {before}, after {_load_average()}):"
    yield header
    for name, r in loaded.items():
        yield _result_line(name, r)
    yield f"{'side by side':<30} {'req/s':>17} {'p99 ms':>17}"
    for name, r in loaded.items():
        q = quiet[name]
        yield (f"{name:<30} {q['rps']:>7,.0f} → {r['rps']:>7,.0f} {q['p99_ms']:>7.1f} → {r['p99_ms']:>7.1f}"
               f"  ({r['rps'] / max(q['rps'], 1e-9):.0%} of the throughput)")
    ranked = sorted(latencies) + [float("inf")] * timeouts
    if ranked:
        p95 = ranked[max(0, int(np.ceil(0.95 * len(ranked))) - 1)]
        yield (f"live path while loaded: {len(ranked)} probes, produce → visible in Postgres p50 "
               f"{statistics.median(ranked) * 1000:,.0f} ms, p95 {p95 * 1000:,.0f} ms, max {ranked[-1] * 1000:,.0f} ms"
               f"{f', {timeouts} timed out (30 s)' if timeouts else ''}")
    seconds = sorted(b[1] for b in batches)
    yield (f"stream job while loaded (nice {traffic.stream_nice}, ingest trigger every "
           f"{scratch.stream_ingest_trigger_seconds:g}s): {len(batches)} ingest micro-batches started and committed "
           f"({sum(b[0] for b in batches):,} records" + (f", each {min(seconds):.1f}–{max(seconds):.1f}s" if seconds
                                                       else "") +
           f"); at the end {behind:,} records behind the topic's end ({behind / live.rate:.0f}s of traffic)")
