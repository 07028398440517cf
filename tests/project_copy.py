"""A copy of the project, run with its own code as a user would run it (local_runner.py in a
process of its own, so it can be killed), and the edits the cache must see."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import threading
from typing import List

from pipelines import schema as schema_lib
from pipelines.config import PROJECT_ROOT
from reports import mlmd
from tests.pipeline_helpers import FAST_TRAINING

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

    def start(self) -> "Run":
        return Run(self)

    def run(self) -> int:
        """A whole run's exit code; what it printed is kept in `output`."""
        run = self.start()
        code = run.finish()
        self.output = run.output()
        return code

    def newest_run(self) -> mlmd.RunRecord:
        return mlmd.list_runs(mlmd.open_store(self.metadata))[0]


class Run:
    """The copy's local_runner.py in its own process group, its output collected line by line.

    Every run has the same flags: blessing depends on the RMSE bound alone (any model trained
    here is under it), so each run's exit code is certain.
    """

    def __init__(self, project: Project) -> None:
        self.lines: List[str] = []
        base = project.base
        self.process = subprocess.Popen(
            [sys.executable, "local_runner.py",
             "--pipeline-root", str(base / "root"), "--metadata-path", str(project.metadata),
             "--reports-dir", str(base / "reports"), "--serving-dir", str(project.serving),
             "--database", str(project.warehouse), "--rmse-upper-bound", "1.25",
             "--max-rmse-increase", "10", *FAST_TRAINING],
            cwd=project.root, env={**os.environ, "PYTHONPATH": str(project.root),
                                   "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def finish(self) -> int:
        code = self.process.wait(TIMEOUT_S)
        self._reader.join(10)
        return code


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
