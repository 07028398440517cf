"""ExampleGen's TFRecord files: which ones a pattern names and how they are compressed.

One answer for every reader of them (the Trainer's tf.data input, the batched Beam source).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import tensorflow as tf


def tfrecord_files(file_patterns: Sequence[str]) -> Tuple[List[str], str]:
    """The files the patterns match, sorted, and their tf.data compression type.

    Both ExampleGens write TFRecord files gzipped as TFX's `.gz` names say.
    """
    files = sorted(name for pattern in file_patterns for name in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {list(file_patterns)}")
    gzipped = {name.endswith(".gz") for name in files}
    if len(gzipped) > 1:
        raise ValueError(f"some but not all of {list(file_patterns)} are gzipped")
    return files, "GZIP" if gzipped.pop() else ""
