"""The soak's verdicts on made-up samples: a leak, a growing lag, a slow minute and files compaction does not
bring back fail; flat series, a JVM's bounded share and a compaction sawtooth pass; too few samples judge no
trend."""

from __future__ import annotations

import pytest

from clickrec_platform.benchmarks.soak import Bounds, Sample, SoakReport, judge, slope_per_hour


def samples(minutes: int, memory=lambda m: {}, lag=lambda m: (10, 4_000), p95=lambda m: 150.0,
            files=lambda m: 5 + 12 * (m % 4), compaction_every: int = 4) -> list[Sample]:
    out = []
    for m in range(1, minutes + 1):
        speed, stream = lag(m)
        out.append(Sample(minute=m, elapsed_s=60.0 * m, events=300 * 60 * m, events_per_s=300.0,
                          memory_mb={"speed layer": 100.0, "stream job": 2_500.0, "mlflow": 1_800.0 + 50 * m,
                                     **memory(m)},
                          lag={"speed layer": speed, "stream job": stream}, p95_ms=p95(m), probes=20, timeouts=0,
                          files={"bronze.clickstream_raw": files(m)},
                          optimized="compaction done in 40s" if m % compaction_every == 0 else ""))
    return out


def verdicts(report: SoakReport) -> dict[str, bool | None]:
    return {t.series: t.ok for t in judge(report, rate=300, ingest_trigger_s=20, bounds=Bounds(), optimize_every=4)}


def test_slope_is_per_hour():
    assert slope_per_hour([1, 2, 3], [10, 20, 30]) == pytest.approx(600.0)
    assert slope_per_hour([1], [5]) == 0.0


def test_a_steady_run_passes_and_the_shared_stacks_services_are_shown_not_judged():
    result = verdicts(SoakReport(samples=samples(30), warmup_minutes=5))
    assert result["memory speed layer"] is True and result["memory stream job"] is True
    assert result["memory mlflow"] is None  # grows 3 GB/h here, but others' work moves it
    assert result["lag speed layer"] is result["lag stream job"] is result["produce→Postgres p95"] is True
    assert result["files bronze.clickstream_raw"] is True  # a sawtooth: compaction brings it back each time


@pytest.mark.parametrize(("kind", "options"), [
    ("memory postgres", {"memory": lambda m: {"postgres": 100.0 + 5 * m}}),  # 300 MB/h of a 180 MB mean
    ("lag stream job", {"lag": lambda m: (10, 4_000 + 500 * m)}),  # falls behind 30k records/h at 300/s
    ("lag speed layer", {"lag": lambda m: (2_000 if m == 20 else 10, 4_000)}),  # one minute 6.7 s behind
    ("produce→Postgres p95", {"p95": lambda m: 1_500.0 if m == 12 else 150.0}),
    ("files bronze.clickstream_raw", {"files": lambda m: 5 + 2 * m + 12 * (m % 4)}),  # compaction leaves more
    ("memory stream job", {"memory": lambda m: {"stream job": 2_000.0 + 150 * m}}),  # past -Xmx 4g + 1.5 GB
])
def test_growth_beyond_a_bound_fails(kind, options):
    result = verdicts(SoakReport(samples=samples(30, **options), warmup_minutes=5))
    assert result[kind] is False
    assert [series for series, ok in result.items() if ok is False] == [kind]


def test_the_stream_jobs_jvm_is_held_to_its_heap_size_not_to_a_slope():
    growing = SoakReport(samples=samples(30, memory=lambda m: {"stream job": 2_000.0 + 60 * m}), warmup_minutes=5)
    assert verdicts(growing)["memory stream job"] is True  # 3.6 GB/h while its heap fills, up to 3.8 GB of 5.5


def test_a_short_run_judges_levels_but_no_trend():
    report = SoakReport(samples=samples(3, memory=lambda m: {"postgres": 100.0 + 50 * m}), warmup_minutes=1)
    result = verdicts(report)
    assert result["memory postgres"] is None and result["produce→Postgres p95"] is None
    assert any("too few" in note for note in report.notes)
    slow = SoakReport(samples=samples(3, p95=lambda m: 2_000.0), warmup_minutes=1)
    assert verdicts(slow)["produce→Postgres p95"] is False  # a level fails however short the run
