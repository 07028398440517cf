"""Beam's multi_processing and multi_threading modes give what in_memory gives: ExampleGen's
shards split the work.

StatisticsGen's statistics and Transform's analysis of the same ExampleGen output, once on one
in-process worker and once on two workers (processes, or threads of this process), each taking
whole shards; and the batched source's reading and decoding, the work that costs, done in both
workers, each on shards of its own. One Beam pipeline per mode computes all three from one read
of the split, so the worker processes (each importing TFX's libraries) start once.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import threading
from typing import Any, Dict, List, Tuple

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tf_example_record

from modules import features, preprocessing
from pipelines.components.duckdb_example_gen import executor
from pipelines.config import PipelineConfig
from pipelines.schema import SCHEMA_FILE
from pipelines.speedups import batched_reads
from tests.split_files import write_train_split
from tests.tolerances import EPS32, EPS64, gamma, mixed_mean_abs, moments_std_abs

pytestmark = pytest.mark.slow  # starts Beam worker processes, each importing TFX's libraries
SCHEMA = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
MODES = {"in_memory": PipelineConfig(beam_direct_running_mode="in_memory"),
         "multi_processing": PipelineConfig(beam_direct_running_mode="multi_processing",
                                            beam_direct_num_workers=2),
         "multi_threading": PipelineConfig(beam_direct_running_mode="multi_threading",
                                           beam_direct_num_workers=2)}
PARALLEL = ("multi_processing", "multi_threading")


@pytest.fixture(scope="module")
def train_split(tmp_path_factory: pytest.TempPathFactory) -> str:
    """ExampleGen's train split of a small warehouse, written as the executor writes it."""
    return write_train_split(tmp_path_factory.mktemp("shards"), rows=10_000, seed=5)


def reader(pattern: str) -> Any:
    return batched_reads.batched(tf_example_record.TFExampleRecord(pattern, schema=SCHEMA))


def _rows_by_process(batch: Any) -> Tuple[int, int]:
    return os.getpid(), batch.num_rows


def _rows_by_thread(batch: Any) -> Tuple[int, int]:
    return threading.get_ident(), batch.num_rows


@dataclasses.dataclass(frozen=True)
class Results:
    statistics: Dict[str, Any]  # feature name -> its statistics
    analysis: tft.TFTransformOutput  # Transform's analysis, as its executor runs it
    rows_by_worker: Dict[int, int]  # process id (thread id in multi_threading) -> rows decoded


def run_mode(pattern: str, mode: str, out: pathlib.Path) -> Results:
    """The split's statistics, its analysis and who decoded it, from one pipeline in `mode`."""
    tfxio = reader(pattern)
    coder = beam.coders.ProtoCoder(statistics_pb2.DatasetFeatureStatisticsList)
    options = PipelineOptions(list(MODES[mode].beam_pipeline_args()))
    with tft_beam.Context(temp_dir=str(out / "tmp"), force_tf_compat_v1=False):
        with beam.Pipeline(options=options) as pipeline:
            raw = pipeline | tfxio.BeamSource()
            _ = (raw | tfdv.GenerateStatistics(tfdv.StatsOptions(schema=SCHEMA))
                 | "WriteStatistics" >> beam.io.WriteToTFRecord(
                     str(out / "statistics.pb"), coder=coder, shard_name_template=""))
            transform_fn = ((raw, tfxio.TensorAdapterConfig())
                            | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn))
            _ = transform_fn | tft_beam.WriteTransformFn(str(out / "graph"))
            by = _rows_by_thread if mode == "multi_threading" else _rows_by_process
            _ = (raw | beam.Map(by) | beam.CombinePerKey(sum)
                 | beam.Map(json.dumps)
                 | beam.io.WriteToText(str(out / "rows"), shard_name_template=""))
    (record,) = list(tf.data.TFRecordDataset([str(out / "statistics.pb")]).as_numpy_iterator())
    (dataset,) = statistics_pb2.DatasetFeatureStatisticsList.FromString(record).datasets
    return Results(
        statistics={feature.path.step[0]: feature for feature in dataset.features},
        analysis=tft.TFTransformOutput(str(out / "graph")),
        rows_by_worker=dict(json.loads(line)
                             for line in (out / "rows").read_text().splitlines()))


@pytest.fixture(scope="module")
def results(train_split: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Results]:
    """Each mode's results on the same split."""
    work = tmp_path_factory.mktemp("modes")
    return {mode: run_mode(train_split, mode, work / mode) for mode in MODES}


def test_the_split_is_written_as_shards_that_hold_every_example(train_split: str) -> None:
    files = sorted(tf.io.gfile.glob(train_split))
    assert len(files) == executor.SHARDS_PER_SPLIT
    counts = [sum(1 for _ in tf.data.TFRecordDataset([name], compression_type="GZIP"))
              for name in files]
    assert max(counts) - min(counts) <= 1  # dealt out in turn


@pytest.mark.parametrize("mode", PARALLEL)
def test_both_workers_read_and_decode_shards_of_their_own(
        train_split: str, results: Dict[str, Results], mode: str) -> None:
    read = results[mode].rows_by_worker
    files = sorted(tf.io.gfile.glob(train_split))
    counts = [sum(1 for _ in tf.data.TFRecordDataset([name], compression_type="GZIP"))
              for name in files]
    assert len(read) == 2  # two workers
    if mode == "multi_processing":
        assert os.getpid() not in read  # worker processes, not this one
    else:
        assert threading.get_ident() not in read  # Beam's threads, not the caller's
    assert sum(read.values()) == sum(counts)  # every record decoded once
    # Each worker decoded whole shards, and together every shard exactly once.
    first, second = read.values()
    assert any(sum(counts[i] for i in chosen) == first
               and sum(counts) - sum(counts[i] for i in chosen) == second
               for size in range(1, len(counts)) for chosen in
               itertools.combinations(range(len(counts)), size))
    assert sum(results["in_memory"].rows_by_worker.values()) == sum(counts)


@pytest.mark.parametrize("mode", PARALLEL)
def test_statistics_are_the_same_on_two_workers(results: Dict[str, Results], mode: str) -> None:
    one, two = results["in_memory"].statistics, results[mode].statistics
    assert one.keys() == two.keys() and one
    for name, mine in one.items():
        theirs = two[name]
        if mine.HasField("num_stats"):
            # The same values in other bundles: only the float64 sums' order differs.
            n = int(mine.num_stats.common_stats.num_non_missing)
            mean, std = mine.num_stats.mean, mine.num_stats.std_dev
            assert theirs.num_stats.common_stats.num_non_missing == n, name
            assert theirs.num_stats.mean == pytest.approx(
                mean, rel=0, abs=mixed_mean_abs(n, mean, std, EPS64)), name
            assert theirs.num_stats.std_dev == pytest.approx(
                std, rel=0, abs=moments_std_abs(n, mean, std, EPS64)), name
            assert theirs.num_stats.min == mine.num_stats.min, name
            assert theirs.num_stats.max == mine.num_stats.max, name
        else:
            assert theirs.string_stats.unique == mine.string_stats.unique, name
            assert (theirs.string_stats.common_stats.num_non_missing
                    == mine.string_stats.common_stats.num_non_missing), name


def raw_batch(pattern: str, spec: Dict[str, Any]) -> Tuple[Dict[str, tf.Tensor], int]:
    """Every example of the split, parsed; and how many there are."""
    files = sorted(tf.io.gfile.glob(pattern))
    records: List[bytes] = list(tf.data.TFRecordDataset(files, compression_type="GZIP")
                                .as_numpy_iterator())
    return tf.io.parse_example(tf.constant(records), spec), len(records)


@pytest.mark.parametrize("mode", PARALLEL)
def test_transform_s_analysis_is_the_same_on_two_workers(
        train_split: str, results: Dict[str, Results], mode: str) -> None:
    one, two = results["in_memory"].analysis, results[mode].analysis
    raw, n = raw_batch(train_split, schema_utils.schema_as_feature_spec(SCHEMA).feature_spec)
    ours, theirs = one.transform_raw_features(raw), two.transform_raw_features(raw)
    assert ours.keys() == theirs.keys()
    numeric = {preprocessing.transformed_name(f.name): f.name for f in features.NUMERIC_FEATURES}
    for key, value in ours.items():
        mine, other = value.numpy(), theirs[key].numpy()
        if key not in numeric:
            np.testing.assert_array_equal(mine, other, err_msg=key)
            continue
        # z = (x - mean) / std with TFT's float32 mean and variance, whose sums ran in other
        # orders: each z moves by (d_mean + |z| d_std) / std, plus z's own few roundings.
        x = tf.cast(tf.sparse.to_dense(raw[numeric[key]]) if isinstance(
            raw[numeric[key]], tf.sparse.SparseTensor) else raw[numeric[key]],
            tf.float64).numpy().reshape(-1)
        mean, std = float(x.mean()), float(x.std())
        tolerance = (mixed_mean_abs(n, mean, std, EPS32)
                     + np.abs(mine) * moments_std_abs(n, mean, std, EPS32)) / std
        tolerance += gamma(4, EPS32) * (1 + np.abs(mine))
        assert np.all(np.abs(mine - other) <= tolerance), key
