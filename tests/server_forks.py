"""Servers for the tests, forked from one process that has imported TensorFlow already.

Importing TensorFlow is most of what a server process costs to start, and the serving tests
start a dozen servers. `python -m tests.server_forks DIR SOCKET OWNER` imports it (and the
server's own modules, below) once, then answers one JSON request per connection on the Unix
socket SOCKET (the server's arguments and log file) by forking: the child runs
`serving.server` as `python -m serving.server` would (`runpy`, `__name__ == "__main__"`,
atexit handlers on the way out), with the log file as its stdout and stderr. The zygote
answers with the child's pid and, when the child ends, writes its exit code to DIR/<pid>.
A request may name another module to run so (a check that needs a process with TensorFlow
and none of the libraries the tests load: tests/core_ops.py). One zygote serves the whole
test run, all xdist workers (tests/shared_zygote.py starts and stops it); it ends when asked,
or once the OWNER process (the run's first pytest process) has gone, stopping what it forked.

Before the fork only TensorFlow, the web stack and the server's own modules are imported:
the server's modules start no thread, and no library that registers TensorFlow ops of its own
is loaded (both checked before the zygote says it is ready); TensorFlow's runtime and gRPC's
core are not started yet, so gRPC, the model and TensorFlow's runtime all start in the child,
as in a fresh process. The tests of the command line itself (exit codes, messages) still start
`python -m serving.server`.

`serve` (requests on stdin, one zygote per test process) is the same protocol for
tests/runner_forks.py.
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import resource
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVER = "serving.server"
Request = Dict[str, Any]  # one request to a zygote: argv, log, optionally module
LOG = "zygote.log"  # in the zygote's DIR: its stderr
CHILDREN = "children.jsonl"  # in DIR: one line per ended child (pid, log, code, CPU seconds)

# TensorFlow and the web stack (common first: TF_USE_LEGACY_KERAS before TensorFlow).
LIBRARIES = ("common", "fastapi", "tensorflow", "uvicorn")
# What a server's child imports before its first request, imported once in the zygote instead:
# the server's modules and what they import, starting no thread (checked). gRPC's module is
# imported; its core (threads, sockets) starts with the first channel or server, in the child.
SERVER_MODULES = ("uvicorn.lifespan.on", "uvicorn.loops.auto", "uvicorn.protocols.http.auto",
                  "uvicorn.protocols.websockets.auto", "fastapi_offline", "common.logs",
                  "tensorflow_serving.apis.prediction_log_pb2", "serving.app",
                  "serving.grpc_server", "serving.reload_config", "serving.security",
                  "serving.model_store")
# Libraries that register TensorFlow ops of their own: never in the zygote (tests/core_ops.py).
OP_LIBRARIES = ("tensorflow_transform", "tensorflow_text", "tfx_bsl", "struct2tensor",
                "tensorflow_io", "tensorflow_decision_forests")


# ------------------------------------------------------------------------------------------------
# The zygote (its own process)
# ------------------------------------------------------------------------------------------------

def run_as_main(log_path: str, main: Callable[[], object]) -> None:
    """In a forked child: `main()` as an interpreter running it would, stdout and stderr to
    the log (stdin empty), its SystemExit as the exit code; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the zygote blocks SIGCHLD to fork
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


def _reap(exits: pathlib.Path, running: Dict[int, str]) -> None:
    """SIGCHLD: each ended child's exit code (as Popen.returncode) to exits/<pid>, and a line
    with its CPU seconds to exits/CHILDREN."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        with open(exits / CHILDREN, "a") as lines:
            lines.write(json.dumps({"pid": pid, "log": running.pop(pid, ""), "code": code,
                                    "cpu": round(usage.ru_utime + usage.ru_stime, 3)}) + "\n")
        staging = exits / f".{pid}"
        staging.write_text(str(code))
        os.replace(staging, exits / str(pid))


def serve(exits: pathlib.Path, child: Callable[[Request], None]) -> None:
    """The zygote's loop on stdin, once its libraries are imported: `child(request)` forked
    for each request line, the pid answered on stdout; never returns."""
    running: Dict[int, str] = {}
    signal.signal(signal.SIGCHLD, lambda *_: _reap(exits, running))
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(pid, flush=True)
    os._exit(0)  # stdin closed: nothing to tear down that TensorFlow's exit would need


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has ended: only its parent has not looked yet
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_line(connection: socket.socket, limit: int = 1 << 20) -> bytes:
    """One line from a socket (b"" if it closed first), without a file object holding the
    socket open after close()."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _fork(request: Request, child: Callable[[Request], None], running: Dict[int, str],
          closed: List[socket.socket]) -> int:
    """`child(request)` in a forked child (the sockets in `closed` closed there); its pid,
    recorded in `running` before SIGCHLD could report it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            for each in closed:
                each.close()
            child(request)
        running[pid] = request["log"]
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return pid


def _stop_children(running: Dict[int, str], grace: float = 20.0) -> None:
    """SIGTERM to what is still running (a test process that died leaves its servers), then
    SIGKILL to what has not ended after `grace` seconds; returns once all are reaped."""
    for number, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in list(running):
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while running and time.monotonic() < deadline:
            time.sleep(0.05)  # the SIGCHLD handler reaps them


def serve_socket(exits: pathlib.Path, child: Callable[[Request], None], address: str,
                 owner: int) -> None:
    """The zygote's loop on the Unix socket `address`, once its libraries are imported: a
    JSON request line per connection, `child(request)` forked, its pid answered; `{"stop":
    true}` (or `owner` gone) stops the children and ends it; never returns."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    running: Dict[int, str] = {}
    signal.signal(signal.SIGCHLD, lambda *_: _reap(exits, running))
    print("ready", flush=True)
    os.dup2(2, 1)  # whoever started it may be gone long before it ends
    stopper: Optional[socket.socket] = None
    while stopper is None and alive(owner):
        if not select.select([listener], [], [], 1.0)[0]:
            continue
        connection, _ = listener.accept()
        connection.settimeout(60)
        try:
            line = read_line(connection)
            request = json.loads(line) if line.strip() else None
            if request is not None and request.get("stop"):
                stopper = connection
                continue
            if request is not None:
                pid = _fork(request, child, running, [listener, connection])
                connection.sendall(f"{pid}\n".encode())
        except (OSError, ValueError) as error:  # a client gone mid-request: not the zygote's end
            print(f"request dropped: {error!r}", file=sys.stderr, flush=True)
        if connection is not stopper:
            connection.close()
    _stop_children(running)
    me, children = (resource.getrusage(who) for who in
                    (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    (exits / "zygote.json").write_text(json.dumps({
        "cpu": round(me.ru_utime + me.ru_stime, 3),
        "children_cpu": round(children.ru_utime + children.ru_stime, 3)}))
    listener.close()
    os.unlink(address)
    if stopper is not None:
        try:
            stopper.sendall(b"stopped\n")
        except OSError:
            pass
    os._exit(0)  # nothing to tear down that TensorFlow's exit would need


def _tasks() -> int:
    """This process's OS threads (TensorFlow's import starts a few of its own)."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1


def _imported(libraries: Sequence[str], server_modules: Sequence[str]) -> None:
    """The imports, then a check of what the fork must not copy half of: threads other than
    the libraries' own (the server's modules start none; the runtimes of TensorFlow and gRPC
    would), and a library's own TensorFlow ops (tests/core_ops.py)."""
    import importlib

    for name in libraries:
        importlib.import_module(name)
    tasks = _tasks()
    for name in server_modules:
        importlib.import_module(name)
    loaded = [name for name in OP_LIBRARIES if name in sys.modules]
    if threading.active_count() != 1 or _tasks() != tasks or loaded:
        print(f"not forkable: {threading.active_count()} Python threads, {_tasks()} OS threads "
              f"({tasks} after the libraries), op libraries {loaded}", file=sys.stderr,
              flush=True)
        os._exit(1)


def zygote(exits: pathlib.Path, address: str, owner: int) -> None:
    _imported(LIBRARIES, SERVER_MODULES)
    serve_socket(exits, _run_module, address, owner)


# ------------------------------------------------------------------------------------------------
# The tests' side
# ------------------------------------------------------------------------------------------------

class ForkedServer:
    """The part of subprocess.Popen's interface the serving fixtures use, for a forked server
    (a child of the zygote, not of this process: its exit code comes from the zygote)."""

    reap_grace = 30.0  # seconds from a child's end to its exit file, at most (a loaded zygote)

    def __init__(self, pid: int, exit_file: pathlib.Path) -> None:
        self.pid = pid
        self._exit_file = exit_file
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        """Its exit code once ended; a RuntimeError if it ended and its zygote, gone, never
        wrote one (so a dead zygote fails a test at once rather than by a timeout)."""
        if self.returncode is None and not self._exit_file.exists() and not alive(self.pid):
            deadline = time.monotonic() + self.reap_grace  # reaped: the file comes next
            while not self._exit_file.exists():
                if time.monotonic() > deadline:
                    log = self._exit_file.parent / LOG
                    raise RuntimeError(
                        f"process {self.pid} ended and its zygote wrote no exit code: the "
                        "zygote is gone. Its log:\n"
                        + (log.read_text(errors="replace") if log.exists() else "(none)"))
                time.sleep(0.05)
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
    """A zygote on stdin of this test process, started on first use: `python -m MODULE DIR`
    in `cwd` with `env` (tests/runner_forks.py's)."""

    def __init__(self, module: str, cwd: pathlib.Path = PROJECT_ROOT,
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
            with open(self._directory / LOG, "ab") as log:
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
                               + (self._directory / LOG).read_text(errors="replace"))
        return line

    def spawn(self, argv: List[str], log_path: pathlib.Path,
              module: Optional[str] = None) -> ForkedServer:
        """The zygote's command with ARGV, stdout and stderr to log_path, forked."""
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
    zygote(pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
