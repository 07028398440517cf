"""One servers' zygote (tests/server_forks.py) for the whole test run, xdist workers and all.

Each zygote pays TensorFlow's import and the server's modules; one per xdist worker paid it
once per worker. The run's first pytest process (the xdist controller, or the only process)
names a directory in the environment its workers inherit (`configure`, from
tests/conftest.py: the controller itself never imports TensorFlow). The first test process to
need a server starts the zygote there, under a lock; the others connect to its Unix socket.
The first process stops it and removes its directory at the end (`unconfigure`), after every
worker has ended; the zygote also ends by itself once that process is gone (a run killed
half-way), and stops what it forked. A zygote that fails to start, or that is gone, fails the test that needs it with its
log, and is not started again.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import pathlib
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

from tests.made_once import locked
from tests.server_forks import LOG, PROJECT_ROOT, ForkedServer, Request, alive, read_line

ENV = "BABYWEIGHT_SERVER_FORKS"  # "OWNER_PID:DIRECTORY" of the run's zygote
START_TIMEOUT = 300.0  # TensorFlow's import on a loaded machine; costs nothing when faster
ANSWER_TIMEOUT = 120.0  # a fork; the stop request waits for the children to end

_owned: Optional[pathlib.Path] = None  # the directory this process named (and so stops)


def _named() -> pathlib.Path:
    """A directory for a zygote owned by this process, named in the environment (made when a
    zygote starts: a run with no server leaves nothing behind)."""
    global _owned
    _owned = pathlib.Path(tempfile.gettempdir(),
                          f"server-forks-{os.getpid()}-{secrets.token_hex(4)}")
    os.environ[ENV] = f"{os.getpid()}:{_owned}"
    return _owned


def run_directory() -> pathlib.Path:
    """The directory of the run's zygote (its log, its children's exit codes)."""
    return pathlib.Path(os.environ[ENV].split(":", 1)[1])


def configure() -> None:
    """In the run's first process (not in an xdist worker): the run's zygote directory, once
    the directories of runs that were killed (their owner is gone) are removed."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _remove_killed_runs_directories()
        _named()


def _remove_killed_runs_directories() -> None:
    """A run killed before its end (unconfigure) leaves its directory, and maybe its zygote."""
    for directory in pathlib.Path(tempfile.gettempdir()).glob("server-forks-*-*"):
        owner = directory.name.split("-")[2]
        if owner.isdigit() and not alive(int(owner)):
            stop(directory)
            shutil.rmtree(directory, ignore_errors=True)


def unconfigure() -> None:
    """In the run's first process, at its end: the zygote stopped, if one was started, and its
    directory removed (a run leaves nothing in the temporary directory)."""
    if _owned is not None:
        stop(_owned)
        shutil.rmtree(_owned, ignore_errors=True)


def stop(directory: pathlib.Path) -> None:
    """Asks the zygote in `directory` to stop its children and end; waits for it."""
    if (directory / "zygote.ready").exists():
        with contextlib.suppress(OSError):
            ask(directory, {"stop": True})


def ask(directory: pathlib.Path, request: Request) -> str:
    """The answer line of the zygote in `directory` to `request` (OSError if it is gone)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(ANSWER_TIMEOUT)
        connection.connect(str(directory / "zygote.sock"))
        connection.sendall(json.dumps(request).encode() + b"\n")
        return read_line(connection).decode().strip()


def _log(directory: pathlib.Path) -> str:
    path = directory / LOG
    return path.read_text(errors="replace") if path.exists() else "(no log)"


class SharedZygote:
    """The run's zygote, as this test process reaches it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directory: Optional[pathlib.Path] = None
        self._process: Optional[subprocess.Popen] = None  # if this process started it

    def _ready(self) -> pathlib.Path:
        with self._lock:
            if self._directory is None:
                self._directory = self._find()
            directory = self._directory
        with locked(directory / "zygote.lock"):
            if (directory / "zygote.failed").exists():
                raise RuntimeError("the servers' zygote failed to start:\n" + _log(directory))
            if not (directory / "zygote.ready").exists():
                self._start(directory)
        return directory

    @staticmethod
    def _find() -> pathlib.Path:
        if ENV not in os.environ:  # no pytest process named one (a script): this one owns it
            _named()
            atexit.register(unconfigure)
        directory = run_directory()
        directory.mkdir(mode=0o700, exist_ok=True)
        return directory

    def _start(self, directory: pathlib.Path) -> None:
        owner = os.environ[ENV].split(":", 1)[0]
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        with open(directory / LOG, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.server_forks", str(directory),
                 str(directory / "zygote.sock"), owner],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=log, start_new_session=True)  # not in this worker's process group
        answered = select.select([self._process.stdout], [], [], START_TIMEOUT)[0]
        line = self._process.stdout.readline().strip() if answered else b""
        self._process.stdout.close()
        if line != b"ready":
            self._process.kill()
            (directory / "zygote.failed").write_text(f"answered {line!r}")
            raise RuntimeError("the servers' zygote did not start "
                               f"({'exited' if answered else 'no answer'}):\n" + _log(directory))
        (directory / "zygote.ready").write_text(str(self._process.pid))

    def spawn(self, argv: List[str], log_path: pathlib.Path,
              module: Optional[str] = None) -> ForkedServer:
        """`python -m MODULE ARGV` (the server by default), stdout and stderr to log_path,
        forked from the run's zygote."""
        directory = self._ready()
        request: Request = {"argv": argv, "log": str(log_path)}
        if module is not None:
            request["module"] = module
        try:
            line = ask(directory, request)
        except OSError as error:
            raise RuntimeError(f"the servers' zygote is gone ({error!r}); its log:\n"
                               + _log(directory)) from error
        if not line.isdigit():
            raise RuntimeError(f"the servers' zygote answered {line!r}; its log:\n"
                               + _log(directory))
        return ForkedServer(int(line), directory / line)
