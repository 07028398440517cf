"""The command line: rebuild any run's report, the index, or a comparison from ML Metadata."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import sys
from typing import List, Optional

from common import logs
from common.config import PipelineConfig, add_flags, from_flags, setting

DEFAULTS = PipelineConfig()


@dataclasses.dataclass(frozen=True)
class ReportsSettings:
    """Which store's runs every command reads, and where it writes their pages."""

    metadata_path: pathlib.Path = setting(DEFAULTS.metadata_path,
                                          "The pipeline's ML Metadata store.", metavar="SQLITE")
    pipeline_root: Optional[pathlib.Path] = setting(
        None, "Only runs whose artifacts are under this directory (default: every run in the "
        "store).", metavar="DIR")
    out: pathlib.Path = setting(DEFAULTS.reports_dir, "Reports directory: index.html here, a "
                                "run's page beside its other reports.", metavar="DIR")
    warehouse: bool = setting(True, "Query the warehouse for the mean weight per value; "
                              "--no-warehouse: do not.")
    verbose: bool = setting(False, "Log what is read and written.")


DESCRIPTION = """\
Analyst reports of babyweight pipeline runs, as self-contained HTML pages that open from disk
with no network access: the data (train vs eval per feature, mean weight per value), the
anomalies, the model's RMSE/MAE overall and per slice beside the last blessed model, the
blessing decision, and the run's facts (sizes, hyperparameters, timings, push, TensorBoard).
Everything is read back from the ML Metadata store and the artifacts it points to."""

EPILOG = """\
examples:
  .venv/bin/python -m reports run --latest
  .venv/bin/python -m reports run --run-id 20261127-025114 --out /tmp/reports
  .venv/bin/python -m reports index
  .venv/bin/python -m reports compare 20261127-025114 20261127-025207
A run is named by its ML Metadata id (e.g. 2026-11-27T02:51:14.934875), its reports directory
name (e.g. 20261127-025114), or a unique prefix of either. Open the printed file:// address in
any browser."""


def parser() -> argparse.ArgumentParser:
    """Each sub-command's options shared by all three are ReportsSettings' flags; the
    sub-commands themselves, --run-id/--latest (one or the other) and compare's two runs are
    argparse's own, since common.config declares options only."""
    root = argparse.ArgumentParser(prog="python -m reports", description=DESCRIPTION,
                                   epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="write one run's report (and refresh the index)",
        description="Write the report of one run, rebuilt from the metadata store, and refresh "
                    "the index that links to it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = run.add_mutually_exclusive_group()
    which.add_argument("--run-id", metavar="ID", help="The run (default: the newest).")
    which.add_argument("--latest", action="store_true", help="The newest run (the default).")
    run.add_argument("--no-index", dest="index", action="store_false",
                     help="Write the run's page only.")
    add_flags(run, ReportsSettings)

    index = commands.add_parser(
        "index", help="write the index of all runs",
        description="Write index.html: every run, newest first, with its eval RMSE, blessing "
                    "and push, linking to its report (written first if missing) and to a "
                    "comparison with the run before it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    index.add_argument("--rebuild", action="store_true",
                       help="Rewrite every run's page and comparison, not only missing ones.")
    add_flags(index, ReportsSettings)

    compare = commands.add_parser(
        "compare", help="compare two runs' metrics side by side",
        description="Write a page comparing run A with run B: data sizes, hyperparameters, "
                    "and every slice's RMSE/MAE with the change from A to B.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("run_a", metavar="RUN_A", help="The earlier (reference) run.")
    compare.add_argument("run_b", metavar="RUN_B", help="The later run.")
    add_flags(compare, ReportsSettings)
    return root


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    settings = from_flags(ReportsSettings, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("reports").setLevel(logging.INFO if settings.verbose else logging.WARNING)
    if not settings.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(logs.LibraryNoiseFilter())
    from reports.publisher import Reports, run_page_path

    try:
        reports = Reports(settings.metadata_path, settings.out, settings.pipeline_root,
                          with_warehouse=settings.warehouse)
        if args.command == "run":
            page = reports.write_run(reports.find(args.run_id))
            if args.index:
                reports.write_index()
        elif args.command == "index":
            page = reports.write_index(rebuild=args.rebuild)
        else:
            a, b = reports.find(args.run_a), reports.find(args.run_b)
            for record in (a, b):  # the comparison links to both runs' pages
                if not run_page_path(record, settings.out).exists():
                    reports.write_run(record)
            page = reports.write_compare(a, b)
    except (FileNotFoundError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(page.resolve().as_uri())
    return 0
