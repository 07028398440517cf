"""TF Serving's warmup file, written into the export from eval rows.

TF Serving replays `assets.extra/tf_serving_warmup_requests` (a TFRecord of PredictionLogs,
at most 1000 read) before a version serves, so its first real request does not pay for
graph initialisation; the local server replays the same file (serving/warmup.py). The
requests are `serving_tf_example` Predict calls on the first eval rows, exactly as ExampleGen
wrote them (the label rides along; the signature's parse ignores it). The pusher copies the
export whole, so the file reaches every pushed version.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import tensorflow as tf

from modules import records

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 100  # requests (PredictionLogs) in the file
WARMUP_SIGNATURE = "serving_tf_example"
WARMUP_BATCH = 10  # examples per request
MAX_WARMUP_EXAMPLES = MAX_WARMUP_RECORDS * WARMUP_BATCH


def first_examples(file_patterns: Sequence[str], limit: int = MAX_WARMUP_EXAMPLES
                   ) -> List[bytes]:
    files, compression = records.tfrecord_files(file_patterns)
    dataset = tf.data.TFRecordDataset(files, compression_type=compression or None)
    return [record.numpy() for record in dataset.take(limit)]


def write_warmup(saved_model_dir: str, examples: Sequence[bytes], model_name: str = "",
                 batch: int = WARMUP_BATCH) -> int:
    """Writes the warmup file: Predict requests of `batch` examples each; returns how many."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for start in range(0, min(len(examples), MAX_WARMUP_RECORDS * batch), batch):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = WARMUP_SIGNATURE
            request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto(list(examples[start:start + batch]), dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
            count += 1
            if count == MAX_WARMUP_RECORDS:
                break
    return count


def write_from_eval(saved_model_dir: str, eval_files: Sequence[str]) -> int:
    """The Trainer's call: the warmup file from the first eval rows."""
    return write_warmup(saved_model_dir, first_examples(eval_files))
