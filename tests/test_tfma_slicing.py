"""Slicing whole batches gives exactly what TFMA's per-example slicing gives."""
from __future__ import annotations

import collections
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tfx_bsl.public import tfxio
from tfx_bsl.tfxio import tensor_adapter

from pipelines import evaluation, tfma_metrics
from pipelines.speedups import tfma_slicing
from pipelines.config import EvaluationConfig
from pipelines.schema import SCHEMA_FILE
from tests.tolerances import EPS64, rms_rel, sum_rel

# Both evaluations predict on batches of this many examples. A float32 prediction depends on
# its batch (a batch of one runs another kernel and can differ by an ulp), and TFMA's default
# batching adapts its sizes to how fast batches go by, so on a loaded machine the two sides would
# predict on different batches and compare different predictions.
EVAL_BATCH_SIZE = 256


SLICED = tfma.EvalConfig(model_specs=[tfma.ModelSpec()], slicing_specs=[
    tfma.SlicingSpec(),
    tfma.SlicingSpec(feature_keys=["sex"]),
    tfma.SlicingSpec(feature_keys=["age_bucket"]),
    tfma.SlicingSpec(feature_keys=["sex", "age_bucket"]),
    # Names the same slices as feature_keys=["sex"] does for sex=F: those rows count once.
    tfma.SlicingSpec(feature_values={"sex": "F"}),
    tfma.SlicingSpec(feature_keys=["not_a_feature"]),
])


def batch(rows: int, seed: int, multivalent: bool = False) -> Dict[str, Any]:
    """A batched extract shaped like TFMA's after prediction (raw and transformed features)."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array([b"F", b"M", b"U"], dtype=object), size=(rows, 1))
    extract: Dict[str, Any] = {
        constants.FEATURES_KEY: {"sex": sex, "age": rng.integers(15, 45, size=(rows, 1))},
        constants.TRANSFORMED_FEATURES_KEY: {"age_bucket": rng.integers(0, 4, size=rows)},
        constants.LABELS_KEY: rng.normal(7, 1, size=(rows, 1)).astype(np.float32),
        constants.PREDICTIONS_KEY: rng.normal(7, 1, size=rows).astype(np.float32),
        constants.INPUT_KEY: np.array([b"row%d" % i for i in range(rows)], dtype=object),
    }
    if multivalent:  # a slicing column with two values in a row: only TFMA's own path can say
        extract[constants.FEATURES_KEY]["sex"] = np.repeat(sex, 2, axis=1)
    return extract


def sums_by_slice(extracts: List[Dict[str, Any]]) -> Dict[Tuple, Tuple[int, float]]:
    """(example count, sum of labels) per slice key, whatever the extracts' batching."""
    out: Dict[Tuple, List[float]] = collections.defaultdict(lambda: [0, 0.0])
    for extract in extracts:
        labels = np.asarray(extract[constants.LABELS_KEY]).reshape(-1)
        for key in extract[constants.SLICE_KEY_TYPES_KEY]:
            out[key][0] += labels.size
            out[key][1] += float(labels.astype(np.float64).sum())
    return {key: (count, total) for key, (count, total) in out.items()}


def assert_same_sums(ours: Dict[Tuple, Tuple[int, float]],
                     theirs: Dict[Tuple, Tuple[int, float]]) -> None:
    """Counts exactly; the label sums (float64, positive labels, other groupings) to within
    the bound of two orders of the same slice's terms."""
    assert ours.keys() == theirs.keys()
    for key, (count, total) in theirs.items():
        assert ours[key][0] == count, key
        assert ours[key][1] == pytest.approx(total, rel=sum_rel(count, EPS64), abs=0), key


_COLLECTED: List[Dict[str, Any]] = []


def _collect(extract: Dict[str, Any]) -> None:
    _COLLECTED.append(extract)  # the in-process runner calls this module's own function


def sliced(batches: List[Dict[str, Any]], grouped: bool) -> List[Dict[str, Any]]:
    extractors = ([tfma_slicing.batch_slicing_extractor(SLICED)] if grouped else
                  [unbatch_extractor.UnbatchExtractor(),
                   slice_key_extractor.SliceKeyExtractor(eval_config=SLICED)])
    _COLLECTED.clear()
    with beam.Pipeline() as pipeline:
        pcoll = pipeline | beam.Create(batches, reshuffle=False)
        for extractor in extractors:
            pcoll = pcoll | extractor.stage_name >> extractor.ptransform
        _ = pcoll | beam.Map(_collect)
    return list(_COLLECTED)


@pytest.mark.parametrize("multivalent", [False, True], ids=["grouped", "falls back"])
def test_batch_slicing_matches_per_example_slicing(multivalent: bool) -> None:
    batches = [batch(300, seed=1), batch(57, seed=2, multivalent=multivalent), batch(1, seed=3)]
    theirs = sliced(batches, grouped=False)
    ours = sliced(batches, grouped=True)
    assert_same_sums(sums_by_slice(ours), sums_by_slice(theirs))
    assert (("sex", "F"),) in sums_by_slice(ours)
    assert not any(k and k[0][0] == "not_a_feature" for k in sums_by_slice(ours))
    # One extract per slice and batch, unless the batch had to fall back.
    assert len(ours) < len(theirs) / 3


def test_configs_that_count_single_extracts_keep_tfma_s_own_extractors() -> None:
    assert tfma_slicing.unsupported_reason(evaluation.eval_config(EvaluationConfig())) is None
    with_tfma_metric = evaluation.eval_config(EvaluationConfig())
    with_tfma_metric.metrics_specs[0].metrics.add(class_name="MeanPrediction")
    assert "MeanPrediction" in tfma_slicing.unsupported_reason(with_tfma_metric)
    with_intervals = evaluation.eval_config(EvaluationConfig())
    with_intervals.options.compute_confidence_intervals.value = True
    assert tfma_slicing.unsupported_reason(with_intervals)


def read_metrics(path: str) -> Dict[Tuple[str, str], Dict[str, float]]:
    out = {}
    for record in tfma.load_metrics(path):
        key = tfma.slicer.stringify_slice_key(
            tfma.slicer.deserialize_slice_key(record.slice_key))
        for entry in record.metric_keys_and_values:
            out.setdefault((key, entry.key.model_name), {})[
                entry.key.name + (" diff" if entry.key.is_diff else "")] = (
                    entry.value.double_value.value)
    return out


def evaluate(root: pathlib.Path, out: pathlib.Path, grouped: bool,
             baseline: Optional[pathlib.Path]) -> Dict[Tuple[str, str], Dict[str, float]]:
    """TFMA as TFX's Evaluator runs it, with TFMA's extractors or this module's."""
    model = next(root.glob("Trainer/model/*/Format-Serving"))
    config = tfma.utils.update_eval_config_with_defaults(
        evaluation.eval_config(EvaluationConfig()), has_baseline=baseline is not None,
        rubber_stamp=True)
    models = [tfma.default_eval_shared_model(
        eval_saved_model_path=str(baseline if spec.is_baseline else model),
        model_name=spec.name, eval_config=config) for spec in config.model_specs]
    schema = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
    # The first run's examples: the third run's (a plurality the model refuses) are never
    # evaluated, it stops at the anomaly gate.
    first = min(root.glob("DuckDBExampleGen/examples/*/Split-eval"),
                key=lambda split: int(split.parent.name))
    examples = tfxio.TFExampleRecord(
        str(first / "*"), schema=schema,
        raw_record_column_name=constants.ARROW_INPUT_COLUMN)
    adapter = tensor_adapter.TensorAdapterConfig(
        arrow_schema=examples.ArrowSchema(),
        tensor_representations=examples.TensorRepresentations())
    shared = models[0] if len(models) == 1 else models
    extractors = (tfma_slicing.custom_extractors(shared, config, adapter) if grouped else None)
    with beam.Pipeline() as pipeline:
        _ = (pipeline | examples.BeamSource(batch_size=EVAL_BATCH_SIZE)
             | tfma.ExtractEvaluateAndWriteResults(
                 eval_shared_model=shared, eval_config=config, extractors=extractors,
                 output_path=str(out), tensor_adapter_config=adapter))
    metrics = read_metrics(str(out))
    validation = tfma.load_validation_result(str(out))
    assert validation.validation_ok
    return metrics


def metric_tolerance(name: str, largest: float, examples: int) -> float:
    """How far the two evaluations may differ on one metric of a slice of at most `examples`.

    They see the same predictions (fixed batches), so only the order of the float64 sums over
    the slice's examples differs: the example count is a sum of ones, exact below 2**53. RMSE
    and MAE are ratios of sums of same-signed terms (rms_rel covers both, being the looser); a
    diff against the baseline is the difference of two of them, so its error is at most the sum
    of theirs: below twice the bound of the largest metric of the slice (`largest`).
    """
    if name.startswith(tfma_metrics.EXAMPLE_COUNT_NAME):
        return 0.0
    return 2 * rms_rel(int(examples), EPS64) * largest


@pytest.mark.slow
@pytest.mark.parametrize("with_baseline", [False, True], ids=["alone", "against a baseline"])
def test_evaluator_results_equal_tfma_s_own_slicing(pipeline_runs, tmp_path,
                                                     with_baseline: bool) -> None:
    root = pipeline_runs.pipeline_root
    baseline = next(root.glob("Trainer/model/*/Format-Serving")) if with_baseline else None
    theirs = evaluate(root, tmp_path / "stock", grouped=False, baseline=baseline)
    ours = evaluate(root, tmp_path / "batched", grouped=True, baseline=baseline)
    assert ours.keys() == theirs.keys()
    assert len({slice_key for slice_key, _ in ours}) > 15, "every feature's slices"
    examples = max(v.get(tfma_metrics.EXAMPLE_COUNT_NAME, 0) for v in theirs.values())
    for key, values in theirs.items():
        slice_values = [v for (slice_key, _), metrics in theirs.items() if slice_key == key[0]
                        for name, v in metrics.items() if not name.endswith(" diff")
                        and not name.startswith(tfma_metrics.EXAMPLE_COUNT_NAME)]
        largest = max(abs(v) for v in slice_values)
        assert ours[key].keys() == values.keys(), key
        for name, value in values.items():
            tolerance = metric_tolerance(name, largest, examples)  # no slice has more
            assert ours[key][name] == pytest.approx(value, rel=0, abs=tolerance), (key, name)
    for model in {model for _, model in ours}:
        by_plurality = [v[tfma_metrics.EXAMPLE_COUNT_NAME] for (slice_key, name), v in ours.items()
                        if name == model and slice_key.startswith("plurality:")]
        overall = ours[("Overall", model)][tfma_metrics.EXAMPLE_COUNT_NAME]
        assert sum(by_plurality) == overall > 1000
