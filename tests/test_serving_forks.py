"""The servers' zygote (tests/server_forks.py, tests/shared_zygote.py) ends cleanly and never
leaves a test waiting: it stops what it forked when asked or when its owner is gone, and a
server whose zygote is gone fails the test at once.

Its loop is run here with a child that only sleeps, in a Python that imports nothing else:
what is checked is the protocol, not the server (the serving tests fork real ones).
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Iterator, Tuple

import pytest

from tests import shared_zygote
from tests.server_forks import CHILDREN, PROJECT_ROOT, ForkedServer, Zygote

SLEEPER = """
import pathlib, sys, time
from tests.server_forks import run_as_main, serve_socket
serve_socket(pathlib.Path(sys.argv[1]),
             lambda request: run_as_main(request["log"], lambda: time.sleep(600)),
             sys.argv[2], int(sys.argv[3]))
"""


@pytest.fixture()
def sleepers(tmp_path: pathlib.Path) -> Iterator[Tuple[subprocess.Popen, subprocess.Popen]]:
    """A zygote of sleeping children in tmp_path (ready), and the process it watches."""
    owner = subprocess.Popen(["sleep", "600"])
    zygote = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, str(tmp_path), str(tmp_path / "zygote.sock"),
         str(owner.pid)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert zygote.stdout.readline() == b"ready\n"
    (tmp_path / "zygote.ready").write_text(str(zygote.pid))
    yield zygote, owner
    for process in (zygote, owner):
        process.kill()
        process.wait()


def _spawn(directory: pathlib.Path, name: str) -> ForkedServer:
    pid = int(shared_zygote.ask(directory, {"argv": [], "log": str(directory / name)}))
    return ForkedServer(pid, directory / str(pid))


def _ended(directory: pathlib.Path) -> dict:
    lines = (directory / CHILDREN).read_text().splitlines()
    return {json.loads(line)["pid"]: json.loads(line) for line in lines}


def test_a_stop_request_ends_the_children_then_the_zygote(
        sleepers: Tuple[subprocess.Popen, subprocess.Popen], tmp_path: pathlib.Path) -> None:
    zygote, _ = sleepers
    children = [_spawn(tmp_path, f"child{index}.log") for index in range(2)]
    assert all(child.poll() is None for child in children)
    shared_zygote.stop(tmp_path)  # returns once they have ended
    assert [child.poll() for child in children] == [-15, -15]  # SIGTERM
    assert zygote.wait(timeout=60) == 0
    ended = _ended(tmp_path)
    assert [ended[child.pid]["log"] for child in children] == [
        str(tmp_path / "child0.log"), str(tmp_path / "child1.log")]
    assert json.loads((tmp_path / "zygote.json").read_text())["children_cpu"] >= 0
    assert not (tmp_path / "zygote.sock").exists()


def test_the_zygote_ends_with_its_owner(
        sleepers: Tuple[subprocess.Popen, subprocess.Popen], tmp_path: pathlib.Path) -> None:
    """A run killed half-way: nothing it forked outlives it."""
    zygote, owner = sleepers
    child = _spawn(tmp_path, "child.log")
    owner.kill()
    owner.wait()
    assert zygote.wait(timeout=60) == 0
    assert child.wait(timeout=10) == -15


def test_a_server_whose_zygote_is_gone_fails_at_once(
        sleepers: Tuple[subprocess.Popen, subprocess.Popen], tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its grace for the zygote to write the exit code is over (shortened here)."""
    monkeypatch.setattr(ForkedServer, "reap_grace", 1.0)
    zygote, _ = sleepers
    child = _spawn(tmp_path, "child.log")
    zygote.kill()  # its children are left to init, which reaps them without a word
    zygote.wait()
    os.kill(child.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the zygote is gone"):
        child.wait(timeout=120)
    assert time.monotonic() - started < 60
    with pytest.raises(OSError):
        shared_zygote.ask(tmp_path, {"argv": [], "log": str(tmp_path / "next.log")})


def test_the_stdin_protocol_still_reports_exit_codes(tmp_path: pathlib.Path) -> None:
    """tests/runner_forks.py's zygote: requests on stdin, one per test process."""
    (tmp_path / "exits_three.py").write_text(
        "import pathlib, sys\n"
        "from tests.server_forks import run_as_main, serve\n"
        "serve(pathlib.Path(sys.argv[1]),\n"
        "      lambda request: run_as_main(request['log'], lambda: sys.exit(3)))\n")
    zygote = Zygote("exits_three", tmp_path, {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        child = zygote.spawn([], tmp_path / "child.log")
        assert child.wait(timeout=60) == 3
    finally:
        zygote.close()


def test_a_killed_run_s_directory_is_removed_by_the_next_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """A directory named for a process that is gone goes; a live process's stays."""
    import tempfile

    ended = subprocess.Popen(["true"])
    ended.wait()
    root = tmp_path
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(root))
    dead = root / f"server-forks-{ended.pid}-00000000"
    live = root / f"server-forks-{os.getpid()}-00000000"
    for directory in (dead, live):
        directory.mkdir()
        (directory / "zygote.log").write_text("")
    shared_zygote._remove_killed_runs_directories()
    assert sorted(p.name for p in root.iterdir()) == [live.name]
