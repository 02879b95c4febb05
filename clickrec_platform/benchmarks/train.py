"""Train and evaluate every recommender on RetailRocket-sized generated data, timing each step.

Target (issue #6): training + evaluation of all models <= 5 minutes on 2 cores.

    OPENBLAS_NUM_THREADS=1 python -m clickrec_platform.benchmarks.train --events 2760000

Generation and splitting are timed too but are not part of the target: in production the
splits are a Delta table that already exists.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

# Before numpy loads OpenBLAS: its thread pool fights implicit's own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from clickrec_platform.recommend.candidates import CANDIDATES, build_model  # noqa: E402
from clickrec_platform.recommend.data import InteractionData, splits_from_events  # noqa: E402
from clickrec_platform.recommend.evaluate import Evaluation, evaluate  # noqa: E402
from clickrec_platform.recommend.models import Recommender, SparkALS  # noqa: E402
from clickrec_platform.recommend.report import comparison_chart, comparison_table  # noqa: E402
from clickrec_platform.sources.generator import GeneratorConfig, generate_events  # noqa: E402

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RETAILROCKET_EVENTS = 2_756_101
RETAILROCKET_DAYS = 138  # 2015-05-03 .. 2015-09-18
TARGET_SECONDS = 300.0


@dataclass
class ModelTiming:
    label: str
    fit_s: float
    evaluate_s: float
    evaluation: Evaluation


@dataclass
class TrainBenchmark:
    config: GeneratorConfig
    threads: int
    generate_and_split_s: float
    build_matrix_s: float
    rows: int
    users: int
    items: int
    interactions: int
    models: list[ModelTiming] = field(default_factory=list)

    @property
    def train_and_evaluate_s(self) -> float:
        return self.build_matrix_s + sum(m.fit_s + m.evaluate_s for m in self.models)

    def lines(self) -> list[str]:
        first = self.models[0].evaluation
        groups = first.groups
        out = [
            f"data: {self.config.events:,} events asked, {self.config.days} days, seed {self.config.seed}; "
            f"{self.rows:,} training_splits rows; train matrix {self.users:,} visitors x {self.items:,} items, "
            f"{self.interactions:,} pairs; threads={self.threads}",
            f"validation visitors: {groups['all'].users:,} ({groups['warm'].users:,} warm, "
            f"{groups['cold_start'].users if 'cold_start' in groups else 0:,} cold-start); "
            f"{first.dropped_users:,} dropped (no item new to them); "
            f"unreachable relevant pairs {first.unreachable_share:.1%}",
            f"generate + split (not in target): {self.generate_and_split_s:.1f}s; build matrix: {self.build_matrix_s:.1f}s",
            "",
            f"{'model':<16} {'fit s':>7} {'eval s':>7}  {'recall@20':>22}  {'ndcg@20':>22}  {'warm ndcg@20':>12} {'cov@20':>7}",
        ]
        for m in self.models:
            e = m.evaluation
            out.append(
                f"{m.label:<16} {m.fit_s:>7.1f} {m.evaluate_s:>7.1f}  {e.ci('recall@20')!s:>22}  "
                f"{e.ci('ndcg@20')!s:>22}  {e.value('ndcg@20', 'warm'):>12.4f} {e.coverage['coverage@20']:>7.3f}"
            )
        total = self.train_and_evaluate_s
        verdict = "met" if total <= TARGET_SECONDS else "MISSED"
        out += [
            "",
            f"train + evaluate, all models: {total:.1f}s (target {TARGET_SECONDS:.0f}s: {verdict})",
        ]
        return out


def model_factories(threads: int, spark: SparkSession | None = None) -> dict[str, Callable[[], Recommender]]:
    """The candidates the Dagster training fits (`recommend.candidates`), plus Spark ALS on request."""
    factories: dict[str, Callable[[], Recommender]] = {
        name: partial(build_model, name, None, threads) for name in CANDIDATES}
    if spark is not None:
        factories["spark_als"] = lambda: SparkALS(spark)
    return factories


def run_train_benchmark(
    config: GeneratorConfig,
    threads: int = 1,
    with_spark: bool = False,
    n_boot: int = 1000,
    only: set[str] | None = None,
    report: Callable[[str], None] = print,
) -> TrainBenchmark:
    started = time.perf_counter()
    splits = splits_from_events(generate_events(config))
    generate_and_split_s = time.perf_counter() - started
    report(f"generated and split in {generate_and_split_s:.1f}s: {len(splits):,} rows")

    started = time.perf_counter()
    data = InteractionData.from_splits(splits)
    build_matrix_s = time.perf_counter() - started
    split_rows = len(splits)
    del splits  # the matrix and held-out rows are all that is needed from here on

    spark = _local_spark(threads) if with_spark else None
    bench = TrainBenchmark(
        config=config,
        threads=threads,
        generate_and_split_s=generate_and_split_s,
        build_matrix_s=build_matrix_s,
        rows=split_rows,
        users=data.n_users,
        items=data.n_items,
        interactions=data.user_items.nnz,
    )
    try:
        for label, make in model_factories(threads, spark).items():
            if only and label not in only:
                continue
            model = make().fit(data)
            evaluation = evaluate(model, data, "validation", n_boot=n_boot, label=label)
            bench.models.append(ModelTiming(label, model.fit_seconds or 0.0, evaluation.seconds, evaluation))
            report(
                f"{label}: fit {model.fit_seconds:.1f}s, evaluate {evaluation.seconds:.1f}s, "
                f"ndcg@20 {evaluation.ci('ndcg@20')}"
            )
    finally:
        if spark is not None:
            spark.stop()
    return bench


def _local_spark(threads: int) -> SparkSession:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(f"local[{threads}]")
        .appName("clickrec-bench-train")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * threads)))
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def main(
    events: int = RETAILROCKET_EVENTS,
    days: int = RETAILROCKET_DAYS,
    seed: int = 42,
    visitors: int | None = None,
    items: int | None = None,
    threads: int = 1,
    with_spark: bool = False,
    n_boot: int = 1000,
    only: set[str] | None = None,
    out_dir: Path | None = None,
) -> TrainBenchmark:
    """Run the benchmark and print its table; with `out_dir`, also write the comparison there."""
    config = GeneratorConfig(seed=seed, events=events, days=days, visitors=visitors, items=items)
    bench = run_train_benchmark(config, threads=threads, with_spark=with_spark, n_boot=n_boot, only=only)
    print("\n".join(bench.lines()))
    if out_dir is not None:
        evaluations = [m.evaluation for m in bench.models]
        seconds = {m.label: m.fit_s for m in bench.models}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.md").write_text(comparison_table(evaluations, seconds))
        comparison_chart(evaluations, out_dir / "comparison.png")
        print(f"comparison written to {out_dir}")
    return bench


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=RETAILROCKET_EVENTS)
    parser.add_argument("--days", type=int, default=RETAILROCKET_DAYS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--visitors", type=int, default=None, help="default: the generator's, events / 10")
    parser.add_argument("--items", type=int, default=None, help="default: the generator's, events / 20")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spark", action="store_true", help="also train SparkALS on a local session")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=None, help="model labels to run (default: all)")
    parser.add_argument("--out-dir", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    args = _parse_args()
    main(
        events=args.events,
        days=args.days,
        seed=args.seed,
        visitors=args.visitors,
        items=args.items,
        threads=args.threads,
        with_spark=args.spark,
        n_boot=args.n_boot,
        only=set(args.only) if args.only else None,
        out_dir=args.out_dir,
    )
