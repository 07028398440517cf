"""The exported SavedModel runs on stock TF Serving: every op it uses is one of TensorFlow's own.

TF Serving's binary links TensorFlow's core kernels and nothing else; a graph that uses an op
from an extra library (tensorflow-text, tft's own ops, a custom op) loads here but fails there.
The graph's op list (the main graph and every function in its library) is read from
saved_model.pb and checked against the op registry of a process that has imported TensorFlow
and none of the libraries this test suite loads (tests/core_ops.py, forked from the servers'
zygote), so none of them can lend an op.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Set

from tensorflow.core.protobuf import saved_model_pb2

from tests.serving_fixtures import ServingModels, run_forked

pytest_plugins = ("tests.serving_fixtures",)


def graph_ops(saved_model_dir: str) -> Set[str]:
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    ops: Set[str] = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
        functions = {f.signature.name for f in meta_graph.graph_def.library.function}
        ops -= functions  # a call of a library function is named by the function
    return ops


def test_export_uses_only_tensorflow_core_ops(serving_models: ServingModels,
                                             tmp_path: pathlib.Path) -> None:
    ops = graph_ops(str(serving_models.exports[1]))
    assert {"ParseExample", "ParseExampleV2"} & ops  # the tf.Example signatures are there
    # tensorflow-text's CaseFoldUTF8 rides along: the check must name an extra library's op.
    unknown = _not_core(ops | {"CaseFoldUTF8"}, tmp_path)
    assert unknown == ["CaseFoldUTF8"], f"ops stock TF Serving does not have: {unknown}"


def _not_core(ops: Set[str], work: pathlib.Path) -> list:
    names = work / "ops.json"
    names.write_text(json.dumps(sorted(ops)))
    output = run_forked("tests.core_ops", [str(names)], work / "core_ops.log")
    printed = [line for line in output.splitlines() if line.startswith("[")]
    assert printed, output
    return json.loads(printed[-1])
