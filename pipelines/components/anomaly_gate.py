"""AnomalyGate: stops the run before any training when ExampleValidator found anomalies.

Stock ExampleValidator records anomalies but lets the pipeline go on. This component reads its
output, writes the anomalies in plain words (feature, what was expected, what came) to a report
beside the run's other reports (the lines of reports/validation_results.py), and fails, so
nothing downstream of it runs.

It also stops on a split without examples: TFDV skips the schema's minimum example count for an
empty split, so ExampleValidator finds nothing wrong with one (locally DuckDBExampleGen already
refuses to write it; BigQueryExampleGen on Google Cloud does not).
"""

import os
import pathlib
from typing import Dict, List

from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics

from common.errors import DataValidationError
from reports.validation_results import describe, read_anomalies

STATISTICS_FILE = "FeatureStats.pb"


class DataAnomaliesError(DataValidationError):
    """The data does not match the curated schema; the message says how, in plain words."""


def split_sizes(statistics_uri: str, split_names: List[str]) -> Dict[str, int]:
    """StatisticsGen's example count for each split (0 where it holds no dataset at all)."""
    import tensorflow as tf

    sizes = {}
    for split in split_names:
        path = os.path.join(statistics_uri, f"Split-{split}", STATISTICS_FILE)
        statistics = statistics_pb2.DatasetFeatureStatisticsList()
        statistics.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        sizes[split] = sum(int(dataset.num_examples) for dataset in statistics.datasets)
    return sizes


def describe_empty(sizes: Dict[str, int]) -> List[str]:
    return [f"[{split}] no examples: no rows of the query's data fell into this split"
            for split, size in sorted(sizes.items()) if size == 0]


def format_report(lines: List[str]) -> str:
    return ("The data does not match the curated schema (schema/schema.pbtxt); the run stopped "
            "before training.\n" + "\n".join(f"  - {line}" for line in lines) +
            "\nFix the data, or if the change is intended, update modules/features.py and "
            "regenerate the schema with `python -m pipelines.schema write`.\n")


@component
def AnomalyGate(  # pylint: disable=invalid-name
    anomalies: InputArtifact[ExampleAnomalies],
    statistics: InputArtifact[ExampleStatistics],
    report_path: Parameter[str],
) -> None:
    """Fails the run, with the anomalies in plain words, when any split has anomalies or no
    examples."""
    splits = standard_artifact_utils.decode_split_names(anomalies.split_names)
    statistics_splits = standard_artifact_utils.decode_split_names(statistics.split_names)
    lines = (describe_empty(split_sizes(statistics.uri, statistics_splits))
             + describe(read_anomalies(anomalies.uri, splits)))
    report = pathlib.Path(report_path)
    report.parent.mkdir(parents=True, exist_ok=True)
    if lines:
        text = format_report(lines)
        report.write_text(text)
        raise DataAnomaliesError(text)
    report.write_text("No anomalies: every split matches the curated schema.\n")
