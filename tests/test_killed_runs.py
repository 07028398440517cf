"""A run killed in the middle of a component leaves nothing that the next run trips over.

One run is killed (SIGKILL, as the kernel's OOM killer or a closed laptop would) inside each
of a few key components in turn, each rerun resuming from the cached steps before it; the
last rerun completes. Every rerun says what the dead one left and marks its unfinished steps
failed; at the end ML Metadata holds no RUNNING step and every served version is whole.
"""
from __future__ import annotations

import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import List, Optional

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import atomic_push, dead_runs
from tests.pipeline_helpers import FAST_TRAINING

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
KILLED_IN = ("DuckDBExampleGen", "Transform", "Trainer", "ServingPusher")
RUNNING = metadata_store_pb2.Execution.RUNNING
STEP_S = 0.02
TIMEOUT_S = 900


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


class Run:
    """local_runner.py in its own process group, its log collected line by line."""

    def __init__(self, base: pathlib.Path, warehouse: pathlib.Path):
        self.lines: List[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "local_runner.py"),
             "--pipeline-root", str(base / "root"), "--metadata-path", str(base / "md.sqlite"),
             "--reports-dir", str(base / "reports"),
             "--serving-dir", str(base / "serving" / "babyweight"),
             "--database", str(warehouse), "--rmse-upper-bound", "1.25", *FAST_TRAINING],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def kill_inside(self, component: str, metadata: pathlib.Path) -> None:
        """SIGKILL once `component`'s execution is RUNNING in ML Metadata.

        At its "is running" line the process is frozen (SIGSTOP) and let on in short steps
        until the execution is recorded, so even a quick component is caught inside. (TFX's
        progress lines stop showing once TensorFlow's logging takes over; the later, slower
        components are caught by watching the store alone.)
        """
        deadline = time.monotonic() + TIMEOUT_S
        while not (self.logged(f"Component {component} is running")
                   or component in running_nodes(metadata)):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(STEP_S)
        self.signal(signal.SIGSTOP)
        while component not in running_nodes(metadata):
            assert time.monotonic() < deadline, "".join(self.lines)
            self.signal(signal.SIGCONT)
            time.sleep(STEP_S)
            self.signal(signal.SIGSTOP)
        self.signal(signal.SIGKILL)
        self.process.wait()

    def finish(self) -> int:
        code = self.process.wait(TIMEOUT_S)
        self._reader.join(10)
        return code


@pytest.fixture()
def cleanup():
    runs: List[Run] = []
    yield runs
    for run in runs:
        if run.process.poll() is None:
            run.signal(signal.SIGKILL)
            run.process.wait()


def test_runs_killed_in_each_key_component_then_a_rerun_completes(small_warehouse, tmp_path,
                                                                  cleanup):
    metadata = tmp_path / "md.sqlite"
    serving = tmp_path / "serving" / "babyweight"
    previous: Optional[Run] = None
    for component in KILLED_IN:
        run = Run(tmp_path, small_warehouse)
        cleanup.append(run)
        if component == "ServingPusher":
            # Held here, the push lock keeps the pusher waiting inside its step.
            with atomic_push.push_lock(serving):
                run.kill_inside(component, metadata)
            # What a kill during the copy leaves (the copy itself takes milliseconds).
            (serving / f".{int(time.time())}.{run.process.pid}.incomplete" / "variables"
             ).mkdir(parents=True)
        else:
            run.kill_inside(component, metadata)
        if previous is not None:
            assert run.logged("left RUNNING by a run that died"), "".join(run.lines)
        assert running_nodes(metadata) == [component]
        previous = run
    final = Run(tmp_path, small_warehouse)
    cleanup.append(final)
    assert final.finish() == 0, "".join(final.lines)
    log = "".join(final.lines)
    assert "Marked ServingPusher" in log and "left RUNNING by a run that died" in log
    assert "half-copied push" in log
    assert running_nodes(metadata) == []
    versions = atomic_push.serving_versions(serving)
    assert len(versions) == 1
    assert [p.name for p in serving.iterdir()] == [str(v) for v in versions]
    for path in versions.values():
        assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
        assert (path / atomic_push.PUSH_RECORD).exists()
    with sqlite3.connect(f"file:{metadata}?mode=ro", uri=True) as connection:
        marked = connection.execute(
            "SELECT e.last_known_state FROM Execution e JOIN ExecutionProperty p "
            "ON p.execution_id = e.id WHERE p.name = ?", (dead_runs.ABANDONED_PROPERTY,)
        ).fetchall()
    assert marked == [(metadata_store_pb2.Execution.FAILED,)] * len(KILLED_IN)
