"""The export's regression signature: what TF Serving's Regress API (and `:regress`) runs.

TF 2.16 saves every tf.function signature with method_name `tensorflow/serving/predict`;
there is no API to save another method. TF Serving's Regress, though, only runs a signature
whose method_name is `tensorflow/serving/regress`, with one input `inputs` (serialized
tf.Examples) and one output `outputs`. So the export adds such a function as the signature
`regression` and then rewrites that one SignatureDef's method_name in saved_model.pb. TF's
own loaders ignore method_name (they rebuild signatures from the object graph), so the
SavedModel still loads and predicts as before; its fingerprint is written again to match.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from modules.contract import (REGRESS_INPUTS, REGRESS_METHOD,  # noqa: E402,F401
                              REGRESS_OUTPUTS, REGRESSION)


def with_regression(signatures: Dict[str, Any], examples_signature: str) -> Dict[str, Any]:
    """`signatures` plus `regression`: `examples_signature`'s one output, under Regress's names."""
    serve_examples: Callable = signatures[examples_signature]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=REGRESS_INPUTS)],
                 autograph=False)
    def regression(inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
        outputs = serve_examples(examples=inputs)
        (prediction,) = outputs.values()
        return {REGRESS_OUTPUTS: tf.reshape(prediction, [-1])}

    return {**signatures, REGRESSION: regression.get_concrete_function()}


def mark_regression(saved_model_dir: str) -> None:
    """Sets the `regression` SignatureDef's method_name to TF Serving's regress method."""
    path = os.path.join(saved_model_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as handle:
        proto.ParseFromString(handle.read())
    for meta_graph in proto.meta_graphs:
        if REGRESSION in meta_graph.signature_def:
            meta_graph.signature_def[REGRESSION].method_name = REGRESS_METHOD
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(proto.SerializeToString())
    _fingerprint_again(saved_model_dir)


def _fingerprint_again(saved_model_dir: str) -> None:
    """fingerprint.pb holds hashes of saved_model.pb as it was saved: after the rewrite above it
    is written again from the new file, by the writer the save itself used (TF 2.16 has no public
    one). Where that writer is gone, the stale file is removed instead: a SavedModel without a
    fingerprint loads as before, one with a wrong fingerprint misnames the model."""
    try:
        from tensorflow.python.saved_model import fingerprinting_utils
    except ImportError:
        fingerprinting_utils = None
    if fingerprinting_utils is not None and hasattr(fingerprinting_utils, "write_fingerprint"):
        fingerprinting_utils.write_fingerprint(saved_model_dir)
        return
    stale = os.path.join(saved_model_dir, "fingerprint.pb")
    if tf.io.gfile.exists(stale):
        tf.io.gfile.remove(stale)
