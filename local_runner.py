#!/usr/bin/env python
"""Runs the babyweight pipeline on this machine: LocalDagRunner, Beam DirectRunner, DuckDB.

With no flags it generates the synthetic natality warehouse if it is missing, runs every stage,
and prints where the reports, artifacts and pushed model are. Exit codes: 0 success (a blessed
model is serving), 2 the data failed validation (the anomalies are printed), 3 the model was not
blessed (nothing pushed; the reasons are printed), 1 any other failure.
"""
from __future__ import annotations

import argparse  # noqa: E402
import datetime  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, List, Optional, Tuple  # noqa: E402

from common import logs  # noqa: E402
from modules.hparams import HyperParameters  # noqa: E402
from pipelines import config  # noqa: E402

log = logging.getLogger("babyweight.local_runner")
# A run's reports directory: its start, to the microsecond (sortable).
REPORTS_DIR_FORMAT = "%Y%m%d-%H%M%S-%f"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_runner.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_flags(parser, config.WarehouseConfig)
    config.add_flags(parser, config.DataConfig)
    config.add_flags(parser, config.PipelineConfig)
    config.add_flags(parser, config.TrainingConfig)
    config.add_flags(parser, HyperParameters)
    config.add_flags(parser, config.EvaluationConfig)
    parser.add_argument("--verbose", action="store_true", help="Show TFX's and Beam's own logs.")
    return parser.parse_args(argv)


def output_path_problem(settings: config.PipelineConfig,
                        warehouse: Optional[config.WarehouseConfig] = None) -> Optional[str]:
    """Why a run could not write one of its outputs, naming the flag, or None. The --database
    file is one when the run would generate it (missing, no --source)."""
    from common.files import unusable_dir, unusable_file

    serving = pathlib.Path(settings.serving_dir)
    database = None if warehouse is None or warehouse.source else \
        pathlib.Path(warehouse.database)
    if database is not None and not database.is_file():
        problem = unusable_file(database)
        if problem:
            return f"--database {database}: {problem}"
    checks = (("--pipeline-root", settings.pipeline_root, unusable_dir),
              ("--metadata-path", settings.metadata_path, unusable_file),
              ("--reports-dir", settings.reports_dir, unusable_dir),
              ("--serving-dir", serving, unusable_dir))
    for flag, path, check in checks:
        # The serving directory's push lock lies beside it, in its parent.
        problem = check(path) or (unusable_dir(serving.parent) if path is serving else None)
        if problem:
            return f"{flag} {path}: {problem}"
    return None


def generation(warehouse: config.WarehouseConfig) -> Tuple[int, int]:
    """(rows, seed) the synthetic warehouse is generated with: the flags, else the defaults."""
    from warehouse import generator

    rows, seed = warehouse.generate_rows, warehouse.seed
    return (generator.DEFAULT_ROWS if rows is None else rows,
            generator.DEFAULT_SEED if seed is None else seed)


def warehouse_problem(warehouse: config.WarehouseConfig) -> Optional[str]:
    """Why --generate-rows/--seed cannot hold for the data the run would read, or None: an
    existing file is never replaced by a run (runs trained on it would no longer match their
    data), nor used as if it held what the flags asked for. They are checked against what the
    generator made; months `warehouse.months` appended since are said, never counted as
    generated rows (the run logs them)."""
    given = {flag: value for flag, value in (("--generate-rows", warehouse.generate_rows),
                                            ("--seed", warehouse.seed)) if value is not None}
    database = pathlib.Path(warehouse.database)
    if not given or not (warehouse.source or database.exists()):
        return None
    flags = " and ".join(given)
    if warehouse.source:
        return (f"{flags} do not apply with --source: nothing is generated, "
                f"{warehouse.source} is read")
    import duckdb

    from warehouse import generator

    try:
        report = generator.read_report(database)
    except duckdb.Error:
        return None  # not a DuckDB file the pre-flight check can read: it says so
    if report is None:
        return (f"{flags} do not apply to {database}: it was not made by the generator "
                f"(no {generator.INFO_TABLE_NAME} table)")
    rows = report.rows if warehouse.generate_rows is None else warehouse.generate_rows
    seed = report.seed if warehouse.seed is None else warehouse.seed
    if (rows, seed) == (report.rows, report.seed):
        return None
    return (f"{database} holds {report.description()}, not "
            f"the {rows:,} rows with seed {seed} asked for; to regenerate it: "
            f"python -m warehouse.generator --out {database} --rows {rows} --seed {seed} "
            "--overwrite (or delete the file), or pass --database for a new file")


def ensure_warehouse(warehouse: config.WarehouseConfig) -> None:
    """Generates the synthetic natality table on first use."""
    if warehouse.source or pathlib.Path(warehouse.database).exists():
        return
    from warehouse import generator

    rows, seed = generation(warehouse)
    log.info("No warehouse at %s: generating %d synthetic natality rows (seed %d)",
             warehouse.database, rows, seed)
    report = generator.generate(pathlib.Path(warehouse.database), rows=rows, seed=seed)
    log.info("Generated; irreducible error (RMSE floor) of the query's data: %.3f lb",
             report.irreducible_rmse_query)


def run(warehouse: config.WarehouseConfig, data: config.DataConfig,
        settings: config.PipelineConfig, training: config.TrainingConfig,
        hyperparameters: HyperParameters, evaluation: config.EvaluationConfig) -> int:
    """Builds and runs the pipeline; returns the process exit code."""
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines import atomic_push, dead_runs, pipeline
    from pipelines import speedups
    from common.errors import DataValidationError
    from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen

    ensure_warehouse(warehouse)
    rows = usable_rows(warehouse)
    if rows is None:
        return 2
    mode, workers, why = settings.direct_running_choice(rows)
    log.info("Beam: %s with %d worker%s (%s)", mode, workers, "" if workers == 1 else "s", why)
    beam_args = settings.beam_pipeline_args(rows)
    reports_dir = new_reports_dir(pathlib.Path(settings.reports_dir))
    pathlib.Path(settings.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    example_gen = DuckDBExampleGen(input_config=pipeline.input_config(data),
                                   database=warehouse.database, source=warehouse.source,
                                   range_config=pipeline.range_config(data),
                                   span_settings=data.split_layout())
    definition = pipeline.create_pipeline(
        pipeline_name=config.PIPELINE_NAME,
        pipeline_root=str(settings.pipeline_root),
        example_gen=example_gen,
        data_config=data,
        reports_dir=reports_dir,
        warehouse=warehouse,
        serving_dir=str(settings.serving_dir),
        hyperparameters=hyperparameters,
        training=training,
        evaluation=evaluation,
        beam_pipeline_args=beam_args,
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(settings.metadata_path)),
    )
    started = time.monotonic()
    log.info("Running %d components: %s", len(definition.components),
             ", ".join(c.id for c in definition.components))
    # The speed-ups that patch libraries for the whole process (pipelines/speedups/): on for
    # the run only, so nothing else in this process sees them.
    with speedups.enabled(beam_args), dead_runs.live_run(pathlib.Path(settings.metadata_path)):
        atomic_push.clean_up_dead_pushes(pathlib.Path(settings.serving_dir))
        try:
            named_run(LocalDagRunner, run_id_of(reports_dir)).run(definition)
            note_missing_baseline(reports_dir)
        except DataValidationError as error:
            log.error("%s", error)
            log.error("The run stopped before training. Reports: %s", reports_dir)
            return 2
        except atomic_push.PushError as error:
            log.error("The push failed: %s", error)
            return 1
        finally:
            publish_reports(settings, reports_dir, run_id_of(reports_dir))
    log.info("Pipeline finished in %.0f s", time.monotonic() - started)
    outcome = report_outcome(reports_dir / pipeline.PUSH_REPORT, warehouse)
    log.info("Reports:   %s", reports_dir)
    log.info("Artifacts: %s", settings.pipeline_root)
    log.info("Metadata:  %s", settings.metadata_path)
    log.info("Serving:   %s", settings.serving_dir)
    return outcome


def usable_rows(warehouse: config.WarehouseConfig) -> Optional[int]:
    """The pre-flight check of the data's columns, types and rows, before any component runs:
    the data's rows, or None when it failed."""
    from common.errors import DataValidationError
    from warehouse import generator, preflight, sql

    try:
        rows = preflight.check(pathlib.Path(warehouse.database), warehouse.source,
                               sql.base_query())
    except DataValidationError as error:
        log.error("%s", error)
        log.error("Nothing ran: the data failed its pre-flight check.")
        return None
    report = None if warehouse.source else \
        generator.read_report(pathlib.Path(warehouse.database))
    appended = f" ({report.description()})" if report and report.appended_months else ""
    log.info("Data: %s, %d rows%s", warehouse.source or warehouse.database, rows, appended)
    return rows


def new_reports_dir(root: pathlib.Path) -> pathlib.Path:
    """The run's own reports directory, named by its start to the microsecond (sortable).

    Created with exist_ok=False, so two runs started at the same moment never share one.
    """
    while True:
        path = root / datetime.datetime.now().strftime(REPORTS_DIR_FORMAT)
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            time.sleep(1e-3)


def run_id_of(reports_dir: pathlib.Path) -> str:
    """The run's name in ML Metadata: its reports directory's start time, in the ISO form TFX
    gives run ids. Chosen by the runner, so that the run finds its own record, not that of
    another run on the same store (the reports directory is made exclusively: unique)."""
    return datetime.datetime.strptime(reports_dir.name, REPORTS_DIR_FORMAT).isoformat()


def named_run(runner_class: type, run_id: str) -> Any:
    """A `runner_class` (LocalDagRunner) whose runs are named `run_id` in ML Metadata: by
    itself it names each run by the clock, which could not tell it from a concurrent run's.

    Its public `run` compiles the pipeline and hands the IR to `run_with_ir`, which names the
    run only where the IR leaves the name a runtime parameter: here it no longer does."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    class Named(runner_class):  # type: ignore[misc, valid-type]
        def run_with_ir(self, pipeline: Any, *args: Any, **kwargs: Any) -> Any:
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline, *args, **kwargs)

    return Named()


def publish_reports(settings: config.PipelineConfig, reports_dir: pathlib.Path,
                    run_id: str) -> None:
    """The run's browser report (of run `run_id`, never the newest of several runs at once)
    and the index of all runs, whatever the run's outcome."""
    try:
        import reports

        published = reports.publish(settings.metadata_path, pipeline_root=settings.pipeline_root,
                                    run_id=run_id, out_dir=settings.reports_dir,
                                    run_reports_dir=reports_dir)
        if published.data_note:
            log.warning("%s", published.data_note)
        log.info("Report:    %s", published.run_page.resolve().as_uri())
        log.info("All runs:  %s", published.index.resolve().as_uri())
    except Exception as error:  # noqa: BLE001 - a report must never change the run's outcome
        log.warning("Could not write the run's report: %s", error)


def note_missing_baseline(reports_dir: pathlib.Path) -> None:
    """A last blessed model passed over as baseline because its files are gone
    (pipelines/baseline.py) is said in the push decision, not only in the run's log."""
    import json

    from common.files import write_atomically
    from pipelines import pipeline

    note_path, push_path = reports_dir / pipeline.BASELINE_NOTE, reports_dir / pipeline.PUSH_REPORT
    if not (note_path.exists() and push_path.exists()):
        return
    note, decision = json.loads(note_path.read_text()), json.loads(push_path.read_text())
    decision["baseline_missing"] = note["missing"]
    decision["message"] = f"{decision['message']} Warning: {note['message']}."
    write_atomically(push_path, json.dumps(decision, indent=2))


def _floor(database: pathlib.Path) -> Optional[Any]:
    """The generator's facts (a GeneratorReport) for the outcome's log line, not waited for:
    the model is already pushed, and a writer holding the file must not turn a finished run
    into a failure."""
    from common.errors import WarehouseBusyError
    from warehouse import generator

    try:
        return generator.read_report(database, wait=0)
    except WarehouseBusyError as error:
        log.warning("The data's irreducible error is not quoted: %s", error)
        return None


def report_outcome(push_report: pathlib.Path, warehouse: config.WarehouseConfig) -> int:
    """Logs the model's quality and the push decision; 3 when the model was not blessed."""
    import json

    from warehouse import generator

    if not push_report.exists():
        log.warning("No push decision was recorded (%s missing)", push_report)
        return 1
    decision = json.loads(push_report.read_text())
    floor = None if warehouse.source else _floor(pathlib.Path(warehouse.database))
    rmse = decision.get("eval_rmse")
    if rmse is not None:
        line = f"Eval RMSE {rmse:.4f} lb, MAE {decision['eval_mae']:.4f} lb"
        if decision.get("baseline_rmse") is not None:
            line += f" (last blessed model: {decision['baseline_rmse']:.4f})"
        if floor is not None:
            line += (f"; irreducible error of the data {floor.irreducible_rmse_query:.4f} "
                     f"({100 * (rmse / floor.irreducible_rmse_query - 1):+.1f}%)")
        log.info("%s", line)
    for reason in decision.get("reasons", []):
        log.info("  %s", reason)
    # Loud when the model was judged without the last blessed model: its files were gone.
    log.log(logging.WARNING if decision.get("baseline_missing") else logging.INFO, "%s",
            decision["message"])
    return 0 if decision["blessed"] else 3


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logs.setup(args.verbose)
    data = config.from_flags(config.DataConfig, args)
    try:
        data.split_buckets()  # the split and span flags, checked before anything is built
        data.span_range()
    except ValueError as error:
        print(f"local_runner.py: error: {error}", file=sys.stderr)
        return 2
    warehouse = config.from_flags(config.WarehouseConfig, args)
    settings = config.from_flags(config.PipelineConfig, args)
    from common.errors import WarehouseBusyError

    try:  # a writer holding the file past a reader's wait, at any step that reads it
        problem = output_path_problem(settings, warehouse) or warehouse_problem(warehouse)
        if problem:
            print(f"local_runner.py: error: {problem}", file=sys.stderr)
            return 2
        return run(warehouse, data, settings,
                   config.from_flags(config.TrainingConfig, args),
                   config.from_flags(HyperParameters, args),
                   config.from_flags(config.EvaluationConfig, args))
    except WarehouseBusyError as error:  # Beam may add a line naming its step: the first
        print(f"local_runner.py: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
