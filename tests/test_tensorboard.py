"""TensorBoard, as the README and every run report start it, shows the runs' training logs.

It runs for real from the locked environment (TensorBoard 2.16 imports pkg_resources, which
setuptools 82 removed: the lock pins setuptools below it), on a port the system picks, against
the logdir the pipeline runs fill (reports.training_logs), and answers over its HTTP API.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time
from typing import Any, Callable, Dict

import httpx
import numpy as np
import pytest
import tensorflow as tf

from reports import training_logs

pytestmark = pytest.mark.slow

# How long to wait for something that should happen (it costs nothing when it does): enough
# for TensorBoard to import TensorFlow and read the logs on a loaded machine.
PATIENCE_S = 300


def _until(what: str, produce: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        value = produce()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"TensorBoard: no {what} after {PATIENCE_S} s")


@pytest.fixture(scope="module")
def tensorboard(pipeline_runs, tmp_path_factory):
    """`tensorboard --logdir <runs>/tensorboard` on port 0 (the system picks a free one)."""
    logdir = training_logs.logdir_for(pipeline_runs.reports_dir)
    log = tmp_path_factory.mktemp("tensorboard") / "tensorboard.log"
    executable = pathlib.Path(sys.executable).parent / "tensorboard"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(executable), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        def url() -> str:
            if process.poll() is not None:
                raise RuntimeError(f"tensorboard exited with {process.returncode}:\n"
                                   f"{log.read_text()}")
            found = re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", log.read_text())
            return found.group(1) if found else ""

        yield _until("address in its log", url), logdir
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _event_scalars(run_dir: pathlib.Path, tag: str) -> Dict[int, float]:
    """step -> value of a scalar as the Trainer's Keras callback wrote it."""
    values = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_tensorboard_shows_each_run_s_training_by_the_run_s_name(pipeline_runs, tensorboard):
    url, logdir = tensorboard
    first_run = sorted(p.name for p in pipeline_runs.reports_dir.glob("2*"))[0]
    runs = _until("runs", lambda: httpx.get(f"{url}/data/runs", timeout=30).json())
    # Run 1 trained; run 2 reused its model from the cache; run 3 stopped before training.
    assert sorted(runs) == [f"{first_run}/train", f"{first_run}/validation"]

    run = f"{first_run}/validation"
    tags = httpx.get(f"{url}/data/plugin/scalars/tags", timeout=30).json()
    assert "epoch_rmse" in tags[run]
    answer = httpx.get(f"{url}/data/plugin/scalars/scalars",
                       params={"run": run, "tag": "epoch_rmse"}, timeout=30)
    assert answer.status_code == 200, answer.text
    served = {step: value for _, step, value in answer.json()}
    written = _event_scalars(logdir / first_run / "validation", "epoch_rmse")
    # The same float32 numbers, read back by TensorBoard: no rounding in between.
    assert served == written and len(served) >= 1
    assert all(np.isfinite(v) and v > 0 for v in served.values())


def test_every_run_report_names_the_logdir_and_the_run(pipeline_runs):
    logdir = training_logs.logdir_for(pipeline_runs.reports_dir)
    first, second, stopped = sorted(pipeline_runs.reports_dir.glob("2*"))
    for report in (first, second):
        page = (report / "report.html").read_text()
        assert f".venv/bin/tensorboard --logdir {logdir}" in page
        assert f'id="tensorboard-run">{first.name}<' in page  # the run that trained
    assert "the Trainer did not run" in (stopped / "report.html").read_text()
