"""A run's facts, read from its artifacts: data sizes, anomalies, metrics, blessing, push, timing.

Every reader tolerates a run that stopped early or an artifact that was deleted: what cannot be
read becomes a note on the page instead of an error, because the report of a broken run is the
one an analyst needs most.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
from typing import Any, Dict, List, Optional, Tuple

from reports.mlmd import ArtifactRef, RunRecord

logger = logging.getLogger(__name__)

STATISTICS_NODE = "StatisticsGen"
VALIDATOR_NODE = "ExampleValidator"
GATE_NODE = "AnomalyGate"
SCHEMA_NODE = "ImportSchemaGen"
EDA_NODE = "EdaReport"
TUNER_NODE = "Tuner"
TRAINER_NODE = "Trainer"
EVALUATOR_NODE = "Evaluator"
PUSHER_NODE = "ServingPusher"
ABANDONED_PROPERTY = "babyweight_abandoned"  # pipelines.dead_runs sets it on a dead run's steps
STATISTICS_FILE = "FeatureStats.pb"
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.txt"  # what TFX's Tuner writes
EVAL_CONFIG_FILE = "eval_config.json"  # what TFMA writes beside the metrics


@dataclasses.dataclass(frozen=True)
class ThresholdCheck:
    """One threshold of the blessing decision, with the value it was held against."""

    where: str
    rule: str
    value: Optional[float]
    passed: Optional[bool]  # None: not applied (e.g. no baseline to compare with)


@dataclasses.dataclass
class RunFacts:
    """Everything a report says about one run; None where the run never got that far."""

    record: RunRecord
    status: str
    succeeded: bool
    split_sizes: Dict[str, int] = dataclasses.field(default_factory=dict)
    statistics: Dict[str, Any] = dataclasses.field(default_factory=dict)  # split -> proto
    schema: Any = None
    anomalies: Optional[List[str]] = None
    metrics: Optional[List[Any]] = None  # reports.evaluation_results.SliceMetrics
    validation_ok: Optional[bool] = None
    validation_lines: List[str] = dataclasses.field(default_factory=list)
    checks: List[ThresholdCheck] = dataclasses.field(default_factory=list)
    blessed: Optional[bool] = None
    baseline_model_uri: Optional[str] = None
    hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
    tuned_hyperparameters: Optional[Dict[str, Any]] = None
    push: Dict[str, Any] = dataclasses.field(default_factory=dict)
    model_run_uri: Optional[str] = None
    model_uri: Optional[str] = None
    examples_uri: Optional[str] = None  # ExampleGen's output: every split's TFRecords
    warehouse: Optional[Tuple[str, Optional[str]]] = None  # (database, source)
    report_files: Dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    notes: List[str] = dataclasses.field(default_factory=list)
    unread: List[str] = dataclasses.field(default_factory=list)  # what `_attempt` could not read

    @property
    def overall(self) -> Any:
        from modules import contract

        return next((m for m in self.metrics or [] if m.slice_name == contract.OVERALL_SLICE),
                    None)

    @property
    def effective_hyperparameters(self) -> Dict[str, Any]:
        """What the Trainer trained with: the configured values, overridden by the Tuner's."""
        values = dict(self.hyperparameters)
        for key, value in (self.tuned_hyperparameters or {}).items():
            if key in values:
                values[key] = value
        return values


def _status(record: RunRecord) -> Tuple[str, bool]:
    failed = record.failed
    if any(c.node_id == GATE_NODE for c in failed):
        return "stopped by the anomaly gate: the data does not match the schema", False
    if failed:
        return f"failed at {', '.join(c.node_id for c in failed)}", False
    unfinished = [c for c in record.components if c.state not in ("COMPLETE", "CACHED")]
    if unfinished:
        return (f"incomplete ({', '.join(f'{c.node_id} {c.state.lower()}' for c in unfinished)})",
                False)
    if record.component(PUSHER_NODE) is None:
        return "incomplete (no push decision recorded)", False
    return "succeeded", True


def read_statistics(artifact: ArtifactRef) -> Dict[str, Any]:
    """Split name -> DatasetFeatureStatistics of a StatisticsGen artifact."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    import tensorflow as tf

    result = {}
    for split in artifact.split_names():
        path = os.path.join(artifact.uri, f"Split-{split}", STATISTICS_FILE)
        if not tf.io.gfile.exists(path):
            continue
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        if stats.datasets:
            result[split] = stats.datasets[0]
    return result


def read_schema(artifact: ArtifactRef) -> Any:
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(os.path.join(artifact.uri, "schema.pbtxt"))


def _number(value: Any) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def read_thresholds(evaluation_uri: str) -> List[Tuple[str, str, Any]]:
    """The thresholds of the config TFMA saved beside the evaluation (the one that judged)."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    path = pathlib.Path(evaluation_uri) / EVAL_CONFIG_FILE
    config = json_format.ParseDict(json.loads(path.read_text())["evalConfig"], tfma.EvalConfig(),
                                   ignore_unknown_fields=True)
    return thresholds_of(config)


def thresholds_of(config: Any) -> List[Tuple[str, str, Any]]:
    """(metric, slice spec, MetricThreshold) of every threshold in a tfma.EvalConfig."""
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold"):
                found.append((metric.class_name, "every slice", metric.threshold))
            for per_slice in metric.per_slice_thresholds:
                for slicing in per_slice.slicing_specs:
                    keys = list(slicing.feature_keys)
                    where = ", ".join(keys) if keys else "overall"
                    found.append((metric.class_name, where, per_slice.threshold))
    return found


def _label_range_check(overall: Any, threshold: Any) -> ThresholdCheck:
    """Eval predictions outside the possible weights, against their (zero) allowance."""
    from modules import features

    allowed = threshold.value_threshold.upper_bound.value
    value = _number(overall.outside_label_range) if overall else None
    label = features.LABEL_RANGE
    return ThresholdCheck(
        "overall", f"at most {allowed:g} predictions outside the possible weights "
        f"({label.min_pounds:.2f}-{label.max_pounds:.2f} lb)", value,
        None if value is None else value <= allowed)


def threshold_checks(thresholds: List[Tuple[str, str, Any]], metrics: List[Any]
                     ) -> List[ThresholdCheck]:
    """Each RMSE threshold against the value it judged (the worst slice for a slice spec)."""
    from modules import contract
    from reports.evaluation_results import OVERALL, raw_feature_name

    checks = []
    overall = next((m for m in metrics if m.slice_name == OVERALL), None)
    for metric, where, threshold in thresholds:
        if metric == contract.OUTSIDE_LABEL_RANGE_CLASS and where == "overall":
            checks.append(_label_range_check(overall, threshold))
            continue
        if metric not in contract.RMSE_CLASSES:
            continue
        if where == "overall":
            targets = [overall] if overall else []
            label = "overall"
        else:
            raw = [raw_feature_name(k) for k in where.split(", ")]
            targets = [m for m in metrics if m.slice_name.startswith(tuple(f"{r}=" for r in raw))]
            label = f"worst slice of {', '.join(raw)}"
        valued = [t for t in targets if _number(t.rmse) is not None]
        if threshold.HasField("value_threshold"):
            bound = threshold.value_threshold
            if bound.HasField("upper_bound"):
                worst = max(valued, key=lambda m: m.rmse, default=None)
                value = worst.rmse if worst else None
                where_text = label if where == "overall" or worst is None else \
                    f"{label} ({worst.slice_name})"
                checks.append(ThresholdCheck(
                    where_text, f"RMSE at most {bound.upper_bound.value:g} lb", value,
                    None if value is None else value <= bound.upper_bound.value))
            if bound.HasField("lower_bound"):
                worst = min(valued, key=lambda m: m.rmse, default=None)
                value = worst.rmse if worst else None
                checks.append(ThresholdCheck(
                    label, f"RMSE at least {bound.lower_bound.value:g} lb", value,
                    None if value is None else value >= bound.lower_bound.value))
        if threshold.change_threshold.HasField("absolute") and where == "overall":
            checks.append(_change_check(overall, threshold.change_threshold))
    return checks


def _change_check(overall: Any, change_threshold: Any) -> ThresholdCheck:
    """The overall RMSE minus the baseline's, held as TFMA holds it (the bound included)."""
    import tensorflow_model_analysis as tfma

    allowed = change_threshold.absolute.value
    lower_is_better = change_threshold.direction == tfma.MetricDirection.LOWER_IS_BETTER
    rule = f"RMSE at {'most' if lower_is_better else 'least'} {allowed:g} lb above the last " \
           "blessed model's"
    base = overall.baseline_rmse if overall else None
    if base is None:
        return ThresholdCheck("overall", rule, None, None)
    change = overall.rmse - base
    return ThresholdCheck("overall", f"{rule} ({base:.4f})", change,
                          change <= allowed if lower_is_better else change >= allowed)


def _read_json(path: pathlib.Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _push_facts(record: RunRecord, facts: RunFacts) -> Dict[str, Any]:
    """The push decision: the pusher's JSON report, else its artifact, else why it never ran."""
    pusher = record.component(PUSHER_NODE)
    if pusher is None:
        stopped = record.failed[0].node_id if record.failed else None
        why = (f"the run stopped at {stopped} before the pusher ran" if stopped
               else "the pusher never ran")
        return {"pushed": False, "message": f"Nothing pushed: {why}.", "reasons": []}
    report_path = pusher.parameters.get("report_path")
    decision = _read_json(pathlib.Path(report_path)) if report_path else None
    pushed = record.output(PUSHER_NODE, "pushed_model")
    if decision is None:
        decision = {"reasons": []}
        if pushed is not None:
            decision["pushed"] = bool(pushed.properties.get("pushed"))
            decision["version"] = pushed.properties.get("pushed_version")
            decision["message"] = ("Pushed as version {version}" if decision["pushed"] else
                                   "Not pushed").format(**decision)
        else:
            decision.update(pushed=False, message=f"The pusher ended {pusher.state.lower()}.")
        facts.notes.append("The pusher's push.json is missing; the decision comes from ML "
                           "Metadata.")
    if pushed is not None and pushed.properties.get("pushed_destination"):
        decision.setdefault("destination", pushed.properties["pushed_destination"])
    return decision


def _attempt(facts: RunFacts, what: str, function: Any, *args: Any) -> Any:
    """Runs one reader; a failure becomes a note on the page, never a missing report."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - any unreadable artifact must not stop the page
        logger.warning("Could not read %s: %s", what, error)
        facts.notes.append(f"Could not read {what}: {type(error).__name__}: {error}")
        facts.unread.append(what)
        return None


def _started(record: RunRecord) -> RunFacts:
    """The run's status, and why a component that failed did."""
    status, succeeded = _status(record)
    facts = RunFacts(record=record, status=status, succeeded=succeeded)
    if record.failed and not any(c.node_id == GATE_NODE for c in record.failed):
        died = record.failed[0].parameters.get(ABANDONED_PROPERTY)
        facts.notes.append(f"{record.failed[0].node_id} never finished: {died} (a later run "
                           "marked it failed)." if died else
                           f"ML Metadata records that {record.failed[0].node_id} failed, not "
                           "why: the error is in the runner's output.")
    return facts


def _decisions(record: RunRecord, facts: RunFacts) -> None:
    """The blessing and the push, as ML Metadata and the pusher's push.json record them."""
    blessing = record.output(EVALUATOR_NODE, "blessing")
    if blessing is not None:
        facts.blessed = bool(blessing.properties.get("blessed"))
        facts.baseline_model_uri = blessing.properties.get("baseline_model")
    facts.push = _push_facts(record, facts)


def recorded(record: RunRecord) -> RunFacts:
    """Status, blessing and push only: no artifact is opened, so no TensorFlow, TFDV or TFMA
    is imported (the index reads the rest from the run's summary, reports.summaries)."""
    facts = _started(record)
    _decisions(record, facts)
    return facts


def collect(record: RunRecord) -> RunFacts:
    """Reads every artifact of `record` that a report shows."""
    facts = _started(record)
    examples = record.input(STATISTICS_NODE, "examples")
    facts.examples_uri = examples.uri if examples is not None else None
    statistics = record.output(STATISTICS_NODE, "statistics")
    if statistics is not None:
        facts.statistics = _attempt(facts, "the statistics", read_statistics, statistics) or {}
        facts.split_sizes = {split: int(d.num_examples) for split, d in facts.statistics.items()}
    schema = record.output(SCHEMA_NODE, "schema")
    if schema is not None:
        facts.schema = _attempt(facts, "the schema", read_schema, schema)

    anomalies = record.output(VALIDATOR_NODE, "anomalies")
    if anomalies is not None:
        from reports import validation_results

        by_split = _attempt(facts, "the anomalies", validation_results.read_anomalies,
                            anomalies.uri, anomalies.split_names())
        if by_split is not None:
            facts.anomalies = validation_results.describe(by_split)

    eda = record.component(EDA_NODE)
    if eda is not None:
        facts.warehouse = (eda.parameters.get("database") or "",
                           eda.parameters.get("source") or None)
    for component in record.components:
        path = component.parameters.get("report_path")
        if path and pathlib.Path(path).exists():
            facts.report_files[pathlib.Path(path).name] = pathlib.Path(path)

    trainer = record.component(TRAINER_NODE)
    if trainer is not None:
        config = _attempt(facts, "the Trainer's custom_config", json.loads,
                          trainer.parameters.get("custom_config") or "{}") or {}
        facts.hyperparameters = dict(config.get("hyperparameters") or {})
        run = record.output(TRAINER_NODE, "model_run")
        model = record.output(TRAINER_NODE, "model")
        facts.model_run_uri = run.uri if run else None
        facts.model_uri = model.uri if model else None
    best = record.output(TUNER_NODE, "best_hyperparameters")
    if best is not None:
        config = _attempt(facts, "the Tuner's best hyperparameters", _read_best, best.uri)
        facts.tuned_hyperparameters = config

    evaluation = record.output(EVALUATOR_NODE, "evaluation")
    if evaluation is not None:
        from reports import evaluation_results as evaluation_lib

        facts.metrics = _attempt(facts, "the evaluation metrics", evaluation_lib.read_metrics,
                                 evaluation.uri)
        validation = _attempt(facts, "the validation result",
                              evaluation_lib.describe_validation, evaluation.uri)
        if validation is not None:
            facts.validation_ok, facts.validation_lines = validation
        thresholds = _attempt(facts, "the evaluation config", read_thresholds, evaluation.uri)
        if thresholds is not None and facts.metrics is not None:
            facts.checks = threshold_checks(thresholds, facts.metrics)
    _decisions(record, facts)
    return facts


def _read_best(uri: str) -> Dict[str, Any]:
    path = pathlib.Path(uri) / BEST_HYPERPARAMETERS_FILE
    config = json.loads(path.read_text())
    return dict(config.get("values", config))
