"""The scale benchmark's accounting: CPU seconds per component, its table, and its plan (the
process tree's CPU and memory: tests/test_rss_probe.py)."""
from __future__ import annotations

import json
import pathlib

import pytest

from benchmarks import rss_probe, scale, scale_plan
from benchmarks.rss_probe import Sample


def test_a_component_s_cpu_is_interpolated_between_samples() -> None:
    samples = [Sample(0.0, 100 * 2**20, 0.0), Sample(1.0, 300 * 2**20, 2.0),
               Sample(2.0, 200 * 2**20, 3.0)]
    # From 0.5 s (1.0 CPU s) to 1.5 s (2.5 CPU s): 1.5 CPU s in 1 s of wall, 1.5 cores.
    cost = rss_probe.cost_between(samples, 0.5, 1.5, 1.0)
    assert cost.cpu_seconds == pytest.approx(1.5) and cost.cores_used == pytest.approx(1.5)
    assert cost.peak_memory_mb == 300  # the one sample inside the span
    assert rss_probe.cpu_at(samples, -1.0) == 0.0 and rss_probe.cpu_at(samples, 9.0) == 3.0


def record(config: str, rows: int, seconds: float, stats: float, stats_cpu: float) -> dict:
    component = {"seconds": stats, "cpu_seconds": stats_cpu, "cores_used": stats_cpu / stats,
                 "peak_memory_mb": 900.0}
    return {"config": config, "rows": rows, "total_seconds": seconds,
            "total_cpu_seconds": seconds * 1.2, "cores_used": 1.2,
            "components": {"StatisticsGen": component, "Transform": component}}


def test_the_table_gives_cpu_and_cores_and_compares_the_modes_at_a_size() -> None:
    records = [record("in_memory, cache off", 1000, 10.0, 4.0, 6.0),
               record("multi_processing x2, cache off", 1000, 12.0, 2.0, 4.0)]
    text = scale.table(records, project_rows=10_000)
    header = text.splitlines()[0]
    assert "StatisticsGen CPU s" in header and "StatisticsGen cores" in header
    assert "| in_memory, cache off | 1,000 | 0.00 | 0.00 | 0.00 | 0 | 4.00 | 6.00 | 1.50 |" \
        in text  # ExampleGen absent: zeros; StatisticsGen's wall, CPU, cores
    assert ("**multi_processing x2, cache off** at 1,000 rows, speed-up over in_memory, cache "
            "off: StatisticsGen 2.00x (4 CPU s on 2.00 cores against 6 on 1.50)") in text


def test_the_plan_generates_each_size_once_and_estimates_from_earlier_runs(
        tmp_path: pathlib.Path) -> None:
    runs = scale_plan.plan({"in_memory, cache off": [1000, 2000, 4000],
                            "multi_processing x2, cache off": [2000]})
    assert [(run.config, run.rows) for run in runs] == [
        ("in_memory, cache off", 1000), ("in_memory, cache off", 2000),
        ("multi_processing x2, cache off", 2000), ("in_memory, cache off", 4000)]
    earlier = [{"config": "in_memory, cache off", "rows": 1000, "total_seconds": 30.0},
               {"config": "in_memory, cache off", "rows": 4000, "total_seconds": 60.0},
               {"config": "in_memory, cache on", "rows": 1000, "total_seconds": 45.0}]
    fits = scale_plan.fits(earlier, ["in_memory, cache off", "in_memory, cache on",
                                     "multi_processing x2, cache off"])
    # 20 s fixed + 10 ms per row; the cache-on run 1.5x that; multi_processing assumed.
    assert fits["in_memory, cache off"].seconds(2000) == pytest.approx(40.0)
    assert fits["in_memory, cache on"].seconds(2000) == pytest.approx(60.0)
    assumed = scale_plan.ASSUMED_RATIO["multi_processing x2, cache off"]
    assert fits["multi_processing x2, cache off"].seconds(2000) == pytest.approx(40.0 * assumed)
    assert "not measured yet" in fits["multi_processing x2, cache off"].basis
    results = tmp_path / "scale.json"
    results.write_text(json.dumps({"date": "d", "machine": "m", "results": earlier}))
    text = scale_plan.describe(runs, results)
    assert "in_memory, cache off at 2,000 raw rows: about 0.7 min" in text
    assert text.splitlines()[-1].startswith("Total: about")


def test_without_earlier_runs_the_plan_says_it_has_no_estimate(tmp_path: pathlib.Path) -> None:
    runs = scale_plan.plan({"in_memory, cache off": [1000]})
    text = scale_plan.describe(runs, tmp_path / "absent.json")
    assert "in_memory, cache off at 1,000 raw rows" in text and "no estimate" in text


def test_the_dry_run_prints_the_default_plan_and_runs_nothing(
        capsys: pytest.CaptureFixture) -> None:
    assert scale.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for rows in ("1,000,000", "4,000,000", "10,000,000"):
        assert f"in_memory, cache off at {rows} raw rows" in out
        assert f"in_memory, cache on at {rows} raw rows" in out
    assert "multi_processing x2, cache off at 2,000,000 raw rows" in out
    assert "multi_threading x2, cache off at 2,000,000 raw rows" in out
    assert "in_memory, cache off at 2,000,000 raw rows" in out
