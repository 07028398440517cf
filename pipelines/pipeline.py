"""The babyweight pipeline definition: one wiring for the local and the Google Cloud runs.

Runners differ only in what they pass in: the ExampleGen (DuckDB locally, BigQuery on Google
Cloud, both running the same .sql file), the paths, and the Beam arguments.
"""
from __future__ import annotations

import pathlib
from typing import Dict, List, Optional, Sequence

from tfx.components import ExampleValidator, StatisticsGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base.base_node import BaseNode
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2

from pipelines.components.anomaly_gate import AnomalyGate
from pipelines.components.eda_report import EdaReport
from pipelines.config import DataConfig, WarehouseConfig
from pipelines.schema import SCHEMA_FILE
from warehouse import sql

ANOMALIES_REPORT = "anomalies.txt"
EDA_REPORT = "eda.html"


def input_config(data: DataConfig, query: Optional[str] = None) -> example_gen_pb2.Input:
    """One ExampleGen input split per data split, each the base query restricted to its buckets."""
    queries: Dict[str, str] = sql.split_queries(
        query if query is not None else sql.base_query(), data.split_buckets(),
        data.hash_buckets, data.sample_per_mille)
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=statement)
        for name, statement in queries.items()
    ])


def data_components(example_gen: BaseNode, reports_dir: pathlib.Path,
                    warehouse: Optional[WarehouseConfig] = None,
                    schema_file: pathlib.Path = SCHEMA_FILE) -> List[BaseNode]:
    """Statistics, the curated schema, validation, and the gate that stops on anomalies.

    With a local `warehouse`, the run also writes the exploratory-analysis report from it.
    """
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_importer = ImportSchemaGen(schema_file=str(schema_file))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"])
    anomaly_gate = AnomalyGate(
        anomalies=example_validator.outputs["anomalies"],
        report_path=str(pathlib.Path(reports_dir) / ANOMALIES_REPORT))
    components = [example_gen, statistics_gen, schema_importer, example_validator, anomaly_gate]
    if warehouse is not None:
        components.append(EdaReport(
            statistics=statistics_gen.outputs["statistics"],
            database=str(warehouse.database), source=warehouse.source or "",
            report_path=str(pathlib.Path(reports_dir) / EDA_REPORT)))
    return components


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    example_gen: BaseNode,
    reports_dir: pathlib.Path,
    warehouse: Optional[WarehouseConfig],
    beam_pipeline_args: Sequence[str],
    enable_cache: bool,
    metadata_connection_config=None,
) -> tfx_pipeline.Pipeline:
    """The pipeline, from the warehouse query to the validated data."""
    components = data_components(example_gen, reports_dir, warehouse)
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
