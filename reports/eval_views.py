"""What the model section adds from the eval predictions: intervals, calibration, residuals.

Everything here is optional: when the examples or a model are gone, the page says why and shows
TFMA's numbers without intervals, never a broken report.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Dict, List, Optional

import markupsafe
import numpy as np

from reports import model_charts, predictions, uncertainty

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalAnalysis:
    """The eval predictions' views of one run's model."""

    examples: int
    months: int
    intervals: Dict[str, uncertainty.SliceUncertainty]
    calibration_svg: str
    calibration_rows: List[Dict[str, str]]
    residual_svg: str
    rmse_from_predictions: float  # checks the predictions against TFMA's overall RMSE

    @property
    def method(self) -> str:
        return uncertainty.describe(list(self.intervals.values()))


@functools.lru_cache(maxsize=4)
def _analyse(examples_uri: str, model_uri: str, baseline_uri: Optional[str]) -> EvalAnalysis:
    found = predictions.compute(examples_uri, model_uri, baseline_uri)
    intervals = uncertainty.slice_intervals(found)
    deciles = uncertainty.deciles(found.candidate, found.label)
    residual = found.label - found.candidate
    weeks = uncertainty.grouped_means(found.gestation_weeks, residual, found.month)
    keep = np.isfinite(found.label) & np.isfinite(found.candidate)
    return EvalAnalysis(
        examples=len(found), months=len(np.unique(found.month)), intervals=intervals,
        calibration_svg=model_charts.calibration(deciles, "model-calibration"),
        calibration_rows=[{"decile": str(i + 1), "predicted": f"{p:.3f}", "actual": f"{a:.3f}",
                           "examples": f"{n:,}"} for i, (p, a, n) in enumerate(deciles)],
        residual_svg=model_charts.residuals_by_week(weeks, "model-residuals"),
        rmse_from_predictions=float(np.sqrt(np.mean(
            (found.candidate[keep] - found.label[keep]) ** 2))))


def analyse(facts: Any) -> Optional[EvalAnalysis]:
    """The run's eval analysis, or None with a note on the page saying why there is none."""
    if not facts.examples_uri or not facts.model_uri:
        return None
    baseline = facts.baseline_model_uri
    if baseline == facts.model_uri:
        baseline = None  # judged against itself (a cached Trainer): no change to bound
    try:
        return _analyse(facts.examples_uri, facts.model_uri, baseline or None)
    except Exception as error:  # noqa: BLE001 - a report must not fail on a missing artifact
        logger.warning("No eval predictions: %s", error)
        facts.notes.append("No intervals, calibration or residuals: the eval predictions could "
                           f"not be computed ({type(error).__name__}: {error}).")
        return None


def markup(svg: str) -> markupsafe.Markup:
    return markupsafe.Markup(svg)
