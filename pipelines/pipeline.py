"""The babyweight pipeline definition: one wiring for the local and the Google Cloud runs.

Runners differ only in what they pass in: the ExampleGen (DuckDB locally, BigQuery on Google
Cloud, both running the same .sql file), the paths, the Beam arguments, and `Engines`: which
implementation runs the Trainer, Tuner and push stages (in-process locally, Vertex AI on Google
Cloud) with the settings those engines read.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, Union

from tfx.components import ExampleValidator, Trainer, Tuner
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.resolver import Resolver, ResolverStrategy
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, range_config_pb2, trainer_pb2, transform_pb2
from tfx.types import Channel
from tfx.types.standard_artifacts import Model, ModelBlessing

from pipelines import fingerprints
from pipelines.baseline import BASELINE_NOTE, PresentBlessedModelStrategy
from pipelines.components.anomaly_gate import AnomalyGate
from pipelines.components.eda_report import EdaReport
from pipelines.components.serving_pusher import ServingPusher
from pipelines.config import DataConfig, EvaluationConfig, TrainingConfig, WarehouseConfig
from pipelines.evaluation import eval_config
from modules import contract
from modules.hparams import HyperParameters
from pipelines.schema import SCHEMA_FILE
from pipelines.speedups import batched_reads as batched_reads_lib
from reports import EDA_TEMPLATE
from warehouse import sql

ANOMALIES_REPORT = "anomalies.txt"
EDA_REPORT = "eda.html"
PUSH_REPORT = "push.json"
# The functions TFX components load, by dotted name: the code is installed with the project, so
# nothing is uploaded when the pipeline is compiled for Vertex AI.
PREPROCESSING_FN = "modules.preprocessing.preprocessing_fn"
RUN_FN = "modules.model.run_fn"
TUNER_FN = "modules.model.tuner_fn"
# The Evaluator's extension module: slices whole batches instead of single examples.
EVALUATOR_MODULE = "pipelines.speedups.tfma_slicing"


PUSHER_ID = "ServingPusher"


@dataclasses.dataclass(frozen=True)
class PushChannels:
    """What a push stage may read: the model, its judgement, and the data it was trained on
    (a model card is written from these)."""

    model: Channel
    blessing: Channel
    evaluation: Channel
    statistics: Channel
    examples: Channel
    best_hyperparameters: Optional[Channel] = None


# Builds the push stage (its node id is PUSHER_ID on every runner, so a run reads the same
# wherever it ran).
PusherFactory = Callable[[PushChannels], List[BaseNode]]


@dataclasses.dataclass(frozen=True)
class Engines:
    """Where the model stages run; the defaults are the local run's.

    Another runner swaps the implementation of a stage, never the stage: the Vertex AI
    Trainer/Tuner are subclasses of the stock ones that send the same run_fn/tuner_fn to
    Vertex AI Training, and their `*_custom_config` (merged into the custom_config the module
    code reads) carries the job settings TFX's extensions look for.
    """

    trainer: Type[Trainer] = Trainer
    tuner: Type[Tuner] = Tuner
    trainer_custom_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tuner_custom_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # None: the local ServingPusher into `serving_dir`.
    pushers: Optional[PusherFactory] = None
    # StatisticsGen, Transform and the Evaluator read the TFRecords a batch at a time
    # (pipelines/speedups/batched_reads.py); off on Dataflow, where Beam's own reader splits big files
    # across workers.
    batched_reads: bool = True
    # Resolves the Evaluator's baseline (and a warm start's model). Locally, the newest blessed
    # model whose files exist (pipelines/baseline.py); Vertex AI compiles only TFX's own.
    baseline_strategy: Type[ResolverStrategy] = PresentBlessedModelStrategy


def input_config(data: DataConfig) -> example_gen_pb2.Input:
    """One ExampleGen input split per data split, each the base query restricted to its buckets
    (the same text the Trainer is given to record in the export: model_components)."""
    queries: Dict[str, str] = sql.split_queries(
        sql.base_query(), data.split_buckets(), data.hash_buckets, data.sample_per_mille)
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=statement)
        for name, statement in queries.items()
    ])


def range_config(data: DataConfig) -> range_config_pb2.RangeConfig:
    """The spans a run reads, as TFX's RangeConfig (resolved at run time by the span driver)."""
    first, last, newest = data.span_range()
    if last:
        return range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
            start_span_number=first, end_span_number=last))
    return range_config_pb2.RangeConfig(rolling_range=range_config_pb2.RollingRange(
        start_span_number=first, num_spans=newest))


@dataclasses.dataclass(frozen=True)
class DataStages:
    """The data stages by name: what the model stages and the cache stamps read from."""

    example_gen: BaseNode
    statistics_gen: BaseNode
    schema_importer: BaseNode
    example_validator: BaseNode
    anomaly_gate: BaseNode
    # Written from a local warehouse only.
    eda_report: Optional[BaseNode] = None

    def components(self) -> List[BaseNode]:
        stages = [self.example_gen, self.statistics_gen, self.schema_importer,
                  self.example_validator, self.anomaly_gate, self.eda_report]
        return [stage for stage in stages if stage is not None]


def data_components(example_gen: BaseNode, reports_dir: pathlib.Path,
                    warehouse: Optional[WarehouseConfig] = None,
                    schema_file: pathlib.Path = SCHEMA_FILE,
                    batched_reads: bool = True) -> DataStages:
    """Statistics, the curated schema, validation, and the gate that stops on anomalies.

    With a local `warehouse`, the run also writes the exploratory-analysis report from it.
    """
    statistics_gen_class, _, _ = batched_reads_lib.component_classes(batched_reads)
    statistics_gen = statistics_gen_class(examples=example_gen.outputs["examples"])
    schema_importer = ImportSchemaGen(schema_file=str(schema_file))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"])
    anomaly_gate = AnomalyGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        report_path=str(pathlib.Path(reports_dir) / ANOMALIES_REPORT))
    eda_report = None
    if warehouse is not None:
        eda_report = EdaReport(
            statistics=statistics_gen.outputs["statistics"],
            database=str(warehouse.database), source=warehouse.source or "",
            report_path=str(pathlib.Path(reports_dir) / EDA_REPORT))
    return DataStages(example_gen, statistics_gen, schema_importer, example_validator,
                      anomaly_gate, eda_report)


def transform_component(data: DataStages, batched_reads: bool) -> BaseNode:
    """Transform, analyzing the training split once the data passed validation."""
    _, transform_class, _ = batched_reads_lib.component_classes(batched_reads)
    transform = transform_class(
        examples=data.example_gen.outputs["examples"],
        schema=data.schema_importer.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"]),
        # Transform only analyzes (the z-scores' means and variances): the Trainer applies the
        # graph as it reads the raw examples, the same graph serving applies, so no transformed
        # copy of the data is written. StatisticsGen already describes the raw data the gate
        # checked, so Transform's own pre- and post-transform statistics are off too: three
        # full passes over the data fewer (README "Pipeline speed").
        materialize=False,
        disable_statistics=True,
        # The analyzer cache only pays when a later run feeds it back in (analyzer_cache),
        # which this pipeline does not: the component cache reuses a whole unchanged run.
        disable_analyzer_cache=True)
    # Nothing that learns from the data may run before the data passed validation.
    transform.add_upstream_node(data.anomaly_gate)
    return transform


def push_components(trainer: BaseNode, evaluator: BaseNode, reports_dir: pathlib.Path,
                    serving_dir: str, engines: Engines, data: Optional[DataStages] = None,
                    tuner: Optional[BaseNode] = None) -> List[BaseNode]:
    """The push stage: the local ServingPusher, or the runner's own (engines.pushers)."""
    if engines.pushers is not None:
        if data is None:
            raise ValueError("a runner's own push stage needs the data stages")
        return engines.pushers(PushChannels(
            model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"],
            evaluation=evaluator.outputs["evaluation"],
            statistics=data.statistics_gen.outputs["statistics"],
            examples=data.example_gen.outputs["examples"],
            best_hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None))
    return [ServingPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"],
        serving_dir=serving_dir,
        report_path=str(pathlib.Path(reports_dir) / PUSH_REPORT))]


def model_components(
    *,
    data: DataStages,
    data_config: DataConfig,
    reports_dir: pathlib.Path,
    serving_dir: str,
    hyperparameters: HyperParameters,
    training: TrainingConfig,
    evaluation: EvaluationConfig,
    engines: Engines = Engines(),
) -> List[BaseNode]:
    """Transform, (Tuner,) Trainer, the baseline resolver, Evaluator and the pusher;
    `data_config` is the one the ExampleGen's input_config was built from."""
    examples = data.example_gen.outputs["examples"]
    transform = transform_component(data, engines.batched_reads)
    custom_config = {contract.HYPERPARAMETERS_CONFIG_KEY: hyperparameters.to_dict(),
                     contract.MAX_TRIALS_CONFIG_KEY: training.tuner_max_trials,
                     contract.CACHE_CONFIG_KEY: training.cache_examples,
                     contract.CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY:
                         training.cache_examples_max_memory_fraction,
                     contract.SEED_CONFIG_KEY: training.training_seed}
    components: List[BaseNode] = [transform]
    if data_config.selection_split() == "eval":
        logging.getLogger("babyweight.pipeline").warning(
            "The splits leave no test split: the model is chosen (early stopping, the Tuner) "
            "on the eval split the Evaluator gates on, so its eval RMSE is biased low; give "
            "fewer buckets to train and eval (--train-buckets, --eval-buckets) for a test split.")
    tuner = None
    if training.tune:
        tuner = engines.tuner(
            tuner_fn=TUNER_FN,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            train_args=trainer_pb2.TrainArgs(num_steps=training.tuner_train_steps),
            eval_args=trainer_pb2.EvalArgs(
                splits=[data_config.selection_split()],
                num_steps=max(training.eval_steps, contract.DEFAULT_TUNER_EVAL_STEPS)),
            custom_config={**custom_config, **engines.tuner_custom_config})
        components.append(tuner)
    strategy = engines.baseline_strategy
    latest_blessed = Resolver(
        strategy_class=strategy,
        config=({"note_path": str(pathlib.Path(reports_dir) / BASELINE_NOTE)}
                if issubclass(strategy, PresentBlessedModelStrategy) else None),
        model=Channel(type=Model),
        model_blessing=Channel(type=ModelBlessing)).with_id("latest_blessed_model_resolver")
    trainer = engines.trainer(
        run_fn=RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=data.schema_importer.outputs["schema"],
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        base_model=latest_blessed.outputs["model"] if training.warm_start else None,
        train_args=trainer_pb2.TrainArgs(),
        # Validated on the selection split, never on the split the Evaluator gates on.
        eval_args=trainer_pb2.EvalArgs(splits=[data_config.selection_split()],
                                       num_steps=training.eval_steps or None),
        custom_config={**custom_config, **engines.trainer_custom_config,
                       # The text input_config's split queries wrap (both read it from the
                       # file as the DAG is built), and their buckets: the export records both.
                       contract.TRAINING_QUERY_CONFIG_KEY: sql.base_query(),
                       contract.TRAINING_SPLITS_CONFIG_KEY: data_config.split_layout()})
    _, _, evaluator_class = batched_reads_lib.component_classes(engines.batched_reads)
    evaluator = evaluator_class(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"],
        eval_config=eval_config(evaluation),
        example_splits=["eval"],
        module_path=EVALUATOR_MODULE)
    pushers = push_components(trainer, evaluator, reports_dir, serving_dir, engines, data, tuner)
    return components + [latest_blessed, trainer, evaluator, *pushers]


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    example_gen: BaseNode,
    data_config: DataConfig,
    reports_dir: pathlib.Path,
    warehouse: Optional[WarehouseConfig],
    serving_dir: str,
    hyperparameters: HyperParameters,
    training: TrainingConfig,
    evaluation: EvaluationConfig,
    beam_pipeline_args: Sequence[str],
    enable_cache: bool,
    metadata_connection_config=None,
    engines: Engines = Engines(),
    schema_file: Union[str, pathlib.Path] = SCHEMA_FILE,
    project_dir: Optional[str] = None,
) -> tfx_pipeline.Pipeline:
    """The whole pipeline, from the warehouse query to the pushed model; `example_gen` reads
    the splits of `data_config` (input_config), which the export records.

    `schema_file` is this checkout's file; the components read their copy under `project_dir`
    where they run (the image's copy of the project in a container; None: this checkout).
    """
    data = data_components(example_gen, reports_dir, warehouse,
                           pathlib.Path(fingerprints.runtime_path(schema_file, project_dir)),
                           batched_reads=engines.batched_reads)
    components = data.components() + model_components(
        data=data, data_config=data_config, reports_dir=reports_dir, serving_dir=serving_dir,
        hyperparameters=hyperparameters, training=training, evaluation=evaluation,
        engines=engines)
    # Every component's cache key covers the project code it runs and the files it reads
    # (pipelines/fingerprints.py): an edited module or schema is never served from the cache.
    reads = {data.schema_importer.id: [schema_file], example_gen.id: [sql.QUERY_FILE]}
    if data.eda_report is not None:
        reads[data.eda_report.id] = [EDA_TEMPLATE]
    fingerprints.stamp(components, reads=reads)
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
