"""Reading TFRecords a batch at a time gives what TFXIO's per-record Beam source gives."""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.util import tfxio_utils
from tfx_bsl.tfxio import tf_example_record

from pipelines import pipeline
from pipelines.speedups import batched_reads
from tests.tolerances import EPS64, mixed_mean_abs, moments_std_abs
from pipelines.schema import SCHEMA_FILE

SCHEMA = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
RAW_COLUMN = "__raw_record__"
SHARD_ROWS = (1000, 300)


def write_examples(path: pathlib.Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for _ in range(rows):
            feature = {
                "weight_pounds": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[rng.normal(7.2, 1.1)])),
                "mother_age": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(rng.integers(14, 50))])),
                "gestation_weeks": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(rng.integers(20, 45))])),
                "plurality": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[rng.choice([b"Single(1)", b"Twins(2)"])])),
                "hashmonth": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(rng.integers(-9, 9))])),
            }
            if rng.random() < 0.8:  # an optional feature, sometimes absent
                feature["is_male"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[rng.choice([b"True", b"False"])]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two gzipped shards, as ExampleGen writes them; the pattern that matches both. Sizes
    that no batch size tried divides (the last batch of each shard is short): more rows would
    only make every pipeline here longer."""
    directory = tmp_path_factory.mktemp("examples")
    write_examples(directory / "data_tfrecord-00000-of-00002.gz", SHARD_ROWS[0], seed=1)
    write_examples(directory / "data_tfrecord-00001-of-00002.gz", SHARD_ROWS[1], seed=2)
    return str(directory / "*")


_BATCHES: List[pa.RecordBatch] = []


def _collect(batch: pa.RecordBatch) -> None:
    _BATCHES.append(batch)  # the in-process runner calls this module's own function


def rows(tfxio: Any, batch_size: Optional[int] = None) -> List[Dict[str, Any]]:
    """Every row the TFXIO's Beam source yields, in a canonical order."""
    _BATCHES.clear()
    with beam.Pipeline() as p:
        _ = p | tfxio.BeamSource(batch_size) | beam.Map(_collect)
    table = pa.Table.from_batches(list(_BATCHES))
    assert table.schema.equals(tfxio.ArrowSchema())
    return sorted(table.to_pylist(), key=repr)


@pytest.mark.parametrize("raw_column", [None, RAW_COLUMN], ids=["decoded", "with raw records"])
def test_batched_source_yields_the_same_rows(examples: str, raw_column: Optional[str]) -> None:
    stock = tf_example_record.TFExampleRecord(examples, schema=SCHEMA,
                                              raw_record_column_name=raw_column)
    ours = batched_reads.batched(stock)
    assert isinstance(ours, batched_reads.BatchedTFExampleRecord)
    expected = rows(stock)
    assert len(expected) == sum(SHARD_ROWS)
    assert rows(ours) == expected
    assert rows(ours, batch_size=64) == expected


def test_projection_keeps_reading_in_batches(examples: str) -> None:
    ours = batched_reads.batched(tf_example_record.TFExampleRecord(examples, schema=SCHEMA))
    projected = ours.Project(["mother_age", "weight_pounds"])
    # TFXIO wraps the projection; the source it reads with is the projected one.
    assert isinstance(projected.projected, batched_reads.BatchedTFExampleRecord)
    assert {name for row in rows(projected) for name in row} == {"mother_age", "weight_pounds"}


def test_statistics_match_the_stock_reader(examples: str) -> None:
    def statistics(tfxio: Any) -> Dict[str, Any]:
        _BATCHES.clear()
        with beam.Pipeline() as p:
            _ = (p | tfxio.BeamSource() | tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | beam.Map(_collect))
        (dataset,) = _BATCHES[0].datasets
        return {feature.path.step[0]: feature for feature in dataset.features}

    stock = statistics(tf_example_record.TFExampleRecord(examples))
    ours = statistics(batched_reads.batched(tf_example_record.TFExampleRecord(examples)))
    assert stock.keys() == ours.keys()
    for name, feature in stock.items():
        theirs, mine = feature, ours[name]
        if feature.HasField("num_stats"):
            # The same values in other batches: only the float64 sums' order differs.
            n = int(theirs.num_stats.common_stats.num_non_missing)
            mean, std = theirs.num_stats.mean, theirs.num_stats.std_dev
            assert mine.num_stats.mean == pytest.approx(
                mean, rel=0, abs=mixed_mean_abs(n, mean, std, EPS64)), name
            assert mine.num_stats.std_dev == pytest.approx(
                std, rel=0, abs=moments_std_abs(n, mean, std, EPS64)), name
            assert (mine.num_stats.common_stats.num_non_missing
                    == theirs.num_stats.common_stats.num_non_missing)
        else:
            assert mine.string_stats.unique == theirs.string_stats.unique
            assert (mine.string_stats.common_stats.num_non_missing
                    == theirs.string_stats.common_stats.num_non_missing)


def test_only_tf_example_files_are_read_in_batches(examples: str) -> None:
    other = tf_example_record.TFExampleBeamRecord(physical_format="inmem")
    assert batched_reads.batched(other) is other
    stock_make_tfxio = tfxio_utils.make_tfxio
    with batched_reads._batched_tfxio():  # pylint: disable=protected-access
        assert tfxio_utils.make_tfxio is not stock_make_tfxio
    assert tfxio_utils.make_tfxio is stock_make_tfxio
    with pytest.raises(FileNotFoundError):
        batched_reads.batched(tf_example_record.TFExampleRecord(
            [str(pathlib.Path(examples).parent / "nothing-*")], validate=False)).BeamSource()


def test_the_evaluator_s_tfxio_factory_hands_out_the_batched_reader(examples: str) -> None:
    """TFX's Evaluator makes its TFXIO through this factory, with TFMA's raw-record column."""
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = str(pathlib.Path(examples).parent)
    with batched_reads._batched_tfxio():  # pylint: disable=protected-access
        factory = tfxio_utils.get_tfxio_factory_from_artifact(
            examples=[artifact], telemetry_descriptors=["test"], schema=SCHEMA,
            raw_record_column_name=RAW_COLUMN)
        tfxio = factory(examples)
    assert isinstance(tfxio, batched_reads.BatchedTFExampleRecord)
    assert tfxio.raw_record_column_name == RAW_COLUMN


def test_the_local_pipeline_reads_in_batches_and_the_cloud_one_does_not(tmp_path) -> None:
    from tests.test_pipeline_definition import build

    def executors(definition) -> Dict[str, Any]:
        return {c.id: c.executor_spec.executor_class for c in definition.components
                if c.id in ("StatisticsGen", "Transform", "Evaluator")}

    assert executors(build(tmp_path)) == {
        "StatisticsGen": batched_reads.StatisticsGenExecutor,
        "Transform": batched_reads.TransformExecutor,
        "Evaluator": batched_reads.EvaluatorExecutor}
    stock = executors(build(tmp_path, engines=pipeline.Engines(batched_reads=False)))
    assert len(stock) == 3
    assert not set(stock.values()) & {batched_reads.StatisticsGenExecutor,
                                      batched_reads.TransformExecutor,
                                      batched_reads.EvaluatorExecutor}


@pytest.mark.slow
def test_statistics_gen_executor_reads_through_the_batched_source(pipeline_runs, tmp_path,
                                                                  monkeypatch) -> None:
    """The executor really hands the batched TFXIO to TFDV (not just the class in the spec)."""
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(next(pipeline_runs.pipeline_root.glob("DuckDBExampleGen/examples/*")))
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    sources: List[str] = []
    batched_source = batched_reads.BatchedTFExampleRecord.BeamSource

    def counted(self: Any, batch_size: Optional[int] = None) -> Any:
        sources.append(str(self._file_pattern))  # pylint: disable=protected-access
        return batched_source(self, batch_size)

    monkeypatch.setattr(batched_reads.BatchedTFExampleRecord, "BeamSource", counted)
    batched_reads.StatisticsGenExecutor().Do(
        {"examples": [examples]}, {"statistics": [statistics]}, {"exclude_splits": "[]"})
    assert len(sources) == 2 and any("Split-eval" in s for s in sources)
    for split in ("train", "eval"):
        written = tfdv.load_stats_binary(
            str(tmp_path / "statistics" / f"Split-{split}" / "FeatureStats.pb"))
        assert written.datasets[0].num_examples > 1000
    assert tfxio_utils.make_tfxio.__module__ == tfxio_utils.__name__, "the stock one is back"


@pytest.mark.parametrize("in_range", [True, False])
def test_transform_s_executor_makes_its_tfxio_through_the_batched_source(examples: str,
                                                                         monkeypatch,
                                                                         in_range: bool) -> None:
    """Transform's own TFXIO maker (TransformProcessor._CreateTFXIO, which the stock Do reaches),
    called inside our executor's Do, gets the batched reader; on another tfx_bsl release (out of
    the patch's range) it gets the stock one."""
    import types

    from tfx.components.transform import executor as transform_executor
    from tfx.proto import example_gen_pb2

    from pipelines.speedups import version_check

    made: List[Any] = []
    dataset = types.SimpleNamespace(
        file_pattern=examples, file_format="tfrecords_gzip", data_view_uri=None,
        data_format=example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)

    def stock_do(self: Any, input_dict: Any, output_dict: Any, exec_properties: Any) -> None:
        processor = transform_executor.TransformProcessor()
        made.append(processor._CreateTFXIO(dataset, SCHEMA))  # pylint: disable=protected-access

    monkeypatch.setattr(transform_executor.Executor, "Do", stock_do)
    if not in_range:
        monkeypatch.setitem(version_check.RANGES, "batched_reads", ("tfx-bsl", (0, 1), (0, 2)))
    version_check.forget()
    try:
        batched_reads.TransformExecutor().Do({}, {}, {})
    finally:
        version_check.forget()
    assert len(made) == 1
    assert isinstance(made[0], batched_reads.BatchedTFExampleRecord) is in_range
    assert isinstance(made[0], tf_example_record.TFExampleRecord)
    assert tfxio_utils.make_tfxio.__module__ == tfxio_utils.__name__, "the stock one is back"
