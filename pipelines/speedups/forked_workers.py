"""Beam's multi_processing workers forked from a copy of the runner, not started afresh.

Why: in multi_processing the DirectRunner starts each worker as a new
`python -m apache_beam.runners.worker.sdk_worker_main`, which imports TensorFlow, TFDV and TFT
again before its first bundle, for every worker of every component; those imports are most of
the CPU seconds multi_processing spends over in_memory (benchmarks/results/beam_modes.md), and
with them it loses to in_memory on two cores. Beam has no setting for how its workers start.

So inside `forked()` a copy of this process (the "zygote", made by fork when the run starts,
while only the main thread runs and before TensorFlow's runtime or any gRPC server exists) waits
for requests; the DirectRunner's worker command is then served by the zygote forking a child
that runs the same `sdk_worker_main.main` with the same environment, everything imported
already. The runner sees a process with the stock one's pid, wait, poll and kill. Any other
command, or a run entered with threads already running (a fork would copy their locks but not
them), goes to the stock `subprocess.Popen`, which is logged once.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from typing import Any, Dict, Iterator, Optional, Sequence

from pipelines.speedups import version_check
from pipelines.speedups.replaced import replaced

log = logging.getLogger("babyweight.speedups")

WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"
_MESSAGE_BYTES = 1 << 20  # one request: a worker's environment (a few KB)
_REAP_SECONDS = 0.05  # how often the zygote looks for workers that exited


def worker_command() -> str:
    """The command line the DirectRunner gives multi_processing workers (Beam's fn_runner)."""
    return f"{sys.executable} -m {WORKER_MODULE}"


def uses_worker_processes(beam_pipeline_args: Sequence[str]) -> bool:
    """Whether these Beam arguments start DirectRunner worker processes on this machine."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipelines.speedups.local_dependencies import runs_locally

    mode = PipelineOptions(flags=list(beam_pipeline_args)).view_as(
        DirectOptions).direct_running_mode
    return mode == "multi_processing" and runs_locally(beam_pipeline_args)


def why_not_fork() -> Optional[str]:
    """Why this process cannot be copied safely now, or None when it can."""
    if threading.active_count() != 1:
        return f"{threading.active_count()} threads are running"
    tf_context = sys.modules.get("tensorflow.python.eager.context")
    if tf_context is not None:
        context = getattr(tf_context, "_context", None)
        initialized = getattr(context, "_initialized", None) if context is not None else False
        if initialized is None:
            return "TensorFlow's runtime state is unknown to this release"
        if initialized:
            return "TensorFlow's runtime (its thread pools) has started"
    return None


def _run_worker(environment: Dict[str, str]) -> None:
    """In the forked child: Beam's worker main, as the stock command runs it; never returns."""
    code = 0
    try:
        os.environ.clear()
        os.environ.update(environment)
        root = logging.getLogger()
        for handler in list(root.handlers):  # a new process has none; the worker adds its own
            root.removeHandler(handler)
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main([])
    except BaseException:  # pylint: disable=broad-except - reported as the exit code, as stock
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # pylint: disable=protected-access - a forked child never returns


def _serve(control: socket.socket) -> None:
    """The zygote's loop: fork a worker per request, report each one's exit; never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides; its Ctrl-C ends us
    channels: Dict[int, socket.socket] = {}  # worker pid -> where its exit code goes
    try:
        while True:
            ready, _, _ = select.select([control], [], [], _REAP_SECONDS)
            if ready:
                message, fds, _, _ = socket.recv_fds(control, _MESSAGE_BYTES, 1)
                if not message:  # the runner closed its end (or died): stop
                    break
                channel = socket.socket(fileno=fds[0])
                pid = os.fork()
                if pid == 0:
                    for inherited in (control, channel, *channels.values()):
                        inherited.close()
                    _run_worker(pickle.loads(message))
                channels[pid] = channel
                channel.sendall(pid.to_bytes(8, "little", signed=True))
            while channels:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                channel = channels.pop(pid, None)
                if channel is not None:
                    with contextlib.suppress(OSError):
                        channel.sendall(os.waitstatus_to_exitcode(status).to_bytes(
                            8, "little", signed=True))
                    channel.close()
    finally:
        for pid in channels:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os._exit(0)  # pylint: disable=protected-access


class ForkedWorker:
    """A worker forked by the zygote, with the part of Popen the DirectRunner uses."""

    def __init__(self, control: socket.socket, lock: threading.Lock,
                 environment: Dict[str, str]) -> None:
        self._channel, theirs = socket.socketpair()
        with lock:
            socket.send_fds(control, [pickle.dumps(dict(environment))], [theirs.fileno()])
        theirs.close()
        self.pid = self._read()
        if self.pid is None:
            raise RuntimeError("The worker zygote stopped before forking a Beam worker")
        self.returncode: Optional[int] = None

    def _read(self) -> Optional[int]:
        data = b""
        while len(data) < 8:
            chunk = self._channel.recv(8 - len(data))
            if not chunk:
                return None
            data += chunk
        return int.from_bytes(data, "little", signed=True)

    def wait(self) -> int:
        if self.returncode is None:
            code = self._read()
            self.returncode = 1 if code is None else code  # zygote gone: not a clean exit
            self._channel.close()
        return self.returncode

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            ready, _, _ = select.select([self._channel], [], [], 0)
            if ready:
                self.wait()
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


class _Subprocess:
    """Stands in for the `subprocess` module of Beam's local_job_service: Popen of the worker
    command goes to the zygote, anything else to the stock Popen."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, args: Any, *rest: Any, **kwargs: Any) -> Any:  # noqa: N802 - as stock
        if rest or args != worker_command() or set(kwargs) - {"shell", "env"}:
            return subprocess.Popen(args, *rest, **kwargs)
        return ForkedWorker(self._control, self._lock, kwargs.get("env") or dict(os.environ))


@contextlib.contextmanager
def _zygote() -> Iterator[socket.socket]:
    """A forked copy of this process serving worker requests, for the length of the block."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _serve(theirs)
    theirs.close()
    try:
        yield ours
    finally:
        ours.close()  # the zygote stops when it reads the end of its requests
        os.waitpid(pid, 0)


@contextlib.contextmanager
def forked(beam_pipeline_args: Sequence[str]) -> Iterator[None]:
    """While inside, multi_processing workers are forked from a copy of this process, when
    `beam_pipeline_args` (the run's) start worker processes at all."""
    if (not uses_worker_processes(beam_pipeline_args)
            or not version_check.in_effect("forked_workers")):
        yield
        return
    reason = why_not_fork()
    if reason is not None:
        log.info("Beam's multi_processing workers start as new processes: %s", reason)
        yield
        return
    from apache_beam.runners.portability import local_job_service

    with _zygote() as control, replaced(local_job_service, "subprocess",
                                        lambda stock: _Subprocess(control)):
        yield
