"""The mode comparison's summary: medians per mode, and ratios against in_memory's own runs."""
from __future__ import annotations

from benchmarks import beam_modes


def record(mode: str, seconds: float, runner: float, workers: list, round_: int) -> dict:
    return {"rows": 1000, "component": "StatisticsGen", "mode": mode,
            "workers": 2 if workers else 1, "round": round_, "seconds": seconds,
            "runner_cpu_seconds": runner, "worker_cpu_seconds": workers,
            "peak_rss_mb": 100.0 * (1 + len(workers)), "load_1min": [1.0, 2.0]}


def test_the_summary_compares_each_mode_s_median_with_in_memory_s() -> None:
    records = [record("in_memory", 10.0, 9.0, [], 0), record("in_memory", 14.0, 11.0, [], 1),
               record("in_memory", 30.0, 10.0, [], 2),
               record("multi_processing", 8.0, 1.0, [4.0, 4.0], 0),
               record("multi_processing", 6.0, 1.0, [2.0, 2.0], 1)]
    lines = beam_modes.summary(records).splitlines()
    assert len(lines) == 4  # header, rule, one line per mode
    im = [cell.strip() for cell in lines[2].strip("|").split("|")]
    mp = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert im[2] == "in_memory" and im[4] == "3" and im[5] == "14.00" and im[10] == "1.00x"
    # multi_processing: median wall 7 s against 14 s; CPU 1 + 6 = 7 s over 2 workers against
    # in_memory's median 10 s as if on one core.
    assert mp[5] == "7.00" and mp[6] == "1.00" and mp[7] == "6.00" and mp[8] == "7.00"
    assert mp[9] == "300" and mp[10] == "2.00x" and mp[11] == f"{10 / (7 / 2):.2f}x"
    assert mp[12] == "1.0-2.0"
