"""Part 3 of the serving benchmark: metrics and access logs on vs off, in paired rounds.

Why pairs of servers of their own: two server processes with the same flags differ in p50 by
more than the recording costs (where their threads run, what else the machine does while
each is measured), so one pair's difference would be mostly the pair's own. The rounds are
shared among several pairs of fresh processes, each warmed up alike before its rounds, and
the rounds' changes (benchmarks/paired.py) carry the pairs' differences into the interval.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

from benchmarks import paired
from benchmarks.serving_report import GRPC, REST, median_rows

ON, OFF = "metrics and access log on", "metrics and access log off"


def _rounds(on: Any, off: Any, levels: List[int], requests: int, first: int, count: int,
            runs: Dict[Tuple[str, int], List[Dict[str, Any]]]) -> None:
    """`count` rounds on one pair, after an untimed warm-up of both; within a round each level
    and protocol measures the two back to back, which first alternating by round."""
    for clients in levels:
        for protocol in (REST, GRPC):
            for server in (on, off):
                server.level(protocol, clients, max(50, requests // 4), 60.0)
    for number in range(first, first + count):
        for clients in levels:
            for protocol in (REST, GRPC):
                for name, server in ((ON, on), (OFF, off))[::1 if number % 2 == 0 else -1]:
                    result = server.level(protocol, clients, requests, 60.0)
                    result.pop("throughput")
                    result.pop("max_ms")
                    runs.setdefault((f"{protocol}, {name}", clients), []).append(result)


def metrics_on_off(start_pair: Callable[[int], Tuple[Any, Any]], levels: List[int],
                   requests: int, rounds: int, pairs: int) -> List[Dict[str, Any]]:
    """Both protocols on (defaults) and off; `start_pair(n)` starts the n-th pair of servers
    (on, off), each with `level` (benchmarks/serving.py's Server). The rounds' medians, and
    on each "on" row the rounds' paired p50 changes."""
    runs: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    pairs = min(pairs, rounds)
    first = 0
    for number in range(pairs):
        count = rounds // pairs + (1 if number < rounds % pairs else 0)
        on, off = start_pair(number)
        try:
            on.wait()
            off.wait()
            _rounds(on, off, levels, requests, first, count, runs)
        finally:
            on.stop()
            off.stop()
        first += count
    rows = median_rows(runs)
    for row in rows:
        if row["setup"].endswith(ON):
            protocol, clients = row["setup"][:-len(ON) - 2], row["clients"]
            row["p50_changes"] = paired.percent_changes(
                [r["p50_ms"] for r in runs[(f"{protocol}, {ON}", clients)]],
                [r["p50_ms"] for r in runs[(f"{protocol}, {OFF}", clients)]])
    return rows
