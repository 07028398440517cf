"""The mode comparison's summary: medians per mode, and ratios against in_memory's own runs."""
from __future__ import annotations

from benchmarks import beam_modes


def record(mode: str, seconds: float, runner: float, workers: list, busiest: float,
           round_: int) -> dict:
    return {"rows": 1000, "component": "StatisticsGen", "mode": mode,
            "workers": 2 if workers else 1, "round": round_, "seconds": seconds,
            "runner_cpu_seconds": runner, "worker_cpu_seconds": workers,
            "busiest_thread_cpu_seconds": busiest,
            "peak_memory_mb": 100.0 * (1 + len(workers)), "load_1min": [1.0, 2.0]}


def cells(line: str) -> list:
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_summary_compares_each_mode_s_median_with_in_memory_s() -> None:
    records = [record("in_memory", 10.0, 9.0, [], 6.0, 0),
               record("in_memory", 14.0, 12.0, [], 8.0, 1),
               record("in_memory", 30.0, 10.0, [], 7.0, 2),
               record("multi_processing", 8.0, 1.0, [4.0, 4.0], 4.0, 0),
               record("multi_processing", 6.0, 1.0, [2.0, 2.0], 2.0, 1)]
    lines = beam_modes.summary(records, cores=2).splitlines()
    assert len(lines) == 4  # header, rule, one line per mode
    im, mp = cells(lines[2]), cells(lines[3])
    assert im[2] == "in_memory" and im[4] == "3" and im[5] == "14.00" and im[13] == "1.00x"
    # CPU 10 s (median of 9, 12, 10), the busiest thread's 7 s; each run's CPU over its wall
    # (0.9, 0.86, 0.33) and over its busiest thread's (1.5, 1.5, 1.43), the medians.
    assert im[8] == "10.00" and im[9] == "7.00"
    assert im[10] == f"{12 / 14:.2f}" and im[11] == "1.50"
    # multi_processing: median wall 7 s against 14 s; CPU 1 + 6 = 7 s.
    assert mp[5] == "7.00" and mp[6] == "1.00" and mp[7] == "6.00" and mp[8] == "7.00"
    assert mp[12] == "300" and mp[13] == "2.00x" and mp[15] == "1.0-2.0"
    # On 2 idle cores each run takes at least max(busiest thread, CPU / 2): in_memory's runs
    # 6, 8 and 7 s (median 7), multi_processing's 4.5 and 2.5 s (median 3.5).
    assert im[14] == "1.00x" and mp[14] == "2.00x"
