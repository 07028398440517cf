"""A metadata store holding three real pipeline runs on small data (conftest makes it once).

Run 1 trains and pushes a model, run 2 (mostly cached) is judged against run 1's model as
baseline, run 3 reads a warehouse with a new plurality value and is stopped by the anomaly gate.
Each run's report is published as the local runner does after every run, and what it logged
is kept beside it (`PipelineRuns.log`). A test that runs the pipeline on from these runs does so
in a copy (`copy_of`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import pathlib
import shutil
import sqlite3
import sys
from typing import Dict, Iterator, List, Tuple

import duckdb

from tests.pipeline_helpers import FAST_TRAINING, run_local_pipeline


@dataclasses.dataclass(frozen=True)
class PipelineRuns:
    base: pathlib.Path
    metadata_path: pathlib.Path
    pipeline_root: pathlib.Path
    reports_dir: pathlib.Path
    warehouse: pathlib.Path
    exit_codes: List[int]

    @classmethod
    def at(cls, base: pathlib.Path, warehouse: pathlib.Path, exit_codes: List[int]
           ) -> "PipelineRuns":
        return cls(base=base, metadata_path=base / "metadata.sqlite", pipeline_root=base / "root",
                   reports_dir=base / "reports", warehouse=warehouse, exit_codes=exit_codes)

    def log(self, run: int) -> str:
        """What run `run` (0, 1 or 2) logged."""
        return log_path(self.base, run).read_text()

    @property
    def index(self) -> pathlib.Path:
        return self.reports_dir / "index.html"


@contextlib.contextmanager
def copy_of(runs: PipelineRuns, base: pathlib.Path) -> Iterator[PipelineRuns]:
    """The runs' metadata store, reports and served versions in `base`, for a run that goes on
    from them (its data stages found in the cache, the first run's model as baseline).

    ML Metadata's artifacts keep their URIs, in the shared pipeline root: TFX's cache keys hold
    the input artifacts' URIs, so rewritten ones would miss every cached step. The copy's runs
    only read those artifacts and write their own outputs under `base`; that the shared root is
    left as it was is checked when the copy is given up.
    """
    before = _files(runs.pipeline_root)
    base.mkdir(parents=True, exist_ok=True)
    copy = PipelineRuns.at(base, runs.warehouse, runs.exit_codes)
    with contextlib.closing(sqlite3.connect(f"file:{runs.metadata_path}?mode=ro", uri=True)
                            ) as source, contextlib.closing(
                                sqlite3.connect(copy.metadata_path)) as target:
        source.backup(target)
    shutil.copytree(runs.reports_dir, copy.reports_dir)
    shutil.copytree(runs.base / "serving", base / "serving")
    yield copy
    assert _files(runs.pipeline_root) == before, "a run of a copy changed the shared artifacts"


def _files(root: pathlib.Path) -> Dict[str, Tuple[int, int]]:
    """Each file under `root` with its size and modification time."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


def log_path(base: pathlib.Path, run: int) -> pathlib.Path:
    return base / f"run-{run}.log"


def run_pipeline(base: pathlib.Path, database: pathlib.Path, log: pathlib.Path) -> int:
    """The run's exit code; what it logged is kept in `log` (and still shown on stderr)."""
    logged = io.StringIO()
    try:
        with contextlib.redirect_stderr(logged):  # the runner's log handler writes to sys.stderr
            code = run_local_pipeline(base, "--database", str(database), "--rmse-upper-bound",
                                      "1.25", *FAST_TRAINING)
    finally:  # a handler left on this run's stream would take the next run's lines
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "stream", None) is logged:
                root.removeHandler(handler)
    log.write_text(logged.getvalue())
    sys.stderr.write(logged.getvalue())
    return code


def publish_latest(runs_base: pathlib.Path) -> None:
    """What local_runner does after every run (skipped when the runner already did it)."""
    import reports

    newest = max((runs_base / "reports").glob("2*"), key=lambda p: p.name)
    if not (newest / "report.html").exists():
        reports.publish(runs_base / "metadata.sqlite", pipeline_root=runs_base / "root",
                        out_dir=runs_base / "reports")


def with_new_plurality(warehouse: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """A copy of the warehouse where some twins have plurality 6: an anomaly."""
    shutil.copy(warehouse, out)
    connection = duckdb.connect(str(out))
    connection.execute("UPDATE natality SET plurality = 6 WHERE plurality = 2 AND month <= 6")
    connection.close()
    return out


def create_pipeline_runs(warehouse: pathlib.Path, base: pathlib.Path) -> PipelineRuns:
    """Runs the pipeline three times into `base` (about a minute on two cores)."""
    codes = []
    databases = (warehouse, warehouse, with_new_plurality(warehouse, base / "bad.duckdb"))
    for run, database in enumerate(databases):
        codes.append(run_pipeline(base, database, log_path(base, run)))
        publish_latest(base)
    return PipelineRuns.at(base, warehouse, codes)
