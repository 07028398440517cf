"""The anomaly gate also stops on a split without examples, which TFDV lets pass."""
import os
import pathlib
import shutil
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from modules.records import tfrecord_files
from pipelines.components import anomaly_gate


def _newest(directory: pathlib.Path) -> pathlib.Path:
    return max(directory.iterdir(), key=lambda p: int(p.name))


def _empty_split_statistics(path: pathlib.Path) -> None:
    """What StatisticsGen writes for a split that read no record: TFDV over nothing."""
    with beam.Pipeline() as pipeline:
        _ = (pipeline
             | beam.Create([], reshuffle=False).with_output_types(pa.RecordBatch)
             | tfdv.GenerateStatistics()
             | tfdv.WriteStatisticsToBinaryFile(str(path)))


@pytest.mark.slow
def test_split_sizes_are_the_examples_and_an_empty_split_is_named(
        pipeline_runs: Any, tmp_path: pathlib.Path) -> None:
    root = pipeline_runs.pipeline_root
    statistics = _newest(root / "StatisticsGen" / "statistics")
    examples = _newest(root / "DuckDBExampleGen" / "examples")
    splits = ["train", "eval", "test"]
    sizes = anomaly_gate.split_sizes(str(statistics), splits)
    for split in splits:
        files, compression = tfrecord_files([os.path.join(examples, f"Split-{split}", "*")])
        records = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type=compression))
        assert sizes[split] == records > 0, split
    assert anomaly_gate.describe_empty(sizes) == []

    copied = tmp_path / "statistics"
    shutil.copytree(statistics, copied)
    _empty_split_statistics(copied / "Split-eval" / anomaly_gate.STATISTICS_FILE)
    lines = anomaly_gate.describe_empty(anomaly_gate.split_sizes(str(copied), splits))
    assert len(lines) == 1 and lines[0].startswith("[eval] no examples"), lines
