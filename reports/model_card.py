"""A model card for every pushed version, in the Model Card Toolkit's schema (v0.0.2 fields).

Why not the toolkit itself: model-card-toolkit 2.0.0 requires TFMA < 0.42, which cannot sit
beside this project's TFMA 0.47, so the card is written here with the toolkit's JSON field names
(model_details, model_parameters, quantitative_analysis, considerations), readable by anything
that reads its cards. The JSON travels with the served model, in the pushed version's
`assets.extra/` (TF Serving ignores that folder); the HTML is written beside the run report.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Dict, List, Optional

from common.files import write_atomically
from modules import features
from reports import eval_views
from reports.facts import TUNER_NODE, RunFacts

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "0.0.2"
CARD_JSON = os.path.join("assets.extra", "model_card.json")
CARD_HTML = "model_card.html"
FEW_EXAMPLES = 100  # slices with fewer eval examples are named as a known limit


def _metric(name: str, value: Optional[float], slice_name: str, interval: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"type": name, "value": "" if value is None else f"{value:.4f}",
                             "slice": slice_name}
    if interval is not None:
        entry["confidence_interval"] = {"lower_bound": f"{interval.low:.4f}",
                                        "upper_bound": f"{interval.high:.4f}"}
    return entry


def _metrics(facts: RunFacts, analysis: Optional[eval_views.EvalAnalysis]) -> List[Dict]:
    intervals = analysis.intervals if analysis else {}
    out = []
    for metric in facts.metrics or []:
        known = intervals.get(metric.slice_name)
        out.append(_metric("RMSE (lb)", metric.rmse, metric.slice_name,
                           known.rmse if known else None))
        out.append(_metric("MAE (lb)", metric.mae, metric.slice_name,
                           known.mae if known else None))
    return out


def _limitations(facts: RunFacts) -> List[Dict[str, str]]:
    limits = [{"description": "Trained on the warehouse the run read (synthetic by default, "
                              "calibrated to the US natality table): not validated on other "
                              "populations or years."}]
    for metric in facts.metrics or []:
        if "=" in metric.slice_name and metric.example_count < FEW_EXAMPLES:
            limits.append({"description": f"Few eval births for {metric.slice_name} "
                                          f"({int(metric.example_count)}): its error is "
                                          "poorly known."})
    return limits


# What each split is for (pipelines/pipeline.py: the model is chosen on test, gated on eval).
_SPLIT_ROLES = {"train": "fitted on", "test": "chosen on (early stopping)",
                "eval": "gated and measured on (above)"}
_TUNED_TEST_ROLE = "chosen on (early stopping, the Tuner)"


def _split_description(split: str, count: int, hyperparameters: Dict[str, Any],
                       data_range: str, has_test: bool = True, tuned: bool = False) -> str:
    """A split's examples, what the model did with them, and what ExampleGen read them from.

    The Tuner is named only for a run that had one (tuning is off by default). The
    fingerprint names the table's spans ExampleGen read, not the months the examples hold
    (the query keeps only its own rows of them, and each split takes its own months), so it
    is said as what it is."""
    text = f"{count:,} examples"
    role = _TUNED_TEST_ROLE if split == "test" and tuned else _SPLIT_ROLES.get(split)
    if split == "eval" and not has_test:
        role = "chosen on and gated on (there is no test split)"
    if role:
        text += f", the model {role}"
    cap = int(hyperparameters.get("num_train_examples") or 0)
    if split == "train" and 0 < cap < count:
        text += f" (its first {cap:,} examples only: --num-train-examples)"
    if data_range:
        text += (f"; ExampleGen read the table's {data_range}, of which the training query "
                 "keeps its own rows")
    return text


def build(facts: RunFacts, analysis: Optional[eval_views.EvalAnalysis]) -> Dict[str, Any]:
    """The card's fields for the version `facts` pushed."""
    record = facts.record
    trainer = record.component("Trainer")
    examples = record.input("StatisticsGen", "examples")
    data_range = (examples.properties.get("input_fingerprint") if examples else None) or ""
    version = str(facts.push.get("version", ""))
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": record.pipeline_name,
            "overview": ("Predicts a baby's birth weight in pounds from the mother's age, the "
                         "weeks of gestation, the baby's sex and plurality: a wide-and-deep "
                         "Keras regressor trained by TFX."),
            "version": {"name": version, "date": facts.record.finished.isoformat()},
            "path": facts.push.get("destination") or "",
            "references": [{"reference": facts.model_uri or ""}],
            "documentation": (f"Trained by pipeline run {record.run_id}; training code "
                              f"fingerprint {trainer.parameters.get('source_fingerprint', '–') if trainer else '–'}."),
        },
        "model_parameters": {
            "model_architecture": "wide-and-deep regressor (modules/model.py)",
            "input_format": ", ".join(f"{f.name}: {f.description}" for f in features.FEATURES),
            "output_format": f"{features.LABEL_KEY}: birth weight in pounds",
            "data": [{"name": f"{split} split", "description": _split_description(
                          split, count, facts.effective_hyperparameters, data_range,
                          "test" in facts.split_sizes, record.component(TUNER_NODE) is not None)}
                     for split, count in facts.split_sizes.items()],
        },
        "quantitative_analysis": {"performance_metrics": _metrics(facts, analysis)},
        "considerations": {
            "use_cases": [{"description": "Expected birth weight for planning, from the four "
                                          "features known before birth."}],
            "limitations": _limitations(facts),
            "tradeoffs": [{"description": check.where + ": " + check.rule + (
                "" if check.value is None else f" (value {check.value:.4f})")}
                for check in facts.checks],
            "ethical_considerations": [{
                "name": "Not a clinical tool",
                "mitigation_strategy": "A mean estimate with an error of about a pound: never "
                                       "a basis for a medical decision on its own."}],
        },
        "babyweight": {  # what the schema has no field for
            "run_id": record.run_id,
            "training_code_fingerprint": (trainer.parameters.get("source_fingerprint")
                                          if trainer else None),
            "data_range": data_range,
            "baseline_model": facts.baseline_model_uri,
            "hyperparameters": facts.effective_hyperparameters,
            "interval_method": analysis.method if analysis else None,
        },
    }


def publish(facts: RunFacts, reports_dir: pathlib.Path) -> Optional[pathlib.Path]:
    """For a run that pushed a version: the card's JSON into that version and its HTML beside
    the run report. Returns the HTML path (None when the run pushed nothing)."""
    destination = facts.push.get("destination")
    if not facts.push.get("pushed") or not destination or not facts.metrics:
        return None
    try:
        return _write(facts, pathlib.Path(destination), pathlib.Path(reports_dir))
    except Exception as error:  # noqa: BLE001 - the card must not cost the run its report
        logger.warning("No model card: %s", error)
        facts.notes.append(f"No model card: {type(error).__name__}: {error}")
        return None


def _write(facts: RunFacts, destination: pathlib.Path, reports_dir: pathlib.Path
           ) -> pathlib.Path:
    return write(facts, [destination], reports_dir)


def write(facts: RunFacts, destinations: List[pathlib.Path], reports_dir: pathlib.Path
          ) -> pathlib.Path:
    """The card's JSON and HTML into each pushed version directory, the HTML beside the run
    report; returns the report's HTML path. Errors propagate (publish turns them into a note)."""
    from reports import pages

    card = build(facts, eval_views.analyse(facts))
    json_paths = [destination / CARD_JSON for destination in destinations]
    html = pages.environment().get_template("model_card.html.j2").render(
        title=f"{card['model_details']['name']} version {card['model_details']['version']['name']}"
              ": model card", card=card, json_path=str(json_paths[0]))
    for destination, json_path in zip(destinations, json_paths):
        if destination.is_dir():  # a version deleted since is not recreated by its card
            write_atomically(json_path, json.dumps(card, indent=1, sort_keys=True))
            # The page travels with the model too: it is one offline file.
            write_atomically(json_path.with_suffix(".html"), html)
    html_path = reports_dir / CARD_HTML
    write_atomically(html_path, html)
    logger.info("Model card written to %s and %s", ", ".join(map(str, json_paths)), html_path)
    return html_path
