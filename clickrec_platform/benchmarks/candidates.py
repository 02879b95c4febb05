"""The training assets' own code without Dagster or the stack: every candidate and the gate
(`train_candidates`, `run_gate`), then the session models (`train_session_candidates` and their MLflow
runs), on generated data, with MLflow on a local sqlite store in a temporary folder.

    python -m clickrec_platform.benchmarks.candidates --events 2760000 --days 138 --threads 2

Generation and splitting are timed apart: in the graph they are the features' and sessions' assets.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# Before numpy loads OpenBLAS, as the training assets do.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clickrec_platform.benchmarks.train import RETAILROCKET_DAYS, RETAILROCKET_EVENTS  # noqa: E402


def main(events: int, days: int, threads: int, sessions: bool = True) -> None:
    import mlflow

    from clickrec_platform.defs.sessions.assets import session_protocol
    from clickrec_platform.recommend.data import splits_from_events
    from clickrec_platform.recommend.session.protocol import build_sessions
    from clickrec_platform.recommend.session.tracking import log_session_run
    from clickrec_platform.recommend.session.training import train_session_candidates
    from clickrec_platform.recommend.training import run_gate, train_candidates
    from clickrec_platform.settings import Settings
    from clickrec_platform.sources.generator import GeneratorConfig, generate_events, synthetic_world

    settings = Settings()
    config = GeneratorConfig(events=events, days=days)
    started = time.perf_counter()
    frame = pd.concat([f[["ts", "visitor_id", "event", "item_id", "session_id"]] for f in generate_events(config)],
                      ignore_index=True)
    splits = splits_from_events(frame)
    category = synthetic_world(config).items.category
    items = pd.DataFrame({"item_id": np.arange(len(category), dtype=np.int64), "category_id": category})
    session_data = build_sessions(frame, session_protocol(settings)) if sessions else None
    del frame
    print(f"generate, split, sessionise (not timed below): {time.perf_counter() - started:.1f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="clickrec-bench-candidates-") as scratch:
        uri = f"sqlite:///{scratch}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        # The store's tables are created here, outside the timings; the runs' artifacts beside them (a sqlite
        # store's default is ./mlruns, in whatever folder the benchmark was started from).
        mlflow.create_experiment("bench", artifact_location=(Path(scratch) / "artifacts").as_uri())
        mlflow.set_experiment("bench")
        started = time.perf_counter()

        def progress(message: str) -> None:
            print(f"{time.perf_counter() - started:7.1f}s {message}", flush=True)

        training = train_candidates(
            splits, items, list(settings.training_models), training_id="bench", experiment="bench",
            registered_model="bench", tracking_uri=uri, data_versions={}, artifacts_dir=Path(scratch) / "reports",
            grids=settings.training_grids, metric=settings.gate_metric, threads=threads, progress=progress)
        outcome = run_gate(training, "bench", uri, settings.gate_metric, settings.gate_min_relative_lift,
                           settings.gate_confidence, settings.gate_bootstrap_samples)
        candidates_s = time.perf_counter() - started
        print(f"candidates + gate: {candidates_s:.1f}s ({outcome.reason})", flush=True)
        if session_data is None:
            return
        started = time.perf_counter()
        found = train_session_candidates(session_data, list(settings.session_models), settings.session_grids,
                                         settings.session_metric, progress=progress, workers=threads)
        for candidate in found:
            log_session_run("bench", candidate, session_data.item_ids, params={}, tags={}, tracking_uri=uri,
                            registered_model_name="bench-session", n_boot=settings.gate_bootstrap_samples)
        sessions_s = time.perf_counter() - started
        print(f"session models (fit, validation, test, MLflow runs): {sessions_s:.1f}s; "
              f"both: {candidates_s + sessions_s:.1f}s; threads={threads}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=RETAILROCKET_EVENTS)
    parser.add_argument("--days", type=int, default=RETAILROCKET_DAYS)
    parser.add_argument("--threads", type=int, default=2, help="CLICKREC_TRAINING_THREADS")
    parser.add_argument("--no-sessions", action="store_true")
    args = parser.parse_args()
    main(args.events, args.days, args.threads, sessions=not args.no_sessions)
