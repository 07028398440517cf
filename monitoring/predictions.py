"""The served model's predictions on its own eval split: what its predictions looked like when
it was blessed, to compare the served predictions with.

The Evaluator keeps metrics, not per-example predictions, so the version's `serving_tf_example`
signature is run on (a bounded sample of) the eval examples its lineage names. The result is
kept beside the monitoring pages per version, so later windows reuse it.
"""
from __future__ import annotations

import gc
import pathlib
from typing import List

import numpy as np

from common import files
from monitoring.lineage import Lineage

EXAMPLES_SIGNATURE = "serving_tf_example"
MAX_EXAMPLES = 50_000
_BATCH = 4096


def _files(directory: pathlib.Path) -> List[str]:
    files = sorted(str(p) for p in directory.glob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no eval examples in {directory}")
    return files


def compute(lineage: Lineage, max_examples: int = MAX_EXAMPLES) -> np.ndarray:
    import tensorflow as tf

    files = _files(lineage.examples_dir("eval"))
    compression = "GZIP" if files[0].endswith(".gz") else ""
    model = tf.saved_model.load(str(lineage.version_dir))
    signature = model.signatures[EXAMPLES_SIGNATURE]
    dataset = tf.data.TFRecordDataset(files, compression_type=compression)
    values = []
    for batch in dataset.take(max_examples).batch(_BATCH):
        outputs = signature(examples=batch)
        values.append(next(iter(outputs.values())).numpy().reshape(-1))
    # Freed now, not at interpreter teardown, where TensorFlow's functions print
    # 'Exception ignored in AtomicFunction.__del__' (serving/batch_predict.py does the same).
    del signature, model
    gc.collect()
    return np.concatenate(values) if values else np.array([], np.float32)


def cached(lineage: Lineage, cache_dir: pathlib.Path) -> np.ndarray:
    """`compute`, kept in cache_dir/eval_predictions-<version>-<model id>.npy. Each process
    writes its own temporary file, then renames it into place: two monitoring runs computing
    it at once each publish a whole file, and a reader never loads half of one."""
    path = cache_dir / f"eval_predictions-{lineage.version}-{lineage.model_id}.npy"
    if path.is_file():
        return np.load(path)
    values = compute(lineage)
    files.write_with_atomically(path, lambda handle: np.save(handle, values))
    return values
