"""Confidence intervals for every slice metric: a bootstrap over months, the split's unit.

Why months and not examples: the eval split holds whole months (hashmonth), so its noise is the
noise of which months it drew; births of one month share conditions, and resampling examples
one by one would give intervals too narrow. Why here and not TFMA's own intervals: those
resample single examples (the same objection), and they force TFMA onto its per-example path,
which `pipelines.speedups.tfma_slicing` exists to avoid; this bootstrap needs only each month's sums.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from reports.evaluation_results import OVERALL
from reports.predictions import Predictions

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0  # fixed, so a page rebuilt from the same run shows the same intervals
MIN_MONTHS = 5  # fewer months than this give no interval: a handful of draws is not one


@dataclasses.dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def text(self) -> str:
        return f"{self.low:.4f} to {self.high:.4f}"


@dataclasses.dataclass(frozen=True)
class SliceUncertainty:
    """A slice's bootstrap intervals, and what they were computed from."""

    slice_name: str
    examples: int
    months: int
    rmse: Optional[Interval]
    mae: Optional[Interval]
    delta_rmse: Optional[Interval]  # candidate minus baseline, paired on the same months


def month_weights(months: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[resamples, months]: how often each month is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(months, np.full(months, 1.0 / months), size=resamples).astype(float)


def _interval(samples: np.ndarray) -> Optional[Interval]:
    samples = samples[np.isfinite(samples)]
    if samples.size < 2:
        return None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(low), float(high))


def per_month_sums(month_index: np.ndarray, months: int, values: np.ndarray) -> np.ndarray:
    return np.bincount(month_index, weights=values, minlength=months)


def ratio_samples(weights: np.ndarray, numerator: np.ndarray, counts: np.ndarray
                  ) -> np.ndarray:
    """Each resample's sum(numerator) / sum(counts); NaN where a resample drew none."""
    total = weights @ counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights @ numerator) / np.where(total > 0, total, 1),
                        np.nan)


def _valid(predictions: Predictions) -> np.ndarray:
    keep = np.isfinite(predictions.label) & np.isfinite(predictions.candidate)
    if predictions.baseline is not None:
        keep &= np.isfinite(predictions.baseline)
    return keep


def slice_masks(predictions: Predictions) -> List[Tuple[str, np.ndarray]]:
    """(slice name as read_metrics spells it, which examples it holds), overall first."""
    out = [(OVERALL, np.ones(len(predictions), dtype=bool))]
    for feature, labels in predictions.slices.items():
        for value in sorted(set(labels.tolist())):
            out.append((f"{feature}={value}", labels == value))
    return out


def slice_intervals(predictions: Predictions, resamples: int = RESAMPLES,
                    seed: int = SEED) -> Dict[str, SliceUncertainty]:
    """Slice name -> its RMSE, MAE and (with a baseline) paired RMSE-change intervals."""
    keep = _valid(predictions)
    month_ids, month_index = np.unique(predictions.month[keep], return_inverse=True)
    months = len(month_ids)
    weights = month_weights(months, resamples, seed)
    error = predictions.candidate[keep] - predictions.label[keep]
    base_error = (predictions.baseline[keep] - predictions.label[keep]
                  if predictions.baseline is not None else None)
    out = {}
    for name, mask in slice_masks(predictions):
        mask = mask[keep]
        sums = lambda values: per_month_sums(month_index[mask], months, values)  # noqa: E731
        counts = sums(np.ones(int(mask.sum())))
        rmse = np.sqrt(ratio_samples(weights, sums(error[mask] ** 2), counts))
        mae = ratio_samples(weights, sums(np.abs(error[mask])), counts)
        delta = None
        if base_error is not None:
            base = np.sqrt(ratio_samples(weights, sums(base_error[mask] ** 2), counts))
            delta = _interval(rmse - base)
        seen = int((counts > 0).sum())
        enough = seen >= MIN_MONTHS
        out[name] = SliceUncertainty(
            slice_name=name, examples=int(mask.sum()), months=seen,
            rmse=_interval(rmse) if enough else None, mae=_interval(mae) if enough else None,
            delta_rmse=delta if enough else None)
    return out


def grouped_means(groups: np.ndarray, values: np.ndarray, month: np.ndarray,
                  resamples: int = RESAMPLES, seed: int = SEED
                  ) -> List[Tuple[float, int, float, Optional[Interval]]]:
    """Per group (sorted): (group, examples, mean of values, its interval over months)."""
    keep = np.isfinite(values) & np.isfinite(groups)
    month_ids, month_index = np.unique(month[keep], return_inverse=True)
    weights = month_weights(len(month_ids), resamples, seed)
    out = []
    for group in np.unique(groups[keep]):
        mask = groups[keep] == group
        counts = per_month_sums(month_index[mask], len(month_ids), np.ones(int(mask.sum())))
        sums = per_month_sums(month_index[mask], len(month_ids), values[keep][mask])
        enough = int((counts > 0).sum()) >= MIN_MONTHS
        out.append((float(group), int(mask.sum()), float(values[keep][mask].mean()),
                    _interval(ratio_samples(weights, sums, counts)) if enough else None))
    return out


def significance(change: Optional[float], interval: Optional[Interval]) -> str:
    """'better' / 'worse' only when the interval excludes no change, else 'noise'."""
    if change is None or (isinstance(change, float) and math.isnan(change)):
        return ""
    if interval is None or interval.contains(0.0):
        return "noise"
    return "worse" if change > 0 else "better"


def deciles(predicted: np.ndarray, actual: np.ndarray, bins: int = 10
            ) -> List[Tuple[float, float, int]]:
    """(mean predicted, mean actual, examples) per decile of the prediction."""
    keep = np.isfinite(predicted) & np.isfinite(actual)
    order = np.argsort(predicted[keep], kind="stable")
    out = []
    for part in np.array_split(order, bins):
        if part.size:
            out.append((float(predicted[keep][part].mean()), float(actual[keep][part].mean()),
                        int(part.size)))
    return out


def describe(intervals: Sequence[SliceUncertainty]) -> str:
    months = max((u.months for u in intervals), default=0)
    return (f"{int(LEVEL * 100)}% intervals from {RESAMPLES:,} bootstrap resamples of the eval "
            f"split's {months} months")
