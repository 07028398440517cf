"""The committed schema is exactly what the one feature declaration gives."""
from modules import features
from pipelines import schema


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
