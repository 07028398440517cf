"""The monitoring page: per feature, training and served distributions on shared bins, and each
distance beside its threshold in words; the same base template as the run reports."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Dict, List, Optional, Sequence

import jinja2
import numpy as np

from modules import features
from monitoring import bins
from monitoring.compare import Finding, Stats, feature_stats
from monitoring.verdict import Verdict
from reports import charts
from reports import pages as report_pages

TEMPLATES = pathlib.Path(__file__).resolve().parent / "templates"
TRAINING, SERVING = "training", "served"
COLOURS = {TRAINING: charts.BASELINE, SERVING: charts.CANDIDATE}


@dataclasses.dataclass(frozen=True)
class PageInputs:
    title: str
    window: str
    previous: str
    version: int
    rows: str  # the window's logged rows, each version's when there are several
    training_statistics: str
    training: Stats
    serving: Stats
    eval_predictions: Stats
    served_predictions: Stats
    findings: Sequence[Finding]
    traffic_anomalies: Dict[str, str]
    verdict: Verdict  # the one the exit code and the index give
    incomplete: Optional[str]  # why records are known to be missing from the window, if they are
    command: str


def _environment() -> jinja2.Environment:
    """The run reports' environment (its base template, script and policy), plus ours."""
    environment = report_pages.environment()
    environment.loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(TEMPLATES)),
                                              environment.loader])
    return environment


def _bars(name: str, labels: Sequence[str], shares: Dict[str, np.ndarray], id_prefix: str,
          xlabel: str) -> str:
    from matplotlib.figure import Figure

    from reports.charts import svg_of_figure

    figure = Figure(figsize=(5.6, 3.0))
    axes = figure.add_subplot()
    width = 0.4
    for index, (label, values) in enumerate(shares.items()):
        offset = (index - 0.5) * width
        axes.bar([i + offset for i in range(len(labels))], 100 * values, width=width,
                 label=label, color=COLOURS.get(label))
    crowded = len(labels) > 6
    step = max(1, len(labels) // 10)
    ticks = list(range(0, len(labels), step))
    axes.set_xticks(ticks, [labels[i] for i in ticks], rotation=30 if crowded else 0,
                    ha="right" if crowded else "center", fontsize=8)
    axes.set_ylabel("% of rows")
    axes.set_xlabel(xlabel)
    axes.legend(frameon=False, fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return svg_of_figure(figure, f"{name}: training and served shares on shared bins", id_prefix)


def _numeric_chart(name: str, reference: Stats, served: Stats, names=(TRAINING, SERVING)) -> str:
    histograms = [bins.numeric_buckets(feature_stats(s, name)) for s in (reference, served)]
    edges = bins.shared_edges(*histograms)
    labels = [f"{low:.4g}–{high:.4g}" for low, high in zip(edges[:-1], edges[1:])]
    shares = {label: bins.rebin(h, edges) for label, h in zip(names, histograms)}
    return _bars(name, labels, shares, f"mon-{name}", name)


def _category_chart(name: str, reference: Stats, served: Stats) -> str:
    declared = features.by_name(name)
    order = getattr(declared, "vocabulary", ())
    values, shares = bins.category_shares(
        *(bins.category_counts(feature_stats(s, name)) for s in (reference, served)), order=order)
    return _bars(name, values, dict(zip((TRAINING, SERVING), shares)), f"mon-{name}", name)


def _lines(findings: Sequence[Finding], name: str) -> List[Dict[str, Any]]:
    return [{"text": f.sentence(), "crossed": f.crossed} for f in findings if f.feature == name]


def copies_note(declared: Any) -> str:
    """What a skew of a feature the "no ultrasound" copies rewrite may mean, in words."""
    missing = getattr(declared, "missing_value", None)
    if not missing:
        return ""
    return (f"The training statistics hold the query's \"no ultrasound\" copies of each birth, "
            f"in which {declared.name} may read '{missing}': traffic with another share of "
            f"'{missing}' (a batch scored without the copies, say) shows skew here that is the "
            "training data's mix, not a change in who is born.")


def render(inputs: PageInputs, page: pathlib.Path, index: pathlib.Path) -> str:
    sections = []
    for declared in features.FEATURES:
        numeric = isinstance(declared, features.NumericFeature)
        chart = (_numeric_chart if numeric else _category_chart)(
            declared.name, inputs.training, inputs.serving)
        sections.append({
            "name": declared.name, "chart": chart, "findings": _lines(inputs.findings,
                                                                      declared.name),
            "caption": ("share of rows per bin, both histograms spread onto the same 20 bins"
                        if numeric else "share of rows per value"),
            "note": copies_note(declared)})
    from serving import request_log

    predictions = {
        "chart": _numeric_chart(request_log.PREDICTION_KEY, inputs.eval_predictions,
                                inputs.served_predictions, names=(TRAINING, SERVING)),
        "caption": "grey: the model's predictions on its eval split; blue: served predictions",
        "findings": _lines(inputs.findings, request_log.PREDICTION_KEY)}
    return _environment().get_template("monitoring.html.j2").render(
        title=inputs.title, window=inputs.window, previous=inputs.previous,
        version=inputs.version, rows=inputs.rows, generated=report_pages._now(),
        index_href=report_pages.href(index, page), verdict=inputs.verdict,
        incomplete=inputs.incomplete,
        findings_count=len(inputs.findings), training_statistics=inputs.training_statistics,
        features=sections,
        predictions=predictions, command=inputs.command)
