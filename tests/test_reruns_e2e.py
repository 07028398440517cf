"""Runs after runs of a copy of the project, into one metadata store: a run killed in the middle
of a component leaves nothing that the next run trips over, and the cache sees everything a
step depends on.

First one run is killed (SIGKILL, as the kernel's OOM killer or a closed laptop would) inside
each of a few key components in turn, each rerun resuming from the cached steps before it. The
model's code is then edited, and the rerun after the last kill completes: it says what the dead
runs left and marks their unfinished steps failed; then ML Metadata holds no RUNNING step and
every served version is whole. Against the run killed in the pusher, whose Trainer and Evaluator
had finished, that rerun trains again and reuses the data stages (the cache treats the dead
runs' steps as any other's). Then the schema is edited: validation runs again and stops the run.
A run again unchanged reuses all but the Evaluator, which judges against the first model, now
the baseline: the shared runs' first two (tests/pipeline_run_fixtures.py) are such a pair. Which
component executed and which was reused is read from ML Metadata, as the run reports read it.
"""
from __future__ import annotations

import dataclasses
import pathlib
import signal
import sqlite3
import time
from typing import Dict, Iterator, List, Tuple

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import atomic_push, dead_runs, fingerprints
from reports import mlmd
from tests.pipeline_helpers import DATA_STAGES
from tests.project_copy import TIMEOUT_S, Project, Run, edit_model, tighten_mother_age

pytestmark = pytest.mark.slow

KILLED_IN = ("DuckDBExampleGen", "Transform", "Trainer", "ServingPusher")
RUNNING = metadata_store_pb2.Execution.RUNNING
STEP_S = 0.02
# What the cache can reuse. The resolver always runs, and the components that write this run's
# reports (EdaReport, AnomalyGate, ServingPusher) take its reports directory as a setting.
CACHEABLE = (*DATA_STAGES, "Trainer", "Evaluator")


def running_nodes(metadata: pathlib.Path) -> List[str]:
    """Component ids with a RUNNING execution (read straight from the store's SQLite)."""
    if not metadata.exists():
        return []
    try:
        with sqlite3.connect(f"file:{metadata}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute(
                "SELECT c.name FROM Execution e JOIN Association a ON a.execution_id = e.id "
                "JOIN Context c ON c.id = a.context_id JOIN Type t ON t.id = c.type_id "
                "WHERE t.name = 'node' AND e.last_known_state = ?", (RUNNING,)).fetchall()
    except sqlite3.OperationalError:  # the store is being created or written; look again
        return []
    return [name.split(".", 1)[1] for (name,) in rows]


def kill_inside(run: Run, component: str, metadata: pathlib.Path) -> None:
    """SIGKILL once `component`'s execution is RUNNING in ML Metadata.

    At its "is running" line the process is frozen (SIGSTOP) and let on in short steps
    until the execution is recorded, so even a quick component is caught inside. (TFX's
    progress lines stop showing once TensorFlow's logging takes over; the later, slower
    components are caught by watching the store alone.)
    """
    deadline = time.monotonic() + TIMEOUT_S
    while not (run.logged(f"Component {component} is running")
               or component in running_nodes(metadata)):
        assert run.process.poll() is None, run.output()
        assert time.monotonic() < deadline, run.output()
        time.sleep(STEP_S)
    run.signal(signal.SIGSTOP)
    while component not in running_nodes(metadata):
        assert time.monotonic() < deadline, run.output()
        run.signal(signal.SIGCONT)
        time.sleep(STEP_S)
        run.signal(signal.SIGSTOP)
    run.signal(signal.SIGKILL)
    run.process.wait()


@dataclasses.dataclass(frozen=True)
class Resumed:
    """The copy after the killed runs and the one that completed, and what was true then."""

    project: Project
    code: int
    log: str
    running: List[str]
    served: List[Tuple[str, bool]]  # each entry of the serving dir; a whole version?
    versions: int
    marked: List[Tuple[int]]
    record: mlmd.RunRecord  # the run that completed, on the edited model code
    before_edit: mlmd.RunRecord  # the run killed in the pusher: its Trainer had finished


def _whole(path: pathlib.Path) -> bool:
    return ((path / "saved_model.pb").exists() and (path / "variables").is_dir()
            and (path / atomic_push.PUSH_RECORD).exists())


def _abandoned_states(metadata: pathlib.Path) -> List[Tuple[int]]:
    with sqlite3.connect(f"file:{metadata}?mode=ro", uri=True) as connection:
        return connection.execute(
            "SELECT e.last_known_state FROM Execution e JOIN ExecutionProperty p "
            "ON p.execution_id = e.id WHERE p.name = ?", (dead_runs.ABANDONED_PROPERTY,)
        ).fetchall()


@pytest.fixture(scope="module")
def resumed(small_warehouse: pathlib.Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resumed]:
    work = tmp_path_factory.mktemp("reruns")
    project = Project(work / "project", work / "runs", small_warehouse)
    started: List[Run] = []
    try:
        for component in KILLED_IN:
            run = project.start()
            started.append(run)
            if component == "ServingPusher":
                # Held here, the push lock keeps the pusher waiting inside its step.
                with atomic_push.push_lock(project.serving):
                    kill_inside(run, component, project.metadata)
                # What a kill during the copy leaves (the copy itself takes milliseconds).
                (project.serving / f".{int(time.time())}.{run.process.pid}.incomplete"
                 / "variables").mkdir(parents=True)
            else:
                kill_inside(run, component, project.metadata)
            if len(started) > 1:
                assert run.logged("left RUNNING by a run that died"), run.output()
            assert running_nodes(project.metadata) == [component]
        edit_model(project.root)
        final = project.start()
        started.append(final)
        code = final.finish()
        versions = atomic_push.serving_versions(project.serving)
        yield Resumed(
            project=project, code=code, log=final.output(),
            running=running_nodes(project.metadata),
            served=[(p.name, p.name in {str(v) for v in versions} and _whole(p))
                    for p in project.serving.iterdir()],
            versions=len(versions), marked=_abandoned_states(project.metadata),
            record=project.newest_run(),
            before_edit=mlmd.list_runs(mlmd.open_store(project.metadata))[1])
    finally:
        for run in started:
            if run.process.poll() is None:
                run.signal(signal.SIGKILL)
                run.process.wait()
        project.close()


def test_runs_killed_in_each_key_component_then_a_rerun_completes(resumed: Resumed) -> None:
    assert resumed.code == 0, resumed.log
    assert "Marked ServingPusher" in resumed.log
    assert "left RUNNING by a run that died" in resumed.log
    assert "half-copied push" in resumed.log
    assert resumed.running == []
    assert resumed.versions == 1
    assert resumed.served and all(whole for _, whole in resumed.served), resumed.served
    assert resumed.marked == [(metadata_store_pb2.Execution.FAILED,)] * len(KILLED_IN)


def states(record: mlmd.RunRecord) -> Dict[str, str]:
    return {c.node_id: c.state for c in record.components}


def fingerprint(record: mlmd.RunRecord, node_id: str) -> str:
    return record.component(node_id).parameters[fingerprints.FINGERPRINT_PROPERTY]


def test_edited_code_or_schema_runs_again_and_nothing_else_does(resumed: Resumed) -> None:
    project, first, retrained = resumed.project, resumed.before_edit, resumed.record
    assert resumed.code == 0, resumed.log
    assert set(CACHEABLE) <= set(states(first)), states(first)
    assert states(first)["Trainer"] == states(first)["Evaluator"] == "COMPLETE", states(first)

    # The model's code changed: it trains, is evaluated and reaches the pusher; data is reused.
    assert all(states(retrained)[node] == "CACHED" for node in DATA_STAGES), states(retrained)
    assert all(states(retrained)[node] == "COMPLETE"
               for node in ("Trainer", "Evaluator", "ServingPusher")), states(retrained)
    new_model = retrained.output("Trainer", "model").id
    assert new_model != first.output("Trainer", "model").id
    assert retrained.input("ServingPusher", "model").id == new_model
    assert fingerprint(retrained, "Trainer") != fingerprint(first, "Trainer")
    assert {node: fingerprint(retrained, node) for node in DATA_STAGES} == {
        node: fingerprint(first, node) for node in DATA_STAGES}

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


def test_an_unchanged_run_reuses_every_step_but_the_evaluator(pipeline_runs) -> None:
    """The shared runs' second run is the first one again: same data, code and flags."""
    _, unchanged, first = mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))
    assert pipeline_runs.exit_codes[:2] == [0, 0]
    assert all(states(first)[node] == "COMPLETE" for node in CACHEABLE), states(first)
    # Everything is reused but the Evaluator, which has a new input (the first model is now its
    # baseline); its fingerprint, as every other, is the first run's.
    assert {node: states(unchanged)[node] for node in CACHEABLE} == {
        **{node: "CACHED" for node in CACHEABLE}, "Evaluator": "COMPLETE"}
    assert unchanged.input("Evaluator", "baseline_model").id == (
        first.output("Trainer", "model").id)
    assert {node: fingerprint(unchanged, node) for node in CACHEABLE} == {
        node: fingerprint(first, node) for node in CACHEABLE}
