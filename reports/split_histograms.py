"""Histograms of the numeric columns on bins shared by every split, counted from the examples.

Why not StatisticsGen's histograms: TFDV bins each split over its own min and max, so splits
with the same distribution drawn from different edges look shifted. Counting the run's own
examples (only the numeric columns are parsed) on one set of edges makes the splits comparable
bin for bin.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

MAX_ROWS_PER_SPLIT = 2_000_000  # beyond this, the first rows of the split are counted
FLOAT_BINS = 40
MAX_INTEGER_BINS = 60  # integer columns get one bin per value up to this many values


@dataclasses.dataclass(frozen=True)
class SharedHistogram:
    """One column's counts per split over the same edges."""

    name: str
    edges: np.ndarray
    counts: Dict[str, np.ndarray]  # split -> examples per bin
    rows: Dict[str, int]  # split -> examples read (non-missing values counted)
    capped: bool = False


def read_columns(examples_uri: str, splits: Sequence[str], columns: Dict[str, str]
                 ) -> Dict[str, Dict[str, np.ndarray]]:
    """split -> column -> its values (missing ones dropped). `columns`: name -> 'int'/'float'."""
    import tensorflow as tf

    spec = {name: tf.io.VarLenFeature(tf.int64 if kind == "int" else tf.float32)
            for name, kind in columns.items()}
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for split in splits:
        files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
        if not files:
            continue
        parts: Dict[str, List[np.ndarray]] = {name: [] for name in columns}
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(
            MAX_ROWS_PER_SPLIT).batch(8192)
        for batch in dataset:
            parsed = tf.io.parse_example(batch, spec)
            for name in columns:
                parts[name].append(parsed[name].values.numpy())
        out[split] = {name: np.concatenate(values) if values else np.array([])
                      for name, values in parts.items()}
    return out


def shared_edges(values: Sequence[np.ndarray], integer: bool) -> Optional[np.ndarray]:
    present = [v for v in values if v.size]
    if not present:
        return None
    low = float(min(v.min() for v in present))
    high = float(max(v.max() for v in present))
    if integer and high - low + 1 <= MAX_INTEGER_BINS:
        return np.arange(low - 0.5, high + 1.5, 1.0)
    if high <= low:
        return np.array([low - 0.5, low + 0.5])
    return np.linspace(low, high, FLOAT_BINS + 1)


def histograms(examples_uri: str, splits: Sequence[str], columns: Dict[str, str]
               ) -> Dict[str, SharedHistogram]:
    """Column name -> its histogram on shared edges, for every split that has examples."""
    values = read_columns(examples_uri, splits, columns)
    out = {}
    for name, kind in columns.items():
        per_split = {split: columns_[name] for split, columns_ in values.items()}
        edges = shared_edges(list(per_split.values()), kind == "int")
        if edges is None:
            continue
        out[name] = SharedHistogram(
            name=name, edges=edges,
            counts={split: np.histogram(v, bins=edges)[0] for split, v in per_split.items()},
            rows={split: int(v.size) for split, v in per_split.items()},
            capped=any(v.size >= MAX_ROWS_PER_SPLIT for v in per_split.values()))
    return out
