"""A Session's feeds and fetches bound once in TensorFlow's C++, run without Session.run.

Why: `Session.make_callable(fetches, feed_list)` hands every call to `Session.run` (its own
comment: non-empty feed lists are delegated to run()'s logic): a feed dict is built, each
feed's graph element looked up, converted and checked in Python, and the graph extended under
a lock, on every model call the server makes. `Session._make_callable_from_options`
(TF_SessionMakeCallable, the C++ Session::MakeCallable that TF Serving's own signature runner
uses) binds the feed and fetch names once; a call is one TF_SessionRunCallable on the arrays.

It is TensorFlow's private API, so this is the one place that uses it: written for TensorFlow
>=2.16,<2.17 (WRITTEN_FOR), checked once when the first signature is bound; outside that range
every signature runs on the public make_callable, and one log line says so. Inside it, a call
whose arrays are not exactly what the graph takes (dtype, a shape the placeholder does not
accept), or on a closed Session, runs on the public path too, so it fails with Session.run's
own error; the fast path's TensorFlow errors are raised through Session._do_call, as
Session.run raises them (the failing node's name and its graph context in the message).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from common.releases import within

LOGGER = logging.getLogger("babyweight.serving")

# (first TensorFlow release line written for, first one it was not)
WRITTEN_FOR: Tuple[Tuple[int, int], Tuple[int, int]] = ((2, 16), (2, 17))

Run = Callable[..., List[np.ndarray]]
_decided: List[bool] = []
_lock = threading.Lock()


def in_effect(version: Optional[str] = None) -> bool:
    """Whether the bound callables run here: the installed TensorFlow (or `version`) is in
    WRITTEN_FOR's range. The installed one's answer is decided and logged once."""
    first, after = WRITTEN_FOR
    if version is not None:
        return within(version, first, after)
    with _lock:
        if not _decided:
            ok = within(tf.__version__, first, after)
            if not ok:
                LOGGER.warning(
                    "Signatures run on Session.make_callable: the direct callable was written "
                    "for TensorFlow >=%d.%d,<%d.%d, found %s.", *first, *after, tf.__version__)
            _decided.append(ok)
        return _decided[0]


def _dims(feed: tf.Tensor) -> Optional[Tuple[Optional[int], ...]]:
    shape = feed.get_shape()
    return None if shape.rank is None else tuple(shape.as_list())


def _accepts(dims: Optional[Tuple[Optional[int], ...]], shape: Tuple[int, ...]) -> bool:
    if dims is None:
        return True
    if len(dims) != len(shape):
        return False
    for want, got in zip(dims, shape):
        if want is not None and want != got:
            return False
    return True


def bind(session: tf.compat.v1.Session, fetches: Sequence[tf.Tensor],
         feeds: Sequence[tf.Tensor], direct: Optional[bool] = None) -> Run:
    """`run(*arrays)` -> the fetches' arrays, as `session.make_callable(fetches, feeds)`
    gives it, one array per feed in order. `direct`: None = when in_effect(); False = the
    public path (tests compare the two)."""
    public = session.make_callable(list(fetches), list(feeds))
    if direct is None:
        direct = in_effect()
    if not direct or not all(session.graph.is_feedable(feed) for feed in feeds):
        return public
    handle = session._make_callable_from_options(config_pb2.CallableOptions(  # noqa: SLF001
        feed=[feed.name for feed in feeds], fetch=[fetch.name for fetch in fetches]))
    do_call = session._do_call  # noqa: SLF001 - Session.run's error rewriting
    specs = [(np.dtype(feed.dtype.as_numpy_dtype), _dims(feed)) for feed in feeds]

    def run(*arrays: Any) -> List[np.ndarray]:
        if session._closed or len(arrays) != len(specs):  # noqa: SLF001
            return public(*arrays)
        for array, (dtype, dims) in zip(arrays, specs):
            if not isinstance(array, np.ndarray) or array.dtype != dtype \
                    or not _accepts(dims, array.shape):
                return public(*arrays)
        return do_call(handle, *arrays)
    run.direct = True  # type: ignore[attr-defined]
    return run
