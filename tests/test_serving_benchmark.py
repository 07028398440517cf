"""The serving benchmark still runs end to end (it is run by hand; nothing else notices when a
change to the server or its clients breaks it): a tiny run, every row, no errors."""
from __future__ import annotations

from typing import Any, Tuple

from tests.serving_fixtures import ServingModels, spawn_server

pytest_plugins = ("tests.serving_fixtures",)


def test_the_quick_rows_run_against_a_real_server(serving_models: ServingModels,
                                                   tmp_path: Any, capsys: Any,
                                                   monkeypatch: Any) -> None:
    from benchmarks import serving, serving_report

    def forked(model_dir: str, port: int, log_path: Any, extra: Tuple[str, ...] = ()) -> Any:
        """The benchmark's server command, forked from a process that has imported TensorFlow
        (tests/server_forks.py) instead of started afresh: the same server, without paying
        TensorFlow's import for each of the run's three servers."""
        return spawn_server(["--model-dir", model_dir, "--port", str(port), *extra], log_path)

    monkeypatch.setattr(serving, "start_server", forked)
    model_dir = serving_models.serving_dir(tmp_path)
    assert serving.main(["--model-dir", str(model_dir), "--clients", "1,2", "--requests", "20",
                         "--seconds", "120", "--rounds", "2", "--overhead-clients", "1",
                         "--overhead-rounds", "2", "--overhead-requests", "10",
                         "--overhead-pairs", "1", "--switches", "0",
                         "--record-blocks", "3", "--record-requests", "20",
                         "--no-write"]) == 0
    printed = capsys.readouterr().out
    for setup in (serving_report.FLOOR, serving_report.FLOOR_PAUSED,
                  serving_report.FLOOR_LOADED, serving_report.REST,
                  serving_report.GRPC, serving_report.REST_STATUS, serving_report.GRPC_STATUS):
        assert f"| {setup} |" in printed
    # Each row's requests over both rounds, none failed; the verdict lines are there.
    rows = [line.split(" | ") for line in printed.splitlines()
            if line.startswith(f"| {serving_report.GRPC} | 2 |")]
    assert rows and rows[0][2:4] == ["40", "0"], rows
    assert "- gRPC p50 at 1 client:" in printed
    assert f"- The same call after a {serving_report.FLOOR_PAUSE_MS} ms sleep" in printed
    assert "- The same signature called on tf.saved_model.load's object" in printed
    assert "client CPU ms per request" in printed
    # The on/off comparison: both servers' rows, and each protocol's paired verdict.
    for protocol in (serving_report.REST, serving_report.GRPC):
        for state in ("on", "off"):
            assert f"| {protocol}, metrics and access log {state} | 1 | 20 | 0 |" in printed
        assert f"- {protocol} p50 at 1 client(s) with metrics and access log on vs off" in printed
    assert "interval" in printed and "2 rounds); target under +5%: " in printed
    # The recording's own cost, measured in process, against each level's p50.
    for protocol in (serving_report.REST, serving_report.GRPC):
        assert f"- {protocol} at 1 client(s), the recording's CPU measured in process:" in printed


def test_help_says_how_to_run_the_quick_rows(capsys: Any) -> None:
    import pytest

    from benchmarks import serving

    with pytest.raises(SystemExit):
        serving.parse_args(["--help"])
    assert "--overhead-clients '' --switches 0" in capsys.readouterr().out
