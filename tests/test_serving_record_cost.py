"""What recording a request costs, measured in process (benchmarks/serving_record_cost.py): the
real recording runs on a real model's answer (every timed request is counted by the metrics and
written by the access log), and the figures are the blocks' arithmetic: medians, the
order-statistic intervals, and clients x cost over the end-to-end p50."""
from __future__ import annotations

import statistics
from typing import Any

from tests.serving_fixtures import MODEL_NAME, ServingModels

pytest_plugins = ("tests.serving_fixtures",)


def test_the_real_recording_runs_and_its_figures_are_the_blocks(serving_models: ServingModels,
                                                                 tmp_path: Any) -> None:
    from benchmarks import paired, serving_record_cost
    from benchmarks.serving_report import GRPC, REST

    blocks, requests = 3, serving_record_cost.DRAIN_LINES + 7  # a drain of a partial chunk too
    costs = serving_record_cost.measure(str(serving_models.serving_dir(tmp_path)), MODEL_NAME,
                                        rows=2, blocks=blocks, requests=requests)
    rest, grpc = costs
    assert (rest["protocol"], grpc["protocol"]) == (REST, GRPC)
    timed_on = (blocks + 1) * requests  # the untimed warm-up pair's too
    assert rest["lines_written"] == timed_on
    assert rest["requests_counted"] == timed_on + 1  # and the :predict the answer came from
    assert grpc["requests_counted"] == timed_on
    for cost in costs:
        assert cost["blocks"] == blocks and cost["requests"] == blocks * requests
        assert cost["block_total_us"] == [c + w for c, w in zip(cost["block_caller_us"],
                                                                cost["block_writer_us"])]
        for key in ("caller", "writer", "total"):
            values = cost[f"block_{key}_us"]
            assert len(values) == blocks
            assert cost[f"{key}_us"] == statistics.median(values)
            low, high, coverage = paired.median_interval(values)
            assert cost[f"{key}_interval_us"] == (low, high) and cost["coverage"] == coverage
    assert all(writer > 0 for writer in rest["block_writer_us"])  # a drain takes CPU
    assert grpc["block_writer_us"] == [0.0] * blocks  # gRPC writes no access line

    # The verdicts: clients x each block's cost over the off server's p50 at that level, or
    # over the server's with the defaults where part 3 did not run that level.
    records = [{"setup": f"{REST}, {serving_record_cost.OFF}", "clients": 8, "p50_ms": 4.0},
               {"setup": REST, "clients": 8, "p50_ms": 9.0},
               {"setup": REST, "clients": 1, "p50_ms": 2.0},
               {"setup": GRPC, "clients": 32, "p50_ms": 10.0}]
    lines = serving_record_cost.verdicts(costs, records)
    expected = [(REST, 1, 2.0, "the server's (on)", rest),
                (REST, 8, 4.0, "the off server's", rest),
                (GRPC, 32, 10.0, "the server's (on)", grpc)]
    assert len(lines) == len(expected)
    for line, (protocol, clients, p50, whose, cost) in zip(lines, expected):
        shares = [clients * t / 1e3 / p50 * 100 for t in cost["block_total_us"]]
        assert line.startswith(f"- {protocol} at {clients} client(s), ")
        assert f"{clients} x {cost['total_us']:.2f} µs" in line
        assert f"against {whose} p50 of {p50:.2f} ms" in line
        assert line.endswith(paired.verdict(shares, serving_record_cost.TARGET_PERCENT,
                                            "blocks"))
        assert line.endswith("too few blocks for a 90% interval)")  # 3 blocks: 75%
    shown = "\n".join(serving_record_cost.text(costs, records))
    assert f"| {REST} | {blocks} | {blocks * requests} |" in shown and lines[-1] in shown
    assert serving_record_cost.text([], records) == []


def test_alone_it_prints_only(tmp_path: Any, capsys: Any) -> None:
    """Its results are written by benchmarks.serving, beside the p50s of the same run."""
    from benchmarks import serving_record_cost

    assert serving_record_cost.main(["--model-dir", str(tmp_path)]) == 2
    assert "--no-write" in capsys.readouterr().err


def test_too_few_blocks_decide_nothing() -> None:
    """Three blocks hold the median with 75% only: however clear they look, not decided."""
    from benchmarks import paired

    assert paired.verdict([0.1, 0.2, 0.3], 5, "blocks", 0.9).endswith(
        "not decided (too few blocks for a 90% interval)")
    assert paired.verdict([0.1, 0.2, 0.3, 0.1, 0.2], 5, "blocks", 0.9).endswith(": met")
    assert paired.verdict([6, 7, 8, 6, 7], 5, "blocks", 0.9).endswith(": NOT met")
