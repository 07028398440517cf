"""serving/session_callable.py: the signatures' direct callable is in effect on the installed
TensorFlow, answers and fails exactly as the public Session.make_callable path does, and
outside its version range the public path runs, with one log line."""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import tensorflow as tf

from serving import session_callable, session_model
from tests.tiny_exports import saved_version


class _Tiny(tf.Module):
    """Strings and floats in; a float, a string, an int scalar out; a string it parses."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None], tf.float32)])
    def serve(self, word: tf.Tensor, x: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {"y": tf.strings.to_number(word) * 2.0 + x,
                "echo": tf.strings.join([word, "!"]), "n": tf.shape(x)[0]}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return saved_version(_Tiny(), tmp_path_factory, "tiny_callable")


def _both(export: pathlib.Path) -> Tuple[Any, Any, Any]:
    """(session, direct run, public run) of the signature: feeds in the Call's order (word,
    x), fetches echo, n, y."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        definition = tf.compat.v1.saved_model.load(
            session, [tf.saved_model.SERVING], str(export)).signature_def["serving_default"]
    feeds = [graph.get_tensor_by_name(info.name) for _, info in sorted(definition.inputs.items())]
    names = sorted(definition.outputs)  # echo, n, y
    fetches = [graph.get_tensor_by_name(definition.outputs[name].name) for name in names]
    return (session, session_callable.bind(session, fetches, feeds, direct=True),
            session_callable.bind(session, fetches, feeds, direct=False))


def _outcome(run: Any, *arrays: Any) -> Any:
    try:
        return [(type(v), getattr(v, "dtype", None), np.asarray(v).tolist()) for v in run(*arrays)]
    except Exception as error:  # noqa: BLE001 - the test compares the two paths' errors
        return (type(error), str(error))


def test_the_direct_callable_is_in_effect_on_the_installed_tensorflow(
        export: pathlib.Path) -> None:
    assert session_callable.in_effect()
    session, signatures = session_model.load(str(export))
    call, _ = signatures["serving_default"]
    assert getattr(call.run, "direct", False), "the signature runs on Session.run"
    assert call({"word": ["1.5", "2"], "x": [0.5, 1.0]})["y"].tolist() == [3.5, 5.0]
    session.close()


def test_the_version_range_is_tensorflow_2_16() -> None:
    assert session_callable.in_effect("2.16.0") and session_callable.in_effect("2.16.2")
    assert not session_callable.in_effect("2.15.1")
    assert not session_callable.in_effect("2.17.0rc1")


def test_outside_the_range_the_public_path_runs_and_says_so(
        export: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(session_callable, "_decided", [])
    monkeypatch.setattr(session_callable.tf, "__version__", "2.17.0")
    with caplog.at_level(logging.WARNING, logger="babyweight.serving"):
        session, signatures = session_model.load(str(export))
    call, _ = signatures["serving_default"]
    assert not getattr(call.run, "direct", False)
    lines = [r.getMessage() for r in caplog.records if "make_callable" in r.getMessage()]
    assert len(lines) == 1 and "found 2.17.0" in lines[0]  # once, for every signature
    assert call({"word": ["1"], "x": [1.0]})["y"].tolist() == [3.0]
    session.close()


def test_direct_and_public_paths_answer_and_fail_alike(export: pathlib.Path) -> None:
    session, direct, public = _both(export)
    cases: List[Tuple[Any, ...]] = [
        (np.asarray(["1.5", "2"], dtype=object), np.asarray([0.5, 1.0], np.float32)),
        (np.asarray([b"3", "4"], dtype=object), np.asarray([0.0, 0.25], np.float32)),
        (np.asarray([], dtype=object), np.asarray([], np.float32)),
        # Not what the graph takes: the public path converts or refuses, both alike.
        (np.asarray(["1"], dtype=object), np.asarray([1.0], np.float64)),
        (np.asarray(["1"], dtype=object), [2.0]),
        (np.asarray([["1"]], dtype=object), np.asarray([[1.0]], np.float32)),
        (np.asarray(["1"], dtype=object),),
        # The graph's own error (a string that is no number): raised as Session.run raises it.
        (np.asarray(["1", "abc"], dtype=object), np.asarray([1.0, 2.0], np.float32)),
    ]
    outcomes = [(_outcome(direct, *case), _outcome(public, *case)) for case in cases]
    for case, (fast, stock) in zip(cases, outcomes):
        assert fast == stock, case
    assert outcomes[0][0][2][2] == [3.5, 5.0]
    assert outcomes[1][0][0][2] == [b"3!", b"4!"] and outcomes[1][0][1][2] == 2
    assert outcomes[5][0][0] is ValueError and "Cannot feed value of shape" in outcomes[5][0][1]
    assert outcomes[7][0][0] is tf.errors.InvalidArgumentError and "abc" in outcomes[7][0][1]
    session.close()
    closed = (np.asarray(["1"], dtype=object), np.asarray([1.0], np.float32))
    assert _outcome(direct, *closed) == _outcome(public, *closed)
    assert _outcome(direct, *closed)[0] is RuntimeError  # Session.run's "closed Session"
