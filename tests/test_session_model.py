"""Signatures run in a Session (serving/session_model.py): the same answers as the loaded
object's signatures, tables initialised, and with one TensorFlow thread the graph runs in the
calling thread (no other thread of the process is woken by a call)."""
from __future__ import annotations

import glob
import pathlib
import threading
from typing import Dict

import numpy as np
import pytest
import tensorflow as tf

from serving import session_model
from tests.tiny_exports import saved_version


class _Tiny(tf.Module):
    """A string lookup table (initialised by the SavedModel's init op) and a variable."""

    def __init__(self) -> None:
        super().__init__()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["a", "b"], [1.0, 2.0]), default_value=-1.0)
        self.scale = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.float32)])
    def serve(self, word: tf.Tensor, x: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {"y": self.table.lookup(word) * self.scale + x, "n": tf.shape(x)[0]}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return saved_version(_Tiny(), tmp_path_factory, "tiny")


def test_calls_answer_as_the_loaded_signatures(export: pathlib.Path) -> None:
    session, signatures = session_model.load(str(export))
    assert set(signatures) == {"serving_default"}  # the init op's signature is not served
    call, dtypes = signatures["serving_default"]
    assert dtypes == {"word": tf.string, "x": tf.float32}
    columns = {"word": ["a", "b", "zzz"], "x": [0.5, 0.25, 0.0]}
    got = call(columns)
    expected = tf.saved_model.load(str(export)).signatures["serving_default"](
        word=tf.constant(columns["word"]), x=tf.constant(columns["x"]))
    assert set(got) == {"y", "n"}
    # The same graph on the same float32 inputs: the same operations, so the same bits.
    np.testing.assert_array_equal(got["y"], expected["y"].numpy())
    assert got["y"].tolist() == [3.5, 6.25, -3.0]
    assert int(got["n"]) == 3
    session.close()


def _other_threads_switches() -> int:
    """Voluntary context switches of this process's threads other than the caller's."""
    own = threading.get_native_id()
    total = 0
    for status in glob.glob("/proc/self/task/*/status"):
        if status.split("/")[4] == str(own):
            continue
        try:
            text = pathlib.Path(status).read_text()
        except OSError:  # the thread ended meanwhile
            continue
        total += int(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("voluntary_ctxt_switches")))
    return total


@pytest.mark.skipif(not pathlib.Path("/proc/self/task").is_dir(), reason="Linux /proc")
def test_one_thread_runs_the_graph_in_the_caller(export: pathlib.Path) -> None:
    config = session_model.session_config(1, 1)
    assert config.inter_op_parallelism_threads == -1
    session, signatures = session_model.load(str(export), config)
    call, _ = signatures["serving_default"]
    columns = {"word": ["a"], "x": [1.0]}
    call(columns)
    calls = 200
    before = _other_threads_switches()
    for _ in range(calls):
        call(columns)
    # A graph run on a pool thread wakes that thread for about every call; run in the
    # caller's thread it wakes none. Half the calls leaves room for unrelated threads of the
    # test process waking meanwhile.
    assert _other_threads_switches() - before < calls // 2
    session.close()
