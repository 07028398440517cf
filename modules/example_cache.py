"""Whether the Trainer's in-memory example cache fits: an estimate made before training.

Why: `tf.data`'s cache keeps every transformed training and eval example in RAM after the first
epoch; on a table bigger than memory it would end the run out of memory, possibly hours in.
The estimate is the number of examples (the files' bytes over the gzipped bytes per record of a
sample) times the bytes one cached example takes (its tensors' values plus tf.data's per-tensor
overhead); above the allowed fraction of the machine's memory the cache is turned off, with one
log line, and every epoch re-reads the files instead.
"""
from __future__ import annotations

import logging
import os
import pathlib
import zlib
from typing import Any, List, Mapping, Optional

import tensorflow as tf

from modules import records

LOGGER = logging.getLogger("babyweight.model")  # shown by common/logs.py

# Records read from the first file to learn how many bytes a gzipped record takes.
SAMPLE_RECORDS = 2048
# What one cached tensor costs besides its values (tf.data keeps each example's tensors as
# separate allocations after `unbatch`): a conservative allowance, so the estimate errs high.
TENSOR_OVERHEAD_BYTES = 160
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory_bytes() -> int:
    """The machine's physical memory, or the container's limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = pathlib.Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def estimated_records(file_patterns: List[str]) -> int:
    """How many records the files hold, from their size and a sample's gzipped record size."""
    files, compression = records.tfrecord_files(file_patterns)
    sample = list(tf.data.TFRecordDataset(files[:1], compression_type=compression)
                  .take(SAMPLE_RECORDS).as_numpy_iterator())
    if not sample:
        return 0
    # TFRecord framing: 8 bytes length, 4 + 4 bytes of CRCs around each record.
    framed = b"".join(len(r).to_bytes(8, "little") + b"\0" * 4 + r + b"\0" * 4 for r in sample)
    stored = len(zlib.compress(framed, 1)) if compression == "GZIP" else len(framed)
    total_bytes = sum(tf.io.gfile.stat(name).length for name in files)
    return int(total_bytes / (stored / len(sample))) + 1


def bytes_per_example(feature_spec: Mapping[str, Any]) -> int:
    """Bytes one cached transformed example takes: every feature's values and overhead."""
    total = 0
    for spec in feature_spec.values():
        shape = getattr(spec, "shape", None) or [1]
        values = 1
        for size in shape:
            values *= max(int(size), 1)
        item = 16 if spec.dtype == tf.string else spec.dtype.size
        total += values * item + TENSOR_OVERHEAD_BYTES
    return total


def estimated_cache_bytes(file_patterns: List[List[str]], feature_spec: Mapping[str, Any]
                          ) -> int:
    """The cache's estimated size for every dataset (train, eval) that would be cached."""
    examples = sum(estimated_records(patterns) for patterns in file_patterns)
    return examples * bytes_per_example(feature_spec)


def cache_fits(file_patterns: List[List[str]], feature_spec: Mapping[str, Any],
               max_memory_fraction: float, memory_bytes: Optional[int] = None) -> bool:
    """Whether to cache: the estimate is within the fraction of memory (else one log line)."""
    if not 0 < max_memory_fraction <= 1:
        raise ValueError("the example cache's memory fraction must be in (0, 1], got "
                         f"{max_memory_fraction}")
    memory = memory_bytes if memory_bytes is not None else machine_memory_bytes()
    estimate = estimated_cache_bytes(file_patterns, feature_spec)
    allowed = max_memory_fraction * memory
    if estimate <= allowed:
        return True
    LOGGER.warning(
        "Example cache off: the transformed examples would take about %.1f GB, over %.0f%% of "
        "this machine's %.1f GB (--cache-examples-max-memory-fraction); every epoch re-reads "
        "the files instead", estimate / 1e9, 100 * max_memory_fraction, memory / 1e9)
    return False
