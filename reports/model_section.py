"""The model section: overall and per-slice RMSE/MAE of the candidate beside the baseline, the
blessing decision and the thresholds that made it."""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import markupsafe

from modules import features
from reports import charts
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


def delta_cell(candidate: Optional[float], baseline: Optional[float]) -> Dict[str, str]:
    if candidate is None or baseline is None or math.isnan(candidate):
        return {"text": "–", "value": "", "sign": ""}
    change = candidate - baseline
    return {"text": f"{change:+.4f}", "value": repr(change),
            "sign": "worse" if change > 1e-9 else ("better" if change < -1e-9 else "")}


def slice_rows(metrics: Sequence[Any]) -> List[Dict[str, Any]]:
    """One row per slice (overall first), ordered by feature, then naturally by value."""
    rows = []
    for metric in metrics:
        feature, value = split_slice(metric.slice_name)
        rows.append({
            "slice": metric.slice_name,
            "feature": feature,
            "value": value,
            "overall": not value,
            "count": count_cell(metric.example_count),
            "rmse": number_cell(metric.rmse),
            "baseline_rmse": number_cell(metric.baseline_rmse),
            "delta_rmse": delta_cell(metric.rmse, metric.baseline_rmse),
            "mae": number_cell(metric.mae),
            "baseline_mae": number_cell(metric.baseline_mae),
        })
    rows.sort(key=lambda r: (not r["overall"], feature_order(r["feature"]),
                             value_order(r["feature"], r["value"])))
    return rows


def slice_charts(metrics: Sequence[Any], bound: Optional[float], prefix: str = "model",
                 names: Tuple[str, str] = ("candidate", "baseline")) -> List[Dict[str, Any]]:
    """One chart per slice feature."""
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
            overall.rmse if overall else None, bound, f"{prefix}-{feature}", names=names)
        out.append({"feature": feature, "svg": markupsafe.Markup(svg)})
    return out


def overall_bound(facts: RunFacts) -> Optional[float]:
    for check in facts.checks:
        match = re.match(r"RMSE below ([0-9.eE+-]+) lb", check.rule)
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
                                 overall.baseline_rmse if overall else None),
            "delta_mae": delta_cell(overall.mae if overall else None,
                                overall.baseline_mae if overall else None),
            "count": count_cell(overall.example_count if overall else None),
        },
        "has_baseline": has_baseline,
        "baseline_uri": facts.baseline_model_uri,
        "rows": slice_rows(facts.metrics),
        "charts": slice_charts(facts.metrics, overall_bound(facts)),
        "blessed": facts.blessed,
        "validation_ok": facts.validation_ok,
        "validation_lines": facts.validation_lines,
        "checks": checks,
    }
