"""The pipeline's wiring, checked without running it."""
import pathlib

import pytest
from google.protobuf import json_format

from modules.hparams import HyperParameters
from pipelines import evaluation, pipeline
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.schema import SCHEMA_FILE
from pipelines.config import (DataConfig, EvaluationConfig, PipelineConfig, TrainingConfig,
                              WarehouseConfig)


def build(tmp_path: pathlib.Path, engines: pipeline.Engines = pipeline.Engines(),
          schema_file: pathlib.Path = SCHEMA_FILE, enable_cache: bool = False,
          data: DataConfig = DataConfig(), **training):
    """The local pipeline as local_runner builds it, in tmp_path."""
    warehouse = WarehouseConfig(database=tmp_path / "natality.duckdb")
    return pipeline.create_pipeline(
        pipeline_name="babyweight-test", pipeline_root=str(tmp_path / "root"),
        example_gen=DuckDBExampleGen(pipeline.input_config(data),
                                     database=warehouse.database),
        data_config=data, reports_dir=tmp_path / "reports", warehouse=warehouse,
        serving_dir=str(tmp_path / "serving"), hyperparameters=HyperParameters(),
        training=TrainingConfig(**training), evaluation=EvaluationConfig(),
        beam_pipeline_args=[], enable_cache=enable_cache, engines=engines,
        schema_file=schema_file)


# Built once per module: building stamps every component's code fingerprint (parsing the
# project's modules), and these tests only read the definitions.
@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """The pipeline with every setting at its default."""
    return build(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """With the Tuner, and a training seed of 1234 (which changes no wiring)."""
    return build(tmp_path_factory.mktemp("tuned"), tune=True, training_seed=1234)


def ids(definition):
    return [component.id for component in definition.components]


def component(definition, component_id):
    return definition.components[ids(definition).index(component_id)]


def test_stages_in_order_and_nothing_learns_before_the_gate(default):
    definition = default
    order = ids(definition)
    assert sorted(order) == sorted([
        "DuckDBExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
        "AnomalyGate", "EdaReport", "Transform", "latest_blessed_model_resolver", "Trainer",
        "Evaluator", "ServingPusher"])
    stages = ["DuckDBExampleGen", "StatisticsGen", "ExampleValidator", "AnomalyGate",
              "Transform", "Trainer", "Evaluator", "ServingPusher"]
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    assert "AnomalyGate" in {node.id for node in component(definition, "Transform").upstream_nodes}
    # The gate reads the statistics too: TFDV lets an empty split pass (tests/test_anomaly_gate.py).
    gate = component(definition, "AnomalyGate")
    assert gate.inputs["statistics"].producer_component_id == "StatisticsGen"


def test_tuner_feeds_the_trainer_when_enabled(tuned, default):
    assert "Tuner" in ids(tuned)
    trainer = component(tuned, "Trainer")
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert "Tuner" not in ids(default)
    assert "hyperparameters" not in component(default, "Trainer").inputs


def test_warm_start_takes_the_last_blessed_model(tmp_path, default):
    trainer = component(build(tmp_path, warm_start=True), "Trainer")
    assert trainer.inputs["base_model"].producer_component_id == "latest_blessed_model_resolver"
    assert "base_model" not in component(default, "Trainer").inputs


def test_evaluator_gates_overall_slice_against_the_baseline(default):
    import tensorflow_model_analysis as tfma

    definition = default
    evaluator = component(definition, "Evaluator")
    assert evaluator.inputs["baseline_model"].producer_component_id == (
        "latest_blessed_model_resolver")
    config = json_format.Parse(evaluator.exec_properties["eval_config"], tfma.EvalConfig())
    (rmse,) = [m for m in config.metrics_specs[0].metrics
               if m.class_name == evaluation.RMSE_CLASS]
    assert not rmse.HasField("threshold")
    (gate,) = rmse.per_slice_thresholds
    assert [s.feature_keys for s in gate.slicing_specs] == [[]]
    assert gate.threshold.value_threshold.upper_bound.value == EvaluationConfig().rmse_upper_bound


def test_trainer_reads_raw_examples_and_transform_writes_no_copy(default):
    definition = default
    transform = component(definition, "Transform")
    assert "transformed_examples" not in transform.outputs
    assert component(definition, "Trainer").inputs["examples"].producer_component_id == (
        "DuckDBExampleGen")


def test_beam_arguments_only_when_they_differ_from_beams_defaults():
    # Any Beam argument makes each TFX Beam component package TFX for remote workers first.
    assert PipelineConfig().beam_pipeline_args() == ()
    assert PipelineConfig(beam_direct_running_mode="multi_processing",
                          beam_direct_num_workers=0).beam_pipeline_args() == (
        "--direct_running_mode=multi_processing", "--direct_num_workers=0")


def test_auto_mode_uses_every_core_from_the_size_where_that_pays(monkeypatch):
    from common.config import PARALLEL_MIN_ROWS

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    auto = PipelineConfig()
    assert auto.beam_direct_running_mode == "auto"
    assert auto.beam_pipeline_args(PARALLEL_MIN_ROWS - 1) == ()
    assert auto.beam_pipeline_args(None) == ()
    assert auto.beam_pipeline_args(PARALLEL_MIN_ROWS) == (
        "--direct_running_mode=multi_threading", "--direct_num_workers=2")
    below = auto.direct_running_choice(PARALLEL_MIN_ROWS - 1)
    assert below[:2] == ("in_memory", 1) and "below" in below[2] and "overlaps" in below[2]
    above = auto.direct_running_choice(PARALLEL_MIN_ROWS)
    assert above[:2] == ("multi_threading", 2) and above[2].startswith("auto:")
    assert "threads rather than processes" in above[2] and "forked" in above[2]
    assert "unknown" in auto.direct_running_choice(None)[2]
    assert PipelineConfig(beam_direct_running_mode="in_memory").direct_running_choice(5)[2] == (
        "set by --beam-direct-running-mode")
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert auto.direct_running_mode(10 * PARALLEL_MIN_ROWS) == ("in_memory", 1)
    assert "one core" in auto.direct_running_choice(10 * PARALLEL_MIN_ROWS)[2]
    assert PipelineConfig(beam_direct_running_mode="in_memory").beam_pipeline_args(
        10 * PARALLEL_MIN_ROWS) == ()


def test_the_training_seed_reaches_the_trainer_and_the_tuner(tuned):
    import json

    from modules import contract

    for component_id in ("Trainer", "Tuner"):
        custom = json.loads(component(tuned, component_id).exec_properties["custom_config"])
        assert custom[contract.SEED_CONFIG_KEY] == 1234


def test_the_trainer_is_given_the_query_example_gen_reads(default):
    """The export records it (modules/export.py), so prediction from the table's own values
    maps them as these examples were (tests/test_training_query.py)."""
    import json

    from modules import contract
    from warehouse import sql

    custom = json.loads(component(default, "Trainer").exec_properties["custom_config"])
    query = custom[contract.TRAINING_QUERY_CONFIG_KEY]
    assert query == sql.base_query()
    splits = json_format.Parse(component(default, "DuckDBExampleGen").exec_properties[
        "input_config"], pipeline.example_gen_pb2.Input()).splits
    assert splits and all(query.strip().rstrip(";") in split.pattern for split in splits)


def test_the_trainer_is_given_the_split_buckets_example_gen_reads(tmp_path):
    """The export records them, so batch prediction's --split is the version's own split
    (tests/test_training_query.py), under split flags other than the defaults too."""
    import json

    from modules import contract

    data = DataConfig(train_buckets=5, eval_buckets=2)
    definition = build(tmp_path, data=data)
    custom = json.loads(component(definition, "Trainer").exec_properties["custom_config"])
    layout = custom[contract.TRAINING_SPLITS_CONFIG_KEY]
    assert layout == data.split_layout() != DataConfig().split_layout()
    splits = json_format.Parse(component(definition, "DuckDBExampleGen").exec_properties[
        "input_config"], pipeline.example_gen_pb2.Input()).splits
    assert sorted(split.name for split in splits) == sorted(layout["split_buckets"])
    for split in splits:
        lo, hi = layout["split_buckets"][split.name]
        modulo = f"ABS(MOD(hashmonth, {layout['hash_buckets']}))"
        assert f"{modulo} >= {lo}" in split.pattern and f"{modulo} < {hi}" in split.pattern


def _eval_splits(definition, component_id: str) -> list:
    args = json_format.Parse(component(definition, component_id).exec_properties["eval_args"],
                             pipeline.trainer_pb2.EvalArgs())
    return list(args.splits)


def test_the_model_is_chosen_on_a_split_the_evaluator_does_not_gate_on(tuned, tmp_path):
    """Early stopping keeps the epoch, and the Tuner the trial, with the best loss on the
    split they validate on: gated on that split, the model's RMSE would be biased low."""
    gated = component(tuned, "Evaluator").exec_properties["example_splits"]
    assert json_format_list(gated) == ["eval"]
    for component_id in ("Trainer", "Tuner"):
        assert _eval_splits(tuned, component_id) == ["test"], component_id

    no_test = DataConfig(train_buckets=8, eval_buckets=2, hash_buckets=10)
    assert "test" not in no_test.split_buckets()
    assert _eval_splits(build(tmp_path, data=no_test), "Trainer") == ["eval"]


def json_format_list(value) -> list:
    """An exec property holding a list, as the component keeps it (a list or its JSON)."""
    import json

    return json.loads(value) if isinstance(value, str) else list(value)
