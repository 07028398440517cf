"""The cache sees everything a step depends on: runs of a copy of the project, edited between runs.

One copy, one warehouse, four runs into one metadata store: run, run again unchanged (all is
reused but the Evaluator, which judges against the first model, now the baseline), edit the
model's code and run (training on, data stages reused), tighten the schema and run (validation
runs again and stops the run). Which component executed and which was reused is
read from ML Metadata, as the run reports read it.
"""
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Dict

import pytest

from pipelines import fingerprints
from pipelines import schema as schema_lib
from pipelines.config import PROJECT_ROOT
from reports import mlmd
from tests.pipeline_helpers import FAST_TRAINING

pytestmark = pytest.mark.slow

# What the cache can reuse. The resolver always runs, and the components that write this run's
# reports (EdaReport, AnomalyGate, ServingPusher) take its reports directory as a setting.
DATA_STAGES = ("DuckDBExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
               "Transform")
CACHEABLE = (*DATA_STAGES, "Trainer", "Evaluator")
NOT_THE_PROJECT = shutil.ignore_patterns(".git", ".venv", ".venv-tools", "__pycache__",
                                         ".pytest_cache", "*.egg-info", "runs", "data",
                                         "serving_model")


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


class Project:
    """A copy of the project, run with its own code as a user would run it."""

    def __init__(self, root: pathlib.Path, base: pathlib.Path, warehouse: pathlib.Path) -> None:
        shutil.copytree(PROJECT_ROOT, root, ignore=NOT_THE_PROJECT)
        self.root, self.base, self.warehouse = root, base, warehouse
        self.output = ""

    def run(self) -> int:
        env = {**os.environ, "PYTHONPATH": str(self.root), "TF_USE_LEGACY_KERAS": "1",
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "local_runner.py",
             "--pipeline-root", str(self.base / "root"),
             "--metadata-path", str(self.base / "metadata.sqlite"),
             "--reports-dir", str(self.base / "reports"),
             "--serving-dir", str(self.base / "serving" / "babyweight"),
             "--database", str(self.warehouse), "--rmse-upper-bound", "1.25",
             # Blessing depends on the bound alone: each run's exit code is then certain.
             "--max-rmse-increase", "10", *FAST_TRAINING],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=1800)
        self.output = result.stdout + result.stderr
        return result.returncode

    def newest_run(self) -> mlmd.RunRecord:
        return mlmd.list_runs(mlmd.open_store(self.base / "metadata.sqlite"))[0]


def states(record: mlmd.RunRecord) -> Dict[str, str]:
    return {c.node_id: c.state for c in record.components}


def fingerprint(record: mlmd.RunRecord, node_id: str) -> str:
    return record.component(node_id).parameters[fingerprints.FINGERPRINT_PROPERTY]


def test_edited_code_or_schema_runs_again_and_nothing_else_does(small_warehouse, tmp_path):
    project = Project(tmp_path / "project", tmp_path / "runs", small_warehouse)

    assert project.run() == 0, project.output
    first = project.newest_run()
    assert all(states(first)[node] == "COMPLETE" for node in CACHEABLE), states(first)

    # Unchanged: everything is reused but the Evaluator, which has a new input (the first
    # model is now its baseline); its fingerprint, as every other, is the first run's.
    assert project.run() == 0, project.output
    unchanged = project.newest_run()
    assert {node: states(unchanged)[node] for node in CACHEABLE} == {
        **{node: "CACHED" for node in CACHEABLE}, "Evaluator": "COMPLETE"}
    assert unchanged.input("Evaluator", "baseline_model").id == (
        first.output("Trainer", "model").id)
    assert {node: fingerprint(unchanged, node) for node in CACHEABLE} == {
        node: fingerprint(first, node) for node in CACHEABLE}

    # The model's code changed: it trains, is evaluated and reaches the pusher; data is reused.
    edit_model(project.root)
    assert project.run() == 0, project.output
    retrained = project.newest_run()
    assert all(states(retrained)[node] == "CACHED" for node in DATA_STAGES), states(retrained)
    assert all(states(retrained)[node] == "COMPLETE"
               for node in ("Trainer", "Evaluator", "ServingPusher")), states(retrained)
    new_model = retrained.output("Trainer", "model").id
    assert new_model != unchanged.output("Trainer", "model").id
    assert retrained.input("ServingPusher", "model").id == new_model
    assert fingerprint(retrained, "Trainer") != fingerprint(unchanged, "Trainer")
    assert fingerprint(retrained, "StatisticsGen") == fingerprint(unchanged, "StatisticsGen")

    # The schema now refuses mothers over 40: validation runs again on the cached statistics
    # and stops the run with the anomaly named; nothing trains.
    tighten_mother_age(project.root / "schema" / "schema.pbtxt")
    assert project.run() == 2, project.output
    assert "mother_age" in project.output
    stopped = project.newest_run()
    assert states(stopped)["DuckDBExampleGen"] == states(stopped)["StatisticsGen"] == "CACHED"
    assert states(stopped)["ImportSchemaGen"] == states(stopped)["ExampleValidator"] == (
        "COMPLETE")
    assert states(stopped)["AnomalyGate"] == "FAILED"
    assert "Trainer" not in states(stopped)
