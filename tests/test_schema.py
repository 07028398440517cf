"""The committed schema is exactly what the one feature declaration gives."""
import pytest

from modules import features
from pipelines import schema
from tests import unreadable_data


def test_committed_schema_matches_the_feature_declaration():
    assert schema.SCHEMA_FILE.read_text() == schema.render(schema.curated_schema()), (
        "schema/schema.pbtxt is stale: run `python -m pipelines.schema write`")


def test_schema_domains_come_from_features():
    loaded = schema.load()
    domains = {d.name: list(d.value) for d in loaded.string_domain}
    for feature in features.CATEGORICAL_FEATURES:
        assert domains[feature.name] == list(feature.vocabulary)
    by_name = {f.name: f for f in loaded.feature}
    for feature in features.NUMERIC_FEATURES:
        assert by_name[feature.name].int_domain.min == feature.min_value
        assert by_name[feature.name].int_domain.max == feature.max_value
    assert schema.SERVING in by_name[features.LABEL_KEY].not_in_environment


def test_infer_command_writes_a_reviewable_schema(small_warehouse, tmp_path):
    out = tmp_path / "inferred.pbtxt"
    assert schema.main(["infer", "--database", str(small_warehouse), "--out", str(out)]) == 0
    inferred = schema.load(out)
    names = {f.name for f in inferred.feature}
    assert {features.LABEL_KEY, features.SPLIT_KEY, *features.FEATURE_NAMES} <= names
    domains = {d.name: set(d.value) for d in inferred.string_domain}
    assert domains["is_male"] == set(features.IS_MALE.vocabulary)


@pytest.mark.parametrize("case", sorted(unreadable_data.CASES))
def test_infer_names_data_it_cannot_read_in_one_line(case, tmp_path, capsys):
    flags = unreadable_data.flags(case, tmp_path)
    out = tmp_path / "inferred.pbtxt"
    assert schema.main(["infer", *flags, "--out", str(out)]) == 2
    unreadable_data.assert_named_in_one_line(capsys.readouterr().err, flags, case)
    assert not out.exists()


def test_write_creates_the_directory_of_out(tmp_path, capsys):
    out = tmp_path / "new" / "dir" / "schema.pbtxt"
    assert schema.main(["write", "--out", str(out)]) == 0
    assert out.read_text() == schema.SCHEMA_FILE.read_text()
    assert schema.main(["write", "--out", str(tmp_path / "new")]) == 2  # a directory
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "new") in err


def test_monitoring_thresholds_come_from_features():
    by_name = {f.name: f for f in schema.load().feature}
    for feature in features.CATEGORICAL_FEATURES:
        written = by_name[feature.name]
        assert written.skew_comparator.infinity_norm.threshold == feature.skew_threshold
        assert written.drift_comparator.infinity_norm.threshold == feature.drift_threshold
    for feature in features.NUMERIC_FEATURES:
        written = by_name[feature.name]
        assert (written.skew_comparator.jensen_shannon_divergence.threshold
                == feature.skew_threshold)
        assert (written.drift_comparator.jensen_shannon_divergence.threshold
                == feature.drift_threshold)


def test_a_split_with_too_few_examples_is_an_anomaly():
    """What stops a run on Google Cloud, where BigQueryExampleGen writes small splits too."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    def dataset_anomaly(examples: int):
        statistics = statistics_pb2.DatasetFeatureStatisticsList()
        statistics.datasets.add(num_examples=examples)
        return tfdv.validate_statistics(statistics, schema.curated_schema())

    few = dataset_anomaly(schema.MIN_EXAMPLES_PER_SPLIT - 1)
    assert [r.short_description for r in few.dataset_anomaly_info.reason] == [
        "Low num examples in dataset."]
    assert not dataset_anomaly(schema.MIN_EXAMPLES_PER_SPLIT).HasField("dataset_anomaly_info")
