#!/usr/bin/env python
"""Runs the babyweight pipeline on this machine: LocalDagRunner, Beam DirectRunner, DuckDB.

With no flags it generates the synthetic natality warehouse if it is missing, runs every stage,
and prints where the reports, artifacts and pushed model are. Exit codes: 0 success, 2 the data
failed validation (the anomalies are printed), 1 any other failure.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import List, Optional  # noqa: E402

from pipelines import config, logs  # noqa: E402

log = logging.getLogger("babyweight.local_runner")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_runner.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_flags(parser, config.WarehouseConfig)
    config.add_flags(parser, config.DataConfig)
    config.add_flags(parser, config.PipelineConfig)
    parser.add_argument("--verbose", action="store_true", help="Show TFX's and Beam's own logs.")
    return parser.parse_args(argv)


def ensure_warehouse(warehouse: config.WarehouseConfig) -> None:
    """Generates the synthetic natality table on first use."""
    if warehouse.source or pathlib.Path(warehouse.database).exists():
        return
    from warehouse import generator

    log.info("No warehouse at %s: generating %d synthetic natality rows (seed %d)",
             warehouse.database, warehouse.generate_rows, warehouse.seed)
    report = generator.generate(pathlib.Path(warehouse.database), rows=warehouse.generate_rows,
                                seed=warehouse.seed)
    log.info("Generated; irreducible error (RMSE floor) of the query's data: %.3f lb",
             report.irreducible_rmse_query)


def run(warehouse: config.WarehouseConfig, data: config.DataConfig,
        settings: config.PipelineConfig) -> int:
    """Builds and runs the pipeline; returns the process exit code."""
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines import pipeline
    from pipelines.errors import DataValidationError
    from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen

    ensure_warehouse(warehouse)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    reports_dir = pathlib.Path(settings.reports_dir) / stamp
    reports_dir.mkdir(parents=True, exist_ok=True)
    pathlib.Path(settings.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    example_gen = DuckDBExampleGen(input_config=pipeline.input_config(data),
                                   database=warehouse.database, source=warehouse.source)
    definition = pipeline.create_pipeline(
        pipeline_name=config.PIPELINE_NAME,
        pipeline_root=str(settings.pipeline_root),
        example_gen=example_gen,
        reports_dir=reports_dir,
        warehouse=warehouse,
        beam_pipeline_args=settings.beam_pipeline_args(),
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(settings.metadata_path)),
    )
    started = time.monotonic()
    log.info("Running %d components: %s", len(definition.components),
             ", ".join(c.id for c in definition.components))
    try:
        LocalDagRunner().run(definition)
    except DataValidationError as error:
        log.error("%s", error)
        log.error("The run stopped before training. Reports: %s", reports_dir)
        return 2
    log.info("Pipeline finished in %.0f s", time.monotonic() - started)
    log.info("Reports:   %s", reports_dir)
    log.info("Artifacts: %s", settings.pipeline_root)
    log.info("Metadata:  %s", settings.metadata_path)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logs.setup(args.verbose)
    return run(config.from_flags(config.WarehouseConfig, args),
               config.from_flags(config.DataConfig, args),
               config.from_flags(config.PipelineConfig, args))


if __name__ == "__main__":
    sys.exit(main())
