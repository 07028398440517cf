"""The model section: overall and per-slice RMSE/MAE of the candidate beside the baseline, the
blessing decision and the thresholds that made it."""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import markupsafe

from modules import features
from reports import charts, eval_views, uncertainty
from reports.facts import RunFacts


def split_slice(slice_name: str) -> Tuple[str, str]:
    """'plurality=Twins(2)' -> ('plurality', 'Twins(2)'); the overall slice -> ('Overall', '')."""
    if "=" not in slice_name:
        return slice_name, ""
    feature, value = slice_name.split("=", 1)
    return feature, value


def value_order(feature: str, label: str) -> Tuple[float, str]:
    """Slices in their natural order: vocabulary order, or bucket ranges by their lower edge."""
    try:
        declared = features.by_name(feature)
    except KeyError:
        return (0.0, label)
    if isinstance(declared, features.CategoricalFeature):
        vocabulary = list(declared.vocabulary)
        return (float(vocabulary.index(label)) if label in vocabulary else 1e9, label)
    if label.startswith("<"):
        return (-math.inf, label)
    number = re.match(r"-?\d+(\.\d+)?", label)
    return (float(number.group()) if number else math.inf, label)


def feature_order(feature: str) -> int:
    names = list(features.FEATURE_NAMES)
    return names.index(feature) if feature in names else len(names)


def number_cell(value: Optional[float], digits: int = 4) -> Dict[str, str]:
    """A table cell: text to read, exact value to sort and test on."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"text": "–", "value": ""}
    return {"text": f"{value:.{digits}f}", "value": repr(float(value))}


def count_cell(value: Optional[float]) -> Dict[str, str]:
    if value is None:
        return {"text": "–", "value": ""}
    return {"text": f"{int(value):,}", "value": repr(float(value))}


def delta_cell(candidate: Optional[float], baseline: Optional[float],
               interval: Optional[uncertainty.Interval] = None) -> Dict[str, str]:
    """A change: coloured better or worse only when its interval excludes no change.

    Without an interval (none computed, or too few months) a change is shown as noise: a
    colour would claim more than the data says.
    """
    if candidate is None or baseline is None or math.isnan(candidate):
        return {"text": "–", "value": "", "sign": "", "title": ""}
    change = candidate - baseline
    sign = uncertainty.significance(change, interval) if abs(change) > 1e-9 else ""
    title = (f"95% interval {interval.low:+.4f} to {interval.high:+.4f}" if interval
             else "no interval")
    if sign == "noise":
        title += ": within the noise"
    return {"text": f"{change:+.4f}", "value": repr(change), "sign": sign, "title": title}


def interval_cell(interval: Optional[uncertainty.Interval], signed: bool = False
                  ) -> Dict[str, str]:
    if interval is None:
        return {"text": "–", "low": "", "high": ""}
    form = "{:+.3f}" if signed else "{:.3f}"
    return {"text": f"{form.format(interval.low)} to {form.format(interval.high)}",
            "low": repr(interval.low), "high": repr(interval.high)}


def slice_rows(metrics: Sequence[Any],
               intervals: Optional[Dict[str, uncertainty.SliceUncertainty]] = None
               ) -> List[Dict[str, Any]]:
    """One row per slice (overall first), ordered by feature, then naturally by value."""
    rows = []
    for metric in metrics:
        feature, value = split_slice(metric.slice_name)
        known = (intervals or {}).get(metric.slice_name)
        rows.append({
            "rmse_ci": interval_cell(known.rmse if known else None),
            "delta_ci": interval_cell(known.delta_rmse if known else None, signed=True),
            "months": str(known.months) if known else "–",
            "slice": metric.slice_name,
            "feature": feature,
            "value": value,
            "overall": not value,
            "count": count_cell(metric.example_count),
            "rmse": number_cell(metric.rmse),
            "baseline_rmse": number_cell(metric.baseline_rmse),
            "delta_rmse": delta_cell(metric.rmse, metric.baseline_rmse,
                                     known.delta_rmse if known else None),
            "mae": number_cell(metric.mae),
            "baseline_mae": number_cell(metric.baseline_mae),
        })
    rows.sort(key=lambda r: (not r["overall"], feature_order(r["feature"]),
                             value_order(r["feature"], r["value"])))
    return rows


def slice_charts(metrics: Sequence[Any], bound: Optional[float], prefix: str = "model",
                 names: Tuple[str, str] = ("candidate", "baseline"),
                 intervals: Optional[Dict[str, uncertainty.SliceUncertainty]] = None
                 ) -> List[Dict[str, Any]]:
    """One chart per slice feature, each bar with its interval when known."""
    def span(name: str) -> Optional[Tuple[float, float]]:
        known = (intervals or {}).get(name)
        return (known.rmse.low, known.rmse.high) if known and known.rmse else None

    rows = [r for r in slice_rows(metrics) if not r["overall"]]
    by_feature: Dict[str, List[Any]] = {}
    lookup = {m.slice_name: m for m in metrics}
    for row in rows:
        by_feature.setdefault(row["feature"], []).append(lookup[row["slice"]])
    overall = next((m for m in metrics if not split_slice(m.slice_name)[1]), None)
    out = []
    for feature, group in by_feature.items():
        svg = charts.slice_rmse(
            feature, [split_slice(m.slice_name)[1] for m in group], [m.rmse for m in group],
            [m.baseline_rmse for m in group], [m.example_count for m in group],
            overall.rmse if overall else None, bound, f"{prefix}-{feature}", names=names,
            intervals=[span(m.slice_name) for m in group])
        out.append({"feature": feature, "svg": markupsafe.Markup(svg)})
    return out


def overall_bound(facts: RunFacts) -> Optional[float]:
    for check in facts.checks:
        match = re.fullmatch(r"RMSE at most ([0-9.eE+-]+) lb", check.rule)
        if check.where == "overall" and match:
            return float(match.group(1))
    return None


def context(facts: RunFacts) -> Dict[str, Any]:
    """What the template shows in the model section."""
    if facts.metrics is None:
        trainer = facts.record.component("Trainer")
        return {"available": False, "blessed": facts.blessed, "checks": [],
                "has_baseline": False,
                "why": ("The run stopped before the model was trained." if trainer is None
                        else "The run stopped before the model was evaluated.")}
    overall = facts.overall
    analysis = eval_views.analyse(facts)
    intervals = analysis.intervals if analysis else None
    known = (intervals or {}).get(overall.slice_name) if overall else None
    has_baseline = any(m.baseline_rmse is not None for m in facts.metrics)
    checks = [{"where": c.where, "rule": c.rule,
               "value": "–" if c.value is None else (
                   f"{c.value:+.4f}" if "above the last" in c.rule else
                   f"{c.value:g}" if "possible weights" in c.rule else f"{c.value:.4f}"),
               "passed": c.passed} for c in facts.checks]
    return {
        "available": True,
        "overall": {
            "rmse": number_cell(overall.rmse if overall else None),
            "mae": number_cell(overall.mae if overall else None),
            "baseline_rmse": number_cell(overall.baseline_rmse if overall else None),
            "baseline_mae": number_cell(overall.baseline_mae if overall else None),
            "delta_rmse": delta_cell(overall.rmse if overall else None,
                                     overall.baseline_rmse if overall else None,
                                     known.delta_rmse if known else None),
            "rmse_ci": interval_cell(known.rmse if known else None),
            "mae_ci": interval_cell(known.mae if known else None),
            "delta_ci": interval_cell(known.delta_rmse if known else None, signed=True),
            "delta_mae": delta_cell(overall.mae if overall else None,
                                overall.baseline_mae if overall else None),
            "count": count_cell(overall.example_count if overall else None),
        },
        "has_baseline": has_baseline,
        "baseline_uri": facts.baseline_model_uri,
        "rows": slice_rows(facts.metrics, intervals),
        "charts": slice_charts(facts.metrics, overall_bound(facts), intervals=intervals),
        "analysis": None if analysis is None else {
            "method": analysis.method, "examples": f"{analysis.examples:,}",
            "months": analysis.months,
            "calibration": eval_views.markup(analysis.calibration_svg),
            "calibration_rows": analysis.calibration_rows,
            "residuals": eval_views.markup(analysis.residual_svg)},
        "blessed": facts.blessed,
        "validation_ok": facts.validation_ok,
        "validation_lines": facts.validation_lines,
        "checks": checks,
    }
