"""`clickrec bench stream-catchup --topology cluster`: the side-by-side figures of two runs."""

from __future__ import annotations

from dataclasses import asdict

from clickrec_platform.benchmarks.stream import CatchupFigures, compare_lines


def _figures(topology: str, master: str, cores: int, ingest_s: float) -> CatchupFigures:
    return CatchupFigures(topology=topology, spark_master=master, executor_cores=cores, produced=120_000,
                          ingest_s=ingest_s, gold_s=4.0, total_s=ingest_s + 30, jit_s=12.0,
                          batches=[(100_000, ingest_s * 0.8), (20_000, ingest_s * 0.2)])


def test_the_comparison_puts_each_figure_of_both_topologies_on_one_row():
    local = _figures("local", "local[*]", 2, ingest_s=10.0)
    cluster = _figures("cluster", "spark://127.0.0.1:7077", 4, ingest_s=25.0)
    lines = compare_lines([local, cluster])
    rows = {line[:44].strip(): line[44:].split() for line in lines[2:-1]}
    assert rows["Kafka → silver + bronze, events/s"] == ["12,000", "4,800"]
    assert rows["per executor core, events/s"] == ["6,000", "1,200"]
    assert rows["executor cores (slots)"] == ["2", "4"]
    assert rows["batches"] == ["2", "2"]
    assert lines[-1] == "cluster ingest takes 2.50× the local time on this machine"


def test_figures_survive_the_json_round_trip_of_the_child_process():
    figures = _figures("cluster", "spark://127.0.0.1:7077", 2, ingest_s=8.0)
    raw = asdict(figures)
    back = CatchupFigures(**{**raw, "batches": [tuple(b) for b in raw["batches"]]})
    assert back == figures and back.ingest_per_s == 15_000
