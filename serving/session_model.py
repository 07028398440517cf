"""A SavedModel's signatures run as TF Serving runs them: in a Session, one callable each.

Why not the object `tf.saved_model.load` returns: calling one of its signatures goes through
TF2's Python function machinery on every call (binding the structured arguments, converting
each input with tf.constant, the captured variables) and the graph then runs on TensorFlow's
inter-op thread pool, a hand-off to another thread and back per call that costs most when
that thread has gone to sleep, as it has between a server's requests. TF Serving loads the
MetaGraph into a Session and feeds the signature's tensors; here each signature is bound once
to its tensors (serving/session_callable.py: in TensorFlow's C++, as TF Serving binds them),
takes numpy arrays, returns numpy arrays, and with one TensorFlow thread (--tf-threads 1) the
Session runs the graph in the calling thread itself.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from serving import session_callable

# The signature TF2 writes for the tables' initialisation: run by the loader, never served.
_INIT_SIGNATURE = "__saved_model_init_op"
Outputs = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Call:
    """One signature bound to its Session: canonical columns in, numpy outputs out."""

    input_names: Tuple[str, ...]
    numpy_dtypes: Tuple[Any, ...]  # object for strings (str or bytes values)
    output_names: Tuple[str, ...]
    run: Callable[..., List[np.ndarray]]

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> Outputs:
        arrays = [np.asarray(columns[name], dtype=dtype)
                  for name, dtype in zip(self.input_names, self.numpy_dtypes)]
        return dict(zip(self.output_names, self.run(*arrays)))


def session_config(inter: int, intra: int) -> tf.compat.v1.ConfigProto:
    """TensorFlow's thread counts (0 = its default) for a Session: one inter-op thread
    becomes the caller's own thread (a negative count, the Session's way of saying so)."""
    return tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1 if inter == 1 else inter,
                                    intra_op_parallelism_threads=intra)


def load(path: str, config: Optional[tf.compat.v1.ConfigProto] = None
         ) -> Tuple[tf.compat.v1.Session, Dict[str, Tuple[Call, Dict[str, tf.DType]]]]:
    """The SavedModel's serving MetaGraph in a new Session (variables restored, tables
    initialised) and each signature's Call with its input dtypes, by signature name.

    `config` by default: the process's threading (serving.app.configure_tensorflow's)."""
    if config is None:
        config = session_config(tf.config.threading.get_inter_op_parallelism_threads(),
                                tf.config.threading.get_intra_op_parallelism_threads())
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], path)
    signatures = {}
    for name, definition in meta_graph.signature_def.items():
        if name == _INIT_SIGNATURE or not definition.inputs:
            continue
        inputs = sorted(definition.inputs.items())
        dtypes = {key: tf.as_dtype(info.dtype) for key, info in inputs}
        outputs = list(definition.outputs.items())
        run = session_callable.bind(
            session, [graph.get_tensor_by_name(info.name) for _, info in outputs],
            [graph.get_tensor_by_name(info.name) for _, info in inputs])
        call = Call(tuple(key for key, _ in inputs),
                    tuple(object if dtypes[key] == tf.string else dtypes[key].as_numpy_dtype
                          for key, _ in inputs),
                    tuple(key for key, _ in outputs), run)
        signatures[name] = (call, dtypes)
    return session, signatures
