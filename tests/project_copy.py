"""A copy of the project, run with its own code as a user would run it (local_runner.py in a
process of its own, so it can be killed; forked from one that imported the libraries once:
tests/runner_forks.py), and the edits the cache must see."""
from __future__ import annotations

import os
import pathlib
import shutil

from pipelines import schema as schema_lib
from pipelines.config import PROJECT_ROOT
from reports import mlmd
from tests.pipeline_helpers import FAST_TRAINING
from tests.runner_forks import runner_forks

NOT_THE_PROJECT = shutil.ignore_patterns(".git", ".venv", ".venv-tools", "__pycache__",
                                         ".pytest_cache", "*.egg-info", "runs", "data",
                                         "serving_model")
TIMEOUT_S = 1800  # a run that takes longer has hung, even on a loaded machine


class Project:
    """The project's files under `root`; its runs' outputs under `base`, on `warehouse`."""

    def __init__(self, root: pathlib.Path, base: pathlib.Path, warehouse: pathlib.Path) -> None:
        shutil.copytree(PROJECT_ROOT, root, ignore=NOT_THE_PROJECT)
        self.root, self.base, self.warehouse = root, base, warehouse
        self.metadata = base / "metadata.sqlite"
        self.serving = base / "serving" / "babyweight"
        self.output = ""
        self.forks = runner_forks(root, {**os.environ, "PYTHONPATH": str(root),
                                         "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
        self._runs = 0

    def start(self) -> "Run":
        self._runs += 1
        return Run(self, self.base / f"run-{self._runs}.log")

    def close(self) -> None:
        """Stops the runs' zygote (a run it forked goes on until it ends)."""
        self.forks.close()

    def run(self) -> int:
        """A whole run's exit code; what it printed is kept in `output`."""
        run = self.start()
        code = run.finish()
        self.output = run.output()
        return code

    def newest_run(self) -> mlmd.RunRecord:
        return mlmd.list_runs(mlmd.open_store(self.metadata))[0]


class Run:
    """The copy's local_runner.py in its own process group (a session of its own), its output
    in `log`.

    Every run has the same flags: blessing depends on the RMSE bound alone (any model trained
    here is under it), so each run's exit code is certain.
    """

    def __init__(self, project: Project, log: pathlib.Path) -> None:
        base = project.base
        base.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.process = project.forks.spawn(
            ["--pipeline-root", str(base / "root"), "--metadata-path", str(project.metadata),
             "--reports-dir", str(base / "reports"), "--serving-dir", str(project.serving),
             "--database", str(project.warehouse), "--rmse-upper-bound", "1.25",
             "--max-rmse-increase", "10", *FAST_TRAINING], log)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logged(self, text: str) -> bool:
        return text in self.output()

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def finish(self) -> int:
        return self.process.wait(TIMEOUT_S)


def edit_model(project: pathlib.Path) -> None:
    """A change to the model's code (not a comment: those do not count)."""
    model = project / "modules" / "model.py"
    model.write_text(model.read_text() + "\n\ndef _edited_for_the_cache_test() -> int:\n"
                     "    return 1\n")


def tighten_mother_age(schema_file: pathlib.Path, max_age: int = 40) -> None:
    """The curated schema with mother_age allowed only up to `max_age`."""
    schema = schema_lib.load(schema_file)
    (feature,) = [f for f in schema.feature if f.name == "mother_age"]
    assert feature.int_domain.max > max_age
    feature.int_domain.max = max_age
    schema_file.write_text(schema_lib.render(schema))
