"""Pushes that run at once each land whole as their own version, or fail with a message."""
import concurrent.futures
import filecmp
import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from pipelines.components import serving_pusher

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUSHERS = 5
TRIALS = 20


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> pathlib.Path:
    """A real, tiny SavedModel: what a push copies must still load."""
    module = tf.Module()
    module.scale = tf.Variable(3.0)
    module.predict = tf.function(lambda x: x * module.scale,
                                 input_signature=[tf.TensorSpec([None], tf.float32)])
    path = tmp_path_factory.mktemp("model") / "saved"
    tf.saved_model.save(module, str(path))
    return path


def same_tree(left: pathlib.Path, right: pathlib.Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.diff_files:
        return False
    return all(same_tree(left / d, right / d) for d in comparison.common_dirs)


def assert_every_version_whole(serving: pathlib.Path, model: pathlib.Path,
                               pushed: list) -> None:
    versions = serving_pusher.serving_versions(serving)
    assert sorted(versions) == sorted(pushed), "each push names its own version, which exists"
    assert len(set(pushed)) == len(pushed)
    for version, path in versions.items():
        assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
        record = (path / serving_pusher.PUSH_RECORD)
        copied = {p.name for p in path.iterdir()} - {record.name}
        assert copied == {p.name for p in model.iterdir()}
        assert same_tree(path / "variables", model / "variables")
        assert filecmp.cmp(path / "saved_model.pb", model / "saved_model.pb", shallow=False)
        assert f'"version": {version}' in record.read_text()
    assert not [p for p in serving.iterdir() if p.name.startswith(".")], "no staging left"


def predict(path: pathlib.Path, x: float) -> float:
    loaded = tf.saved_model.load(str(path))  # kept alive while its function runs
    return float(loaded.predict(tf.constant([x]))[0])


def push(model: pathlib.Path, serving: pathlib.Path, pusher: int) -> int:
    return serving_pusher.push_atomically(model, serving, {"model_uri": f"m{pusher}"})


def test_five_threads_pushing_at_once_twenty_times(saved_model, tmp_path):
    for trial in range(TRIALS):
        serving = tmp_path / f"trial{trial}" / "babyweight"
        with concurrent.futures.ThreadPoolExecutor(PUSHERS) as pool:
            pushed = list(pool.map(lambda i: push(saved_model, serving, i), range(PUSHERS)))
        assert_every_version_whole(serving, saved_model, pushed)
        newest = serving_pusher.serving_versions(serving)[max(pushed)]
        assert predict(newest, 2.0) == 6.0


PUSHER_PROCESS = """
import pathlib, sys, time
from pipelines import atomic_push
start = pathlib.Path(sys.argv[3])
while not start.exists():  # every process is ready before any pushes
    time.sleep(0.005)
print(atomic_push.push_atomically(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]),
                                  {"model_uri": sys.argv[4]}))
"""


def test_five_processes_pushing_at_once(saved_model, tmp_path):
    serving = tmp_path / "babyweight"
    start = tmp_path / "go"
    processes = [subprocess.Popen(
        [sys.executable, "-c", PUSHER_PROCESS, str(saved_model), str(serving), str(start),
         f"m{i}"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, text=True) for i in range(PUSHERS)]
    start.touch()
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * PUSHERS
    pushed = [int(output.strip()) for output in outputs]
    assert_every_version_whole(serving, saved_model, pushed)
    for path in serving_pusher.serving_versions(serving).values():
        assert predict(path, 1.0) == 3.0
