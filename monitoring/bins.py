"""Two distributions on shared bins, from TFDV statistics, for the monitoring page's charts.

TFDV buckets each dataset's numeric histogram over that dataset's own range; to draw training
and serving side by side both are spread onto the same edges, each bucket's count shared out in
proportion to its overlap with each new bin (the uniform-within-bucket reading TFDV's own
Jensen-Shannon divergence uses).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

Buckets = List[Tuple[float, float, float]]  # (low, high, count)


def numeric_buckets(feature: Optional[statistics_pb2.FeatureNameStatistics]) -> Buckets:
    if feature is None or not feature.HasField("num_stats"):
        return []
    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.STANDARD:
            return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
    return []


def category_counts(feature: Optional[statistics_pb2.FeatureNameStatistics]) -> Dict[str, float]:
    if feature is None or not feature.HasField("string_stats"):
        return {}
    ranked = feature.string_stats.rank_histogram.buckets or feature.string_stats.top_values
    counts = {}
    for bucket in ranked:
        label = getattr(bucket, "label", None) or getattr(bucket, "value", "")
        counts[label] = float(getattr(bucket, "sample_count", 0) or getattr(bucket, "frequency", 0))
    return counts


def shared_edges(*histograms: Buckets, bins: int = 20) -> np.ndarray:
    lows = [b[0] for h in histograms for b in h]
    highs = [b[1] for h in histograms for b in h]
    if not lows:
        return np.array([0.0, 1.0])
    low, high = min(lows), max(highs)
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, bins + 1)


def rebin(buckets: Buckets, edges: np.ndarray) -> np.ndarray:
    """Shares (summing to 1) of `buckets` on `edges`."""
    counts = np.zeros(len(edges) - 1)
    for low, high, count in buckets:
        if high <= low:  # a single value
            index = min(max(np.searchsorted(edges, low, side="right") - 1, 0), len(counts) - 1)
            counts[index] += count
            continue
        overlap = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None)
        counts += count * overlap / (high - low)
    total = counts.sum()
    return counts / total if total > 0 else counts


def category_shares(*counts: Dict[str, float], order: Sequence[str] = ()) -> Tuple[List[str],
                                                                                 List[np.ndarray]]:
    """Shares of each dataset per value, on the union of values (declared order first)."""
    values = list(order)
    for mapping in counts:
        values += [v for v in mapping if v not in values]
    shares = []
    for mapping in counts:
        total = sum(mapping.values())
        shares.append(np.array([mapping.get(v, 0.0) / total if total else 0.0 for v in values]))
    return values, shares
