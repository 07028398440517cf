"""Servers for the tests, forked from one process that has imported TensorFlow already.

Importing TensorFlow is most of what a server process costs to start, and the serving tests
start a dozen servers. `python -m tests.server_forks DIR` imports it once, then reads one JSON
request a line from stdin (the server's arguments and log file) and forks: the child runs
`serving.server` as `python -m serving.server` would (`runpy`, `__name__ == "__main__"`,
atexit handlers on the way out), with the log file as its stdout and stderr. The zygote
answers with the child's pid and, when the child ends, writes its exit code to DIR/<pid>.
A request may name another module to run so (a check that needs a process with TensorFlow
and none of the libraries the tests load: tests/core_ops.py).

Nothing but TensorFlow (and the pure-Python web stack) is imported before the fork: gRPC,
the model and TensorFlow's runtime all start in the child, as in a fresh process. The tests
of the command line itself (exit codes, messages) still start `python -m serving.server`.
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVER = "serving.server"
Request = Dict[str, Any]  # one line on the zygote's stdin: argv, log, optionally module


# ------------------------------------------------------------------------------------------------
# The zygote (its own process)
# ------------------------------------------------------------------------------------------------

def run_as_main(log_path: str, main: Callable[[], object]) -> None:
    """In a forked child: `main()` as an interpreter running it would, stdout and stderr to
    the log (stdin empty), its SystemExit as the exit code; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    code: object = 0
    try:
        main()
    except SystemExit as done:
        code = done.code
    except BaseException:  # noqa: BLE001 - printed to the log, as the interpreter would
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # os._exit skips them; a server's atexit handlers must run
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr, flush=True)
            code = 1
        os._exit(code)


def _run_module(request: Request) -> None:
    """In the forked child: `python -m MODULE ARGV > LOG 2>&1` (the server by default), then
    exit."""
    module = request.get("module", SERVER)

    def main() -> None:
        sys.argv = [str(PROJECT_ROOT.joinpath(*module.split(".")).with_suffix(".py")),
                    *request["argv"]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    run_as_main(request["log"], main)


def _reap(exits: pathlib.Path) -> None:
    """SIGCHLD: each ended child's exit code (as Popen.returncode) to exits/<pid>."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        staging = exits / f".{pid}"
        staging.write_text(str(os.waitstatus_to_exitcode(status)))
        os.replace(staging, exits / str(pid))


def zygote(exits: pathlib.Path) -> None:
    import common  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow, as serving.server does)
    import fastapi  # noqa: F401
    import tensorflow  # noqa: F401
    import uvicorn  # noqa: F401

    serve(exits, _run_module)


def serve(exits: pathlib.Path, child: Callable[[Request], None]) -> None:
    """The zygote's loop, once its libraries are imported: `child(request)` forked for each
    request line on stdin, the pid answered on stdout; never returns."""
    signal.signal(signal.SIGCHLD, lambda *_: _reap(exits))
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(pid, flush=True)
    os._exit(0)  # stdin closed: nothing to tear down that TensorFlow's exit would need


# ------------------------------------------------------------------------------------------------
# The tests' side
# ------------------------------------------------------------------------------------------------

class ForkedServer:
    """The part of subprocess.Popen's interface the serving fixtures use, for a forked server
    (a child of the zygote, not of this process: its exit code comes from the zygote)."""

    def __init__(self, pid: int, exit_file: pathlib.Path) -> None:
        self.pid = pid
        self._exit_file = exit_file
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None and self._exit_file.exists():
            self.returncode = int(self._exit_file.read_text())
        return self.returncode

    def _signal(self, number: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


class Zygote:
    """The zygote process of this test process, started on first use: `python -m MODULE DIR`
    in `cwd` with `env` (by default this module's, serving servers, here)."""

    def __init__(self, module: str = "tests.server_forks", cwd: pathlib.Path = PROJECT_ROOT,
                 env: Optional[Dict[str, str]] = None) -> None:
        self._module, self._cwd = module, cwd
        self._env = env or {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        self._directory = pathlib.Path()
        self._lock = threading.Lock()
        self._process: Optional[subprocess.Popen] = None

    def _started(self) -> subprocess.Popen:
        if self._process is None:
            self._directory = pathlib.Path(tempfile.mkdtemp(
                prefix=self._module.rsplit(".", 1)[-1].replace("_", "-") + "-"))
            with open(self._directory / "zygote.log", "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", self._module, str(self._directory)],
                    cwd=self._cwd, env=self._env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log)
            self._expect("ready")
            atexit.register(self.close)
        elif self._process.poll() is not None:
            self._expect("a running zygote")  # raises, with its log
        return self._process

    def _expect(self, what: str) -> str:
        line = self._process.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"the zygote {self._module} exited ({what} expected); "
                               "its log:\n"
                               + (self._directory / "zygote.log").read_text(errors="replace"))
        return line

    def spawn(self, argv: List[str], log_path: pathlib.Path,
              module: Optional[str] = None) -> ForkedServer:
        """The zygote's command with ARGV (`python -m MODULE ARGV` for this module's, the
        server by default), stdout and stderr to log_path, forked."""
        request: Request = {"argv": argv, "log": str(log_path)}
        if module is not None:
            request["module"] = module
        with self._lock:
            process = self._started()
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            pid = int(self._expect("a pid"))
        return ForkedServer(pid, self._directory / str(pid))

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":
    zygote(pathlib.Path(sys.argv[1]))
