"""preprocessing_fn run through tf.Transform's Beam implementation on a few dozen rows.

Expected values are computed from modules/features.py (boundaries, vocabularies, missing values),
so the tests follow the declaration instead of repeating it.
"""
from __future__ import annotations

import bisect
import os
import pathlib
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple


import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tensorflow_transform.beam as tft_beam  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tensorflow_transform.tf_metadata import metadata_io  # noqa: E402
from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: E402

from modules import features  # noqa: E402
from modules import preprocessing as pp  # noqa: E402
from tests.tolerances import EPS32, gamma, std_rel, sum_rel  # noqa: E402
from pipelines.schema import SCHEMA_FILE  # noqa: E402
from pipelines.speedups import autograph, beam_introspection  # noqa: E402

Row = Dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Helpers (test_model.py reuses them)
# ------------------------------------------------------------------------------------------------

def raw_schema() -> schema_pb2.Schema:
    """The curated raw schema the pipeline's Transform reads."""
    return text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())


def raw_row(is_male: str, plurality: str, mother_age: int, gestation_weeks: int,
            weight_pounds: float = 7.5, hashmonth: int = 1) -> Row:
    """One instance dict in the raw schema's shape ([1] per feature)."""
    values = {
        features.IS_MALE.name: is_male.encode(),
        features.PLURALITY.name: plurality.encode(),
        features.MOTHER_AGE.name: int(mother_age),
        features.GESTATION_WEEKS.name: int(gestation_weeks),
        features.LABEL_KEY: float(weight_pounds),
        features.SPLIT_KEY: int(hashmonth),
    }
    return {key: [value] for key, value in values.items()}


def analyze_and_transform(
    train_rows: Sequence[Row],
    other_rows: Sequence[Row] = (),
    output_dir: Optional[pathlib.Path] = None,
) -> Tuple[List[Row], List[Row], tft.TFTransformOutput]:
    """Analyzes `train_rows`, transforms them and `other_rows`; returns both, read back.

    Writes, under `output_dir` (a temp dir if None), what TFX's ExampleGen and Transform write:
    the rows as gzipped raw tf.Example TFRecords in `raw/train/` and `raw/eval/` (`other_rows`),
    which Trainer code reads, the transform graph in `transform_graph/`, and Beam's transformed
    rows in `train/` and `eval/`. Beam and AutoGraph run with the local runner's speed-ups
    (pipelines/speedups: DoFn inspection memoized, tf.Transform's code left unconverted), as
    the pipeline's Transform does; their own tests show the results equal the stock path's.
    """
    work = pathlib.Path(output_dir) if output_dir else pathlib.Path(tempfile.mkdtemp())
    graph_dir = str(work / "transform_graph")
    metadata = tft.DatasetMetadata(raw_schema())
    raw_coder = tft.coders.ExampleProtoCoder(metadata.schema)
    for name, rows in (("train", train_rows), ("eval", other_rows)):
        write_records(work / "raw" / name / SHARD, [raw_coder.encode(row) for row in rows])
    with beam_introspection.cached_dofn_inspection(), autograph.graph_libraries_unconverted(), \
            beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(work / "tft_tmp")):
        train = pipeline | "Train" >> beam.Create(list(train_rows))
        (train_out, out_metadata), transform_fn = (
            (train, metadata) | tft_beam.AnalyzeAndTransformDataset(pp.preprocessing_fn))
        other = pipeline | "Other" >> beam.Create(list(other_rows))
        other_out, _ = ((other, metadata), transform_fn) | tft_beam.TransformDataset()
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
        for name, rows in (("train", train_out), ("eval", other_out)):
            # Gathered into one file (a few hundred rows), not through a sharded file sink.
            _ = (rows | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Gather{name}" >> beam.combiners.ToList()
                 | f"Write{name}" >> beam.Map(lambda records, path: write_records(path, records),
                                              work / name / SHARD))
    # TFX's Transform also stores the raw metadata beside the graph (raw_feature_spec reads it).
    metadata_io.write_metadata(
        metadata, os.path.join(graph_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    output = tft.TFTransformOutput(graph_dir)
    return (read_transformed(str(work / "train" / "*.gz"), output),
            read_transformed(str(work / "eval" / "*.gz"), output), output)


SHARD = "data-00000-of-00001.gz"


def write_records(path: pathlib.Path, records: Sequence[bytes]) -> None:
    """Gzipped TFRecords, as ExampleGen writes them (TFX's `.gz` name says so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(record)


def read_transformed(pattern: str, output: tft.TFTransformOutput) -> List[Row]:
    """Transformed examples as dicts of numpy scalars, in file order.

    Parsed in one eager call: inside a tf.data map, AutoGraph would convert tf.Transform's
    feature-spec code on every first trace, for nothing.
    """
    files = tf.io.gfile.glob(pattern)
    records = [record.numpy() for record in
               tf.data.TFRecordDataset(files, compression_type="GZIP")]
    if not records:
        return []
    parsed = {key: value.numpy() for key, value in
              tf.io.parse_example(records, output.transformed_feature_spec()).items()}
    return [{key: values[index] for key, values in parsed.items()}
            for index in range(len(records))]


def expected_bucket(feature: features.NumericFeature, value: float) -> int:
    """tft.apply_buckets' convention: a value equal to a boundary goes to the upper bucket."""
    return bisect.bisect_right(list(feature.bucket_boundaries), value)


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------

AGES = (features.MOTHER_AGE.min_value, 18, 24, 30, 37, features.MOTHER_AGE.max_value)
WEEKS = (features.GESTATION_WEEKS.min_value, 28, 36, 39, features.GESTATION_WEEKS.max_value)
UNSEEN = "NotAValue"


def _train_rows() -> List[Row]:
    rng = np.random.default_rng(0)
    is_male = [features.IS_MALE_TRUE, features.IS_MALE_FALSE, features.IS_MALE_UNKNOWN, "", "  "]
    rows = []
    for index, (age, weeks) in enumerate((a, w) for a in AGES for w in WEEKS):
        rows.append(raw_row(
            is_male[index % len(is_male)],
            "" if index % 7 == 0 else features.PLURALITY.vocabulary[index % 3],
            age, weeks, weight_pounds=float(rng.uniform(2.0, 11.0))))
    return rows


@pytest.fixture(scope="module")
def transformed() -> Tuple[List[Row], List[Row], List[Row], List[Row], tft.TFTransformOutput]:
    train_rows = _train_rows()
    other_rows = [
        raw_row(UNSEEN, UNSEEN, 30, 39),
        raw_row(features.IS_MALE_UNKNOWN, features.PLURALITY_MULTIPLE_UNKNOWN, 30, 39),
        raw_row("", "", 30, 39),
    ]
    train_out, other_out, output = analyze_and_transform(train_rows, other_rows)
    return train_rows, train_out, other_rows, other_out, output


def _by_raw(train_rows: List[Row], train_out: List[Row]) -> List[Tuple[Row, Row]]:
    """Pairs raw and transformed rows through the label, which Transform passes through."""
    by_label = {np.float32(row[features.LABEL_KEY][0]): row for row in train_rows}
    return [(by_label[np.float32(out[pp.TRANSFORMED_LABEL_KEY])], out) for out in train_out]


def test_outputs_are_the_declared_names(transformed) -> None:
    _, train_out, _, _, output = transformed
    expected = {pp.transformed_name(f.name) for f in features.FEATURES}
    expected |= {pp.bucket_name(f.name) for f in features.NUMERIC_FEATURES}
    expected |= {pp.CROSS_KEY, pp.TRANSFORMED_LABEL_KEY}
    assert set(output.transformed_feature_spec()) == expected
    assert set(train_out[0]) == expected


def test_label_passes_through(transformed) -> None:
    train_rows, train_out, _, _, _ = transformed
    assert len(train_out) == len(train_rows)
    for raw, out in _by_raw(train_rows, train_out):
        assert out[pp.TRANSFORMED_LABEL_KEY] == np.float32(raw[features.LABEL_KEY][0])


def test_buckets_follow_declared_boundaries(transformed) -> None:
    train_rows, train_out, _, _, _ = transformed
    for raw, out in _by_raw(train_rows, train_out):
        for feature in features.NUMERIC_FEATURES:
            assert out[pp.bucket_name(feature.name)] == expected_bucket(
                feature, raw[feature.name][0]), (feature.name, raw[feature.name][0])
    # The chosen values reach the first, a middle and the last bucket of both features.
    for feature, values in ((features.MOTHER_AGE, AGES), (features.GESTATION_WEEKS, WEEKS)):
        reached = {expected_bucket(feature, v) for v in values}
        assert {0, pp.num_buckets(feature) - 1} <= reached and len(reached) >= 3


def test_z_scores(transformed) -> None:
    train_rows, train_out, _, _, _ = transformed
    for feature in features.NUMERIC_FEATURES:
        values = np.array([out[pp.transformed_name(feature.name)] for out in train_out])
        assert values.dtype == np.float32
        raw = np.array([float(row[feature.name][0]) for row in train_rows])
        n, mean, std = len(raw), raw.mean(), raw.std()
        # tf.Transform's mean and deviation of the positive raw values, at worst float32 sums
        # of n terms, go into float32 z = (x - mean) / std (two roundings per value). A mean
        # off by a relative r moves the z-scores' mean by r * mean / std; each rounding of z
        # moves it by at most u32 times mean |z| <= 1 (their root mean square is 1).
        mean_error = sum_rel(n, EPS32) * abs(mean) / std + 2 * gamma(2, EPS32)
        z = values.astype(np.float64)  # the check's own sums add no float32 error
        assert abs(z.mean()) <= mean_error
        assert z.std() == pytest.approx(
            1.0, abs=std_rel(n, mean, std, EPS32) + 2 * gamma(2, EPS32) + mean_error ** 2)


def test_vocabulary_ids_missing_values_and_oov(transformed) -> None:
    train_rows, train_out, other_rows, other_out, output = transformed
    for feature in features.CATEGORICAL_FEATURES:
        key = pp.transformed_name(feature.name)
        vocabulary = list(feature.vocabulary)  # declared, so ids mean the same in every run
        assert pp.vocabulary_size(feature) == len(vocabulary) + pp.NUM_OOV_BUCKETS
        # Every training value maps to its vocabulary index; blanks to the missing value's.
        for raw, out in _by_raw(train_rows, train_out):
            value = raw[feature.name][0].decode().strip() or feature.missing_value
            assert out[key] == vocabulary.index(value)
        # other_rows: an unseen string, the explicit missing value, an empty string. The last
        # two must be indistinguishable after Transform; the first gets the OOV id.
        ids = sorted(int(out[key]) for out in other_out)
        missing = vocabulary.index(feature.missing_value)
        assert ids == [missing, missing, len(vocabulary)]


def test_cross_is_the_hashed_bucket_pair(transformed) -> None:
    _, train_out, _, _, _ = transformed
    crosses = np.array([out[pp.CROSS_KEY] for out in train_out])
    assert crosses.min() >= 0 and crosses.max() < features.CROSS_HASH_BUCKETS
    age_key, weeks_key = (pp.bucket_name(f.name) for f in pp.CROSSED_FEATURES)
    ages = tf.constant([out[age_key] for out in train_out], tf.int64)
    weeks = tf.constant([out[weeks_key] for out in train_out], tf.int64)
    np.testing.assert_array_equal(crosses, pp.cross_hash(ages, weeks).numpy())
    assert len(set(crosses.tolist())) > 1
