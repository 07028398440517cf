"""Batch prediction's request log is readable only once its run succeeded: a killed run and its
rerun, or a bundle Beam retried, log each row once (serving/batch_log.py)."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any, List, Tuple

import pytest

from serving import batch_log, batch_predict, request_log
from tests.serving_fixtures import COURSE_PAYLOAD, ServingModels

pytest_plugins = ("tests.serving_fixtures",)

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEADLINE = 300  # seconds: only a hung process reaches it
# batch_predict, stopped where the pipeline has finished and nothing is assembled yet: the
# marker file says it got there, and it waits to be killed.
STOPPED_BEFORE_ASSEMBLY = """
import signal, sys
from serving import batch_output, batch_predict
def stop(*args, **kwargs):
    open(sys.argv[1], "w").close()
    signal.pause()
batch_output.assemble = stop
sys.exit(batch_predict.main(sys.argv[2:]))
"""


def _rows(tmp_path: pathlib.Path, count: int) -> pathlib.Path:
    """`count` distinct rows (mother_age, gestation_weeks), so each logged row names its own."""
    rows = tmp_path / "rows.jsonl"
    instance = COURSE_PAYLOAD["instances"][0]
    rows.write_text("".join(json.dumps({**instance, "mother_age": 15 + n % 20,
                                        "gestation_weeks": 30 + n // 20}) + "\n"
                            for n in range(count)))
    return rows


def _cells(rows: Any) -> List[Tuple[float, float]]:
    return sorted(zip(map(float, rows["mother_age"]), map(float, rows["gestation_weeks"])))


def _logged(log_dir: pathlib.Path) -> List[Tuple[float, float]]:
    """(mother_age, gestation_weeks) of each row monitoring reads from the log, sorted."""
    from monitoring import logs as monitoring_logs

    files = request_log.complete_files(log_dir)
    return _cells(monitoring_logs.read(files)) if files else []


def _predicted(output: pathlib.Path) -> List[Tuple[float, float]]:
    """The same of each row of the predictions file."""
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    return _cells({name: [line[name] for line in lines]
                   for name in ("mother_age", "gestation_weeks")})


def _wait_for(path: pathlib.Path, process: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + DEADLINE
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "batch_predict never reached the assembly"
        time.sleep(0.05)  # polling for an event, with a deadline; not a synchronisation


def test_a_killed_run_logs_nothing_and_its_rerun_logs_each_row_once(
        stand_in_models: ServingModels, tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture) -> None:
    count = 40
    rows, log_dir, marker = _rows(tmp_path, count), tmp_path / "log", tmp_path / "stopped"
    output = tmp_path / "predictions.jsonl"
    argv = ["--model-dir", str(stand_in_models.serving_dir(tmp_path)), "--input", str(rows),
            "--output", str(output), "--request-log-dir", str(log_dir),
            "--batch-size", "4", "--direct_num_workers", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-c", STOPPED_BEFORE_ASSEMBLY, str(marker),
                                *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        _wait_for(marker, process)
        # Every row is logged by now, and none of it is readable yet.
        assert request_log.staged_files(log_dir)
        assert request_log.complete_files(log_dir) == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert not output.exists()

    assert batch_predict.main(argv) == 0, capsys.readouterr()
    assert len(_predicted(output)) == count
    assert _logged(log_dir) == _predicted(output)
    assert request_log.staged_files(log_dir) == []  # the killed run's files are gone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("predictions")) == [
        "predictions.jsonl", "predictions.jsonl.errors.jsonl"]


def test_a_retried_bundle_logs_its_rows_once(
        stand_in_models: ServingModels, tmp_path: pathlib.Path, monkeypatch: Any,
        capsys: pytest.CaptureFixture) -> None:
    """BundleBasedDirectRunner retries a failed bundle: the first attempt's log, written and
    completed, is not the one kept."""
    count = 12
    rows, log_dir, output = _rows(tmp_path, count), tmp_path / "log", tmp_path / "out.jsonl"
    finish, failed = batch_log.LogPredictions.finish_bundle, []

    def fail_first_attempt(self: Any) -> None:
        finish(self)  # the attempt's files are complete (staged) before it fails
        if not failed:
            failed.append(request_log.staged_files(log_dir))
            raise RuntimeError("a bundle that fails once")

    monkeypatch.setattr(batch_log.LogPredictions, "finish_bundle", fail_first_attempt)
    code = batch_predict.main([
        "--model-dir", str(stand_in_models.serving_dir(tmp_path)), "--input", str(rows),
        "--output", str(output), "--request-log-dir", str(log_dir),
        "--runner", "BundleBasedDirectRunner"])
    assert code == 0, capsys.readouterr()
    assert failed and failed[0], "the first attempt logged nothing: the test tests nothing"
    assert len(_predicted(output)) == count
    assert _logged(log_dir) == _predicted(output)
    assert request_log.staged_files(log_dir) == []
