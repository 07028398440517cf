"""Replays a version's TF Serving warmup file before it serves (modules/warmup.py writes it).

TF Serving's rule: a version with `assets.extra/tf_serving_warmup_requests` runs every request
in it (up to 1000) before it is marked AVAILABLE, and a request that fails fails the load. The
same holds here: serving/model_store.py calls `replay` before a version is switched in.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Tuple

import tensorflow as tf

from modules.warmup import WARMUP_FILE

MAX_REPLAYED = 1000  # TF Serving's limit on warmup records


def read_requests(saved_model_dir: str) -> Iterator[Tuple[str, dict]]:
    """(signature, {input: value list}) for each Predict request of the warmup file."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        if index == MAX_REPLAYED:
            return
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {index} is a {log.WhichOneof('log_type')}; only "
                             "predict_log warmup requests are replayed here")
        request = log.predict_log.request
        yield (request.model_spec.signature_name or "serving_default",
               {name: tf.make_ndarray(proto).reshape(-1).tolist()
                for name, proto in request.inputs.items()})


def replay(model: Any) -> int:
    """Runs every warmup request on `model` (a ServedModel); returns how many ran."""
    count = 0
    path = os.path.join(model.path, WARMUP_FILE)
    for signature, columns in read_requests(model.path):
        if signature not in model.signatures:
            raise ValueError(f"{path}: a warmup request names signature {signature!r}, which "
                             "the model does not have")
        model.predict(signature, columns)
        count += 1
    return count



