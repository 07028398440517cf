"""The on/off comparison: its interval and verdicts (benchmarks/paired.py), and its rounds on
pairs of servers (benchmarks/serving_overhead.py)."""
from __future__ import annotations

import math

import pytest

from benchmarks import paired


def test_the_interval_is_the_innermost_pair_that_holds_the_median_at_the_confidence() -> None:
    # 9 rounds: the second-lowest and second-highest, 1 - 2 * (1 + 9) / 512 of the time.
    low, high, coverage = paired.median_interval([5, 1, 9, 3, 7, 2, 8, 4, 6])
    assert (low, high) == (2, 8)
    assert math.isclose(coverage, 1 - 2 * (1 + 9) / 2 ** 9)
    # Too few rounds for 90%: the extremes, with what they cover.
    assert paired.median_interval([3, 1, 2]) == (1, 3, 1 - 2 / 2 ** 3)
    with pytest.raises(ValueError):
        paired.median_interval([])


def test_met_or_not_only_when_the_interval_is_on_one_side_of_the_bound() -> None:
    assert paired.verdict([1, 2, 3, -1, 0, 2, 1, 3, 2], 5).endswith(": met")
    assert paired.verdict([6, 7, 8, 9, 5.5, 6, 7, 8, 9], 5).endswith(": NOT met")
    undecided = paired.verdict([1, 2, 3, 8, 9, 2, 1, 3, 6], 5)
    assert "not decided" in undecided and "+3.0%" in undecided, undecided


def test_too_few_rounds_decide_nothing() -> None:
    """Up to 4 rounds the interval is every round's change and covers the median less than 9
    times in 10 (4 rounds: 1 - 2/2**4); from 5 a clear change is decided."""
    for count in range(1, 5):
        assert paired.verdict([20.0] * count, 5).endswith(
            "not decided (too few rounds for a 90% interval)")
        assert paired.verdict([0.0] * count, 5).endswith(
            "not decided (too few rounds for a 90% interval)")
    assert paired.verdict([20.0] * 5, 5).endswith(": NOT met")
    assert paired.verdict([0.0] * 5, 5).endswith(": met")


def test_changes_are_each_rounds_own() -> None:
    assert paired.percent_changes([1.1, 2.0], [1.0, 2.5]) == pytest.approx([10.0, -20.0])


class _Server:
    """Stands in for benchmarks/serving.py's Server: p50 is the server's own constant."""

    def __init__(self, name: str, p50: float, calls: list) -> None:
        self.name, self.p50, self.calls = name, p50, calls

    def wait(self) -> None:
        self.calls.append((self.name, "wait"))

    def stop(self) -> None:
        self.calls.append((self.name, "stop"))

    def level(self, setup: str, clients: int, requests: int, seconds: float) -> dict:
        self.calls.append((self.name, setup, clients, requests))
        return {"setup": setup, "clients": clients, "requests": requests, "errors": 0,
                "p50_ms": self.p50, "p99_ms": self.p50, "max_ms": self.p50, "throughput": 1.0}


def test_rounds_are_shared_among_fresh_pairs_warmed_up_alike_in_alternating_order() -> None:
    from benchmarks import serving_overhead
    from benchmarks.serving_report import GRPC, REST

    calls: list = []
    started = []

    def start_pair(number: int):
        started.append(number)
        return _Server(f"on{number}", 1.1 + number, calls), _Server(f"off{number}", 1.0, calls)

    rows = serving_overhead.metrics_on_off(start_pair, [1], 100, rounds=5, pairs=2)
    assert started == [0, 1]
    timed = [(name, setup) for name, setup, *rest in calls if rest and rest[1] == 100]
    assert len(timed) == 5 * 2 * 2  # rounds x protocols x servers
    assert timed[:4] == [("on0", REST), ("off0", REST), ("on0", GRPC), ("off0", GRPC)]
    assert timed[4:6] == [("off0", REST), ("on0", REST)]  # the next round starts with off
    # Three rounds on the first pair, two on the second, each after its warm-ups.
    assert sum(1 for name, _ in timed if name == "on0") == 3 * 2
    assert calls.index(("on1", "wait")) > calls.index(("off0", "stop"))
    warm = [c for c in calls if len(c) == 4 and c[3] == 50]  # a quarter, at least 50
    assert len(warm) == 2 * 2 * 2  # pairs x protocols x servers
    on_rest = next(r for r in rows if r["setup"] == f"{REST}, metrics and access log on")
    assert on_rest["p50_changes"] == pytest.approx([10.0] * 3 + [110.0] * 2)
    assert on_rest["requests"] == 500 and on_rest["p50_range"] == (1.1, 2.1)


def test_the_monitoring_benchmark_judges_the_log_s_cost_on_paired_rounds() -> None:
    """The rounds' medians alone would call +4% met at a level whose rounds spread from -30%
    to +40%; the paired verdict does not decide it, and decides clear cases."""
    from benchmarks import monitoring

    def level(count: int, off: list, on: list) -> list:
        return [{"setup": f"request log {name}", "clients": count, "rounds_p50_ms": values,
                 "rounds_p99_ms": values} for name, values in (("off", off), ("on", on))]

    off = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]
    records = (level(1, off, off)  # no change in any round
               + level(8, off, [v * 1.2 for v in off])  # +20% in every round
               + level(32, off, [v * f for v, f in zip(off, (0.7, 1.4, 0.8, 1.3, 1.04, 1.2,
                                                             0.9, 1.1, 1.0))]))
    notes = monitoring.verdicts(records)
    assert len(notes) == 6
    assert all(note.endswith(": met") for note in notes[:2]), notes
    assert all(note.endswith(": NOT met") for note in notes[2:4]), notes
    assert all("not decided" in note for note in notes[4:]), notes
