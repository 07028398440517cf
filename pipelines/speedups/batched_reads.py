"""StatisticsGen, Transform and the Evaluator read ExampleGen's TFRecords a batch at a time.

Why: TFXIO's Beam source for tf.Examples is Beam's ReadFromTFRecord, and every record then
travels on as its own Beam element (telemetry, BatchElements) until the decoder batches them:
Python for each record, most of StatisticsGen's time. Here tf.data's C++ reader reads each file, a batch of records at a time, and the same
tfx_bsl decoder DoFn makes the same Arrow RecordBatches: StatisticsGen
and Transform in a fraction of their stock time (the figures: the README's "Pipeline speed").

TFX has no setting for the reader its components use. `BatchedTFExampleRecord` is tfx_bsl's
TFExampleRecord with only `BeamSource` replaced, and the three executors below are the stock
ones, except that while they run, `tfxio_utils.make_tfxio` (the one function through which all
three make their TFXIO) hands out this one for tf.Example files. The components at the end are
TFX's own, built with these executors (same node ids); the wiring picks them for a local run.
With another tfx_bsl release (version_check.RANGES) the executors run the stock reader.

Local runs only: on Dataflow, Beam's own reader splits big files across workers, where this one
reads each file whole (streaming it, a batch at a time). Locally the unit of parallel work is the
file: ExampleGen writes each split as several shards, so Beam's multi_processing workers each
read different ones.
"""
from __future__ import annotations

from typing import Any, ContextManager, Iterator, List, Optional, Tuple, Type

import apache_beam as beam
import tensorflow as tf
from tfx import components
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import executor as transform_executor
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import executor_spec
from tfx_bsl.tfxio import tf_example_record

from modules import records
from pipelines import read_progress
from pipelines.prefetch import prefetched
from pipelines.speedups import version_check
from pipelines.speedups.replaced import replaced

# Records per batch when the reader's caller does not ask for a size. TFXIO's own source caps
# its batches at 1000; with 4096 TFMA's per-batch work (e.g. calling the model's signatures) is
# paid 4x less often, which the Evaluator's time shows, and StatisticsGen and Transform are
# no slower.
DEFAULT_BATCH_SIZE = 4096


class _ReadAndDecode(beam.DoFn):
    """A file name in, its records as Arrow RecordBatches out, decoded ahead on a thread.

    tf.data reads and un-gzips the file a batch of records at a time, and tfx_bsl's own
    decoder DoFn (the one TFXIO's RawRecordToRecordBatch uses) decodes each batch. Both run in
    C++ outside the GIL, so they work on the next batches while Beam's thread runs the
    component's Python on the last one.
    """

    def __init__(self, batch_size: int, compression: str, decode: beam.DoFn,
                 progress: Optional[read_progress.ReadProgress] = None) -> None:
        self._batch_size = batch_size
        self._compression = compression
        self._decode = decode
        self._progress = progress  # progress lines (pipelines/read_progress.py)

    def setup(self) -> None:
        self._decode.setup()

    def process(self, path: str) -> Iterator[Any]:
        def decoded() -> Iterator[Any]:
            dataset = tf.data.TFRecordDataset([path], compression_type=self._compression)
            for batch in dataset.batch(self._batch_size).as_numpy_iterator():
                yield from self._decode.process(list(batch))

        batches = prefetched(decoded())
        yield from self._progress.counted(path, batches) if self._progress else batches


class BatchedTFExampleRecord(tf_example_record.TFExampleRecord):
    """TFExampleRecord whose Beam source reads whole batches of records, not single records."""

    def BeamSource(self, batch_size: Optional[int] = None) -> beam.PTransform:
        patterns = (self._file_pattern if isinstance(self._file_pattern, list)
                    else [self._file_pattern])
        files, compression = records.tfrecord_files(patterns)
        decode = tf_example_record._DecodeBatchExamplesDoFn(  # pylint: disable=protected-access
            self._GetSchemaForDecoding(), self.raw_record_column_name)

        def expand(pipeline: Any) -> beam.PCollection:
            return (pipeline
                    | "ListFiles" >> beam.Create(files)
                    | "ReadAndDecode" >> beam.ParDo(
                        _ReadAndDecode(batch_size or DEFAULT_BATCH_SIZE, compression, decode,
                                       read_progress.for_step(self.telemetry_descriptors))))

        return beam.ptransform_fn(expand)()

    def _ProjectImpl(self, tensor_names: List[str]) -> Any:
        return batched(super()._ProjectImpl(tensor_names))


def batched(tfxio: Any) -> Any:
    """The same TFXIO reading a batch at a time, when it reads tf.Example TFRecord files."""
    if type(tfxio) is not tf_example_record.TFExampleRecord:  # noqa: E721 - not subclasses
        return tfxio
    # pylint: disable=protected-access
    return BatchedTFExampleRecord(
        file_pattern=tfxio._file_pattern, schema=tfxio._schema,
        raw_record_column_name=tfxio.raw_record_column_name,
        telemetry_descriptors=tfxio.telemetry_descriptors)


def _batched_tfxio() -> ContextManager[None]:
    """While inside, tfxio_utils.make_tfxio makes batched TFXIOs (components run one by one)."""
    return replaced(tfxio_utils, "make_tfxio", lambda stock: lambda *args, **kwargs: batched(
        stock(*args, **kwargs)))


class _ReadsInBatches:
    """Mixed in before a stock TFX executor: its Do runs with the batched TFXIO."""

    def Do(self, input_dict: Any, output_dict: Any, exec_properties: Any) -> None:
        if not version_check.in_effect("batched_reads"):
            super().Do(input_dict, output_dict, exec_properties)  # type: ignore[misc]
            return
        with _batched_tfxio(), read_progress.known_split_rows(input_dict.get("examples", [])):
            super().Do(input_dict, output_dict, exec_properties)  # type: ignore[misc]


class StatisticsGenExecutor(_ReadsInBatches, statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor, reading a batch of records at a time."""


class TransformExecutor(_ReadsInBatches, transform_executor.Executor):
    """TFX's Transform executor, reading a batch of records at a time."""


class EvaluatorExecutor(_ReadsInBatches, evaluator_executor.Executor):
    """TFX's Evaluator executor, reading a batch of records at a time."""


class StatisticsGen(components.StatisticsGen):
    """TFX's StatisticsGen, built with the executor that reads a batch of records at a time."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)


class Transform(components.Transform):
    """TFX's Transform, built with the executor that reads a batch of records at a time."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)


class Evaluator(components.Evaluator):
    """TFX's Evaluator, built with the executor that reads a batch of records at a time."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)


def component_classes(batched: bool) -> Tuple[Type[components.StatisticsGen],
                                              Type[components.Transform],
                                              Type[components.Evaluator]]:
    """(StatisticsGen, Transform, Evaluator): these when `batched`, else TFX's stock ones."""
    if batched:
        return StatisticsGen, Transform, Evaluator
    return components.StatisticsGen, components.Transform, components.Evaluator
