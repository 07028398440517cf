"""TFMA slicing on whole batches: one extract per slice and batch instead of one per example.

Why: TFMA's default extractors split every batch into one extract per example, then fan each
example out to every slice it belongs to; every (example, slice) pair then costs tens of
microseconds of Python in the Beam runner, most of the Evaluator's time. Here the rows of a
batch are grouped, with numpy, by the values of each slicing spec's columns; TFMA's own
`SingleSliceSpec.generate_slices` names each group's slice (so the keys are exactly TFMA's), and
each group travels on as one extract holding its rows. The metrics of `pipelines.tfma_metrics`
sum over every row of the extract they get, so the results are the same; TFMA then gates,
compares with the baseline and writes them as usual.

This is the Evaluator's `custom_extractors` hook (its `module_path`). It falls back to TFMA's
own extractors for configurations whose results depend on one extract per example (metrics from
elsewhere, confidence intervals, query keys, SQL slices, a minimum slice size), and, per batch,
for rows it cannot group (a slicing column with several values in one row).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.slicer.slice_accessor import SliceAccessor
from tensorflow_model_analysis.utils import util

from pipelines import tfma_metrics
from pipelines.speedups import version_check

_ABSENT = object()
# Extract keys that describe the whole batch, not its rows.
_BATCH_KEYS = (constants.ARROW_RECORD_BATCH_KEY,)


def unsupported_reason(eval_config: tfma.EvalConfig) -> Optional[str]:
    """Why this config needs one extract per example, or None when batches can be sliced."""
    options = eval_config.options
    if options.compute_confidence_intervals.value:
        return "confidence intervals resample single examples"
    if options.min_slice_size.value > 1:
        return "a minimum slice size counts single examples"
    if any(spec.query_key for spec in eval_config.metrics_specs):
        return "query keys group single examples"
    if any(spec.slice_keys_sql for spec in eval_config.slicing_specs):
        return "SQL slices are computed per example"
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            if metric.module != tfma_metrics.__name__:
                return (f"metric {metric.class_name} is not from {tfma_metrics.__name__} "
                        "and may count each extract as one example")
    return None


def slice_specs(eval_config: tfma.EvalConfig) -> List[slicer_lib.SingleSliceSpec]:
    """The slices TFMA's SliceKeyExtractor would compute, each once."""
    specs: List[slicer_lib.SingleSliceSpec] = []
    protos = list(eval_config.slicing_specs)
    for cross in eval_config.cross_slicing_specs:
        protos.append(cross.baseline_spec)
        protos.extend(cross.slicing_specs)
    for proto in protos:
        spec = slicer_lib.SingleSliceSpec(spec=proto)
        if spec not in specs:
            specs.append(spec)
    return specs or [slicer_lib.SingleSliceSpec()]


def _spec_columns(spec: slicer_lib.SingleSliceSpec) -> Tuple[str, ...]:
    """The columns a spec slices by or filters on; rows agreeing on them share its slices."""
    proto = spec.to_proto()
    return tuple(sorted(set(proto.feature_keys) | set(proto.feature_values)))


def _rows(value: Any) -> Optional[int]:
    """How many rows a batched leaf holds, or None when it is not a plain per-row sequence."""
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return value.shape[0]
    if isinstance(value, list):
        return len(value)
    return None


def _batch_rows(extracts: Dict[str, Any]) -> Optional[int]:
    """The batch size when every leaf is a per-row array or list (or None), else None."""
    sizes = set()

    def visit(tree: Dict[str, Any]) -> bool:
        for key, value in tree.items():
            if key in _BATCH_KEYS or value is None:
                continue
            if isinstance(value, dict):
                if not visit(value):
                    return False
                continue
            rows = _rows(value)
            if rows is None:
                return False
            sizes.add(rows)
        return True

    if not visit(extracts) or len(sizes) != 1:
        return None
    return sizes.pop()


def _take(tree: Dict[str, Any], rows: np.ndarray) -> Dict[str, Any]:
    """The same extracts restricted to `rows` (batch-wide keys dropped)."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if key in _BATCH_KEYS:
            continue
        if isinstance(value, dict):
            out[key] = _take(value, rows)
        elif isinstance(value, np.ndarray):
            out[key] = value[rows]
        elif isinstance(value, list):
            out[key] = [value[row] for row in rows]
        else:
            out[key] = value
    return out


def _column(extracts: Dict[str, Any], name: str, model_names: Sequence[str]) -> Any:
    """One slicing column, found where TFMA's SliceKeyExtractor looks: transformed, then raw.

    _ABSENT when no features hold it (no row has that slice); None when it is not one value per
    row (then TFMA's per-example path decides).
    """
    transformed = extracts.get(constants.TRANSFORMED_FEATURES_KEY)
    dicts: List[Dict[str, Any]] = []
    if isinstance(transformed, dict):
        if len(model_names) == 1:  # as TFMA: with several models, each has its own
            dicts.append(transformed)
        else:
            dicts.extend(transformed[model_name] for model_name in model_names
                         if isinstance(transformed.get(model_name), dict))
    dicts.append(util.get_features_from_extracts(extracts) or {})
    for features in dicts:
        value = features.get(name)
        if value is None:
            continue
        if isinstance(value, np.ndarray) and (value.ndim == 1 or value.shape[1:] == (1,)):
            return value.reshape(-1)
        return None
    return _ABSENT


class _GroupRowsBySliceFn(beam.DoFn):
    """Batched extracts in, one extract per (slice, batch) out; a batch it cannot group, one
    extract per example, unbatched and sliced by TFMA's own functions.

    One DoFn for both, not a second branch joined by a Flatten: Beam's local runner buffers a
    Flatten's inputs, which held every grouped extract of the eval split in memory.
    """

    def __init__(self, specs: List[slicer_lib.SingleSliceSpec], eval_config: tfma.EvalConfig):
        self._specs = specs
        self._model_names = [spec.name for spec in eval_config.model_specs]
        self._per_example = slice_key_extractor.ExtractSliceKeysFn(eval_config, True)

    def _slices(self, extracts: Dict[str, Any], rows: int
                ) -> Optional[Dict[Tuple, List[np.ndarray]]]:
        groups: Dict[Tuple, List[np.ndarray]] = {}
        for spec in self._specs:
            names = _spec_columns(spec)
            if not names:
                for key in spec.generate_slices(SliceAccessor([], {})):
                    groups.setdefault(key, []).append(np.arange(rows))
                continue
            columns = [_column(extracts, name, self._model_names) for name in names]
            if any(column is None for column in columns):
                return None
            if any(column is _ABSENT for column in columns):
                continue  # like TFMA: a row without the column is in none of this spec's slices
            try:
                codes = np.stack([np.unique(column, return_inverse=True)[1].reshape(-1)
                                  for column in columns], axis=1)
            except TypeError:  # values that do not sort, such as None among strings
                return None
            _, group_of_row = np.unique(codes, axis=0, return_inverse=True)
            group_of_row = group_of_row.reshape(-1)
            order = np.argsort(group_of_row, kind="stable")
            starts = np.flatnonzero(np.diff(group_of_row[order], prepend=-1))
            for members in np.split(order, starts[1:]):
                first = members[0]
                accessor = SliceAccessor([{name: column[first:first + 1]
                                           for name, column in zip(names, columns)}], {})
                for key in spec.generate_slices(accessor):
                    groups.setdefault(key, []).append(members)
        return groups

    def process(self, extracts: Dict[str, Any]) -> Iterator[Any]:
        rows = _batch_rows(extracts)
        groups = self._slices(extracts, rows) if rows else None
        if groups is None:
            # pylint: disable-next=protected-access
            for example in unbatch_extractor._extract_unbatched_inputs(extracts):
                yield from self._per_example.process(example, slice_spec=self._specs)
            return
        for key, parts in groups.items():
            # Two specs can name the same slice (columns {x} and the value x=5): a row counts once.
            members = np.unique(np.concatenate(parts))
            out = _take(extracts, members)
            out[constants.SLICE_KEY_TYPES_KEY] = slicer_lib.slice_keys_to_numpy_array([key])
            yield out


@beam.ptransform_fn
def _SliceBatches(extracts: beam.PCollection, eval_config: tfma.EvalConfig
                  ) -> beam.PCollection:  # pylint: disable=invalid-name
    return extracts | "GroupRowsBySlice" >> beam.ParDo(
        _GroupRowsBySliceFn(slice_specs(eval_config), eval_config))


def batch_slicing_extractor(eval_config: tfma.EvalConfig) -> tfma.extractors.Extractor:
    """Takes the place of TFMA's UnbatchExtractor and SliceKeyExtractor (and its stage name,
    after which the evaluators run)."""
    return tfma.extractors.Extractor(
        stage_name=slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME,
        ptransform=_SliceBatches(eval_config))


def custom_extractors(eval_shared_model: Any, eval_config: tfma.EvalConfig,
                      tensor_adapter_config: Any) -> List[tfma.extractors.Extractor]:
    """TFMA's default extractors, with unbatching and slice keys replaced by batch slicing."""
    extractors = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                         eval_config=eval_config,
                                         tensor_adapter_config=tensor_adapter_config)
    reason = (unsupported_reason(eval_config) if version_check.in_effect("tfma_slicing")
              else "written for another TFMA release")
    stages = [extractor.stage_name for extractor in extractors]
    tail = [unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME,
            slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME]
    if not reason and stages[-2:] != tail:
        reason = f"unexpected extractors {stages}"
    if reason:
        logging.info("Slicing each example on its own: %s.", reason)
        return extractors
    logging.info("Slicing whole batches (%d slicing specs).", len(slice_specs(eval_config)))
    return extractors[:-2] + [batch_slicing_extractor(eval_config)]
