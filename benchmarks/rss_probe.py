"""Wall time, CPU seconds and peak memory of each component of one `local_runner.py` run,
from outside it.

Why from outside: every component runs in the runner's one process (and, in Beam's
multi_processing mode, in its worker processes too), so a component's peak memory and CPU are
only seen by sampling the whole process tree; the samples are matched to components by the start
and end times ML Metadata records for each execution.

CPU seconds count each process of the run exactly once, whoever starts or waits for it. The
kernel adds a process's user and system time, and that of the children it waited for, to its
parent's "children" times when the parent waits for it. So the sum, over the run's processes
still there (zombies too), of their own and their children's times, plus what this process has
waited for, counts every process once: alive, it counts itself; waited for, it is in its
reaper's count. Summing only the runner's children times would miss the workers until whoever
waits for them is itself waited for: Beam's stock workers are `sh -c python ...` children of the
runner, waited for by the shell; the forked workers (pipelines/speedups/forked_workers.py) are
children of a zygote that lives as long as the run. Processes whose parent exits first (a killed
shell's worker, a daemon's double fork) would become init's and be lost, so this process makes
itself their subreaper (PR_SET_CHILD_SUBREAPER) for the run and waits for them. Each sample reads
this process's waited-for times first, then the run's processes parents first, from one snapshot
of the parent links: a process waited for during the reading is then missed once (the sum never
goes back), never counted twice. The run's total is the kernel's own count once every process
of it was waited for (processes still running LINGER_SECONDS after the runner exits are killed,
and the results say how many). A component's CPU is the difference of the sampled sum,
interpolated between samples, at its end and at its start (off by at most a sample interval's
worth of the machine's cores at each end). "Cores used" is CPU over wall seconds: what the
ceiling of parallel work on this machine is measured against.

Memory counts each resident page of the run once, however many of its processes map it: the
memory the run occupies, which is what "how much memory does this run need" asks. Summing
resident sets (RSS) would count a shared page once per process: the runner's pages that a forked
worker (or the workers' zygote) shares copy-on-write, and TensorFlow's libraries. The runner's RSS
plus its descendants' unique sets (USS) would undercount instead: pages the forked workers share
with each other but no longer with the runner (the runner wrote its own copy) are nobody's unique
pages. So: the sum of the processes' proportional set sizes (PSS, each page divided among the
processes that share it) of their anonymous memory, which only processes forked from one another
share, so only the run's; plus the largest file-backed resident set of any of them (the
libraries and files every process of the run maps, once). The PSS of file pages would be divided
with every other program on the machine that maps the same libraries, so it would fall and rise
with what else runs. Reading /proc/PID/smaps_rollup walks the process's page tables, which takes
the sampler's CPU in proportion to the memory mapped, so memory is read at most as often as keeps
that under MEMORY_SHARE of one core (every SAMPLE_SECONDS while it is cheap); CPU every
SAMPLE_SECONDS.
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import ctypes
import dataclasses
import logging
import os
import pathlib
import resource
import subprocess
import sys
import threading
import time
from typing import Deque, Dict, Iterator, List, Optional, Sequence, Set

import psutil

log = logging.getLogger("babyweight.benchmarks")

SAMPLE_SECONDS = 0.2
LINGER_SECONDS = 30.0  # how long processes the runner left may take to exit before they are killed
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37  # linux/prctl.h
MEMORY_SHARE = 0.05  # the most of one core the memory readings may keep busy


@dataclasses.dataclass
class ComponentCost:
    """One component's wall seconds, the CPU seconds and peak memory of the run's process
    tree while it ran, the cores that kept busy (CPU over wall seconds), and how many memory
    readings fell inside it (0: the peak is the larger of the readings either side)."""

    seconds: float
    peak_memory_mb: float
    cpu_seconds: float
    cores_used: float
    memory_samples: int


@dataclasses.dataclass
class Sample:
    """The process tree at one moment: its memory in bytes (None when not read at this sample)
    and its CPU seconds so far."""

    at: float
    memory: Optional[int]
    cpu: float


def rollup(pid: int) -> Dict[str, int]:
    """/proc/PID/smaps_rollup in bytes ({} for a process gone or a zombie)."""
    try:
        text = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) * 1024
    if fields.get("Rss") and "Pss_Anon" not in fields:
        raise RuntimeError("/proc/PID/smaps_rollup has no Pss_Anon (Linux 5.10 or later): the "
                           "run's memory cannot be told apart from other programs'")
    return fields


def tree_memory_bytes(members: Sequence[psutil.Process]) -> int:
    """The memory these processes occupy together (see the module's docstring)."""
    anonymous, files = 0, 0
    for member in members:
        fields = rollup(member.pid)
        anonymous += fields.get("Pss_Anon", 0)
        files = max(files, fields.get("Rss", 0) - fields.get("Anonymous", 0))
    return anonymous + files


class PacedMemory:
    """Memory readings of a process tree no more often than keeps them under MEMORY_SHARE of
    one core (every `interval` seconds while they are cheap): smaps_rollup walks page tables."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0

    def read(self, members: Sequence[psutil.Process]) -> Optional[int]:
        """The tree's memory (tree_memory_bytes), or None when it is not yet due."""
        if time.monotonic() < self._next:
            return None
        spent = time.thread_time()
        memory = tree_memory_bytes(members)
        spent = time.thread_time() - spent
        self._next = time.monotonic() + max(self._interval, spent / MEMORY_SHARE)
        return memory


class RunTree:
    """The processes of one run: its runner, the runner's descendants, and the processes this
    one adopted (as their subreaper) while the run went on, with its CPU seconds so far."""

    def __init__(self, runner: int, foreign: Set[int], reaped_before: float) -> None:
        self.runner = runner
        self._me = os.getpid()
        self._foreign = foreign  # this process's children that are not the run's
        self._reaped_before = reaped_before
        self._adopted: List[int] = []

    def members(self) -> List[psutil.Process]:
        """The run's processes still there (zombies too), each after its parent: one snapshot
        of the machine's parent links."""
        processes = {p.pid: p for p in psutil.process_iter(["ppid"])}
        children: Dict[int, List[int]] = collections.defaultdict(list)
        for pid, process in processes.items():
            children[process.info["ppid"]].append(pid)
        self._adopted = [pid for pid in children[self._me]
                         if pid != self.runner and pid not in self._foreign]
        order = [pid for pid in (self.runner, *self._adopted) if pid in processes]
        for pid in order:  # grows while it is read: breadth first
            order.extend(children[pid])
        return [processes[pid] for pid in order]

    def reap_adopted(self) -> None:
        """Waits for the adopted processes that have exited (as init would have)."""
        for pid in self._adopted:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def cpu_seconds(self, members: Sequence[psutil.Process]) -> float:
        """User and system seconds of the run so far (see the module's docstring)."""
        total = reaped_cpu_seconds() - self._reaped_before  # first: this process reaps last
        for member in members:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:  # reaped since the snapshot: in its reaper's times
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def finish(self, linger: float) -> int:
        """After the runner was waited for: waits up to `linger` seconds for the processes it
        left to exit, kills those still running then, and reaps them all; how many it killed."""
        killed: Set[int] = set()
        deadline = time.monotonic() + linger
        while True:
            self.reap_adopted()
            members = self.members()
            if not members:
                return len(killed)
            if time.monotonic() > deadline:
                for member in members:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        if member.status() != psutil.STATUS_ZOMBIE:
                            member.kill()
                            killed.add(member.pid)
            time.sleep(SAMPLE_SECONDS / 4)


def reaped_cpu_seconds() -> float:
    """User and system seconds of this process's children it has waited for (whole lives)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """This process the "child subreaper" of its descendants while inside (Linux's prctl): a
    process whose parent exits becomes this process's child, not init's."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int(0)
    if (libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0) != 0
            or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0):
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(error)}: the run's "
                      "orphaned processes could not be counted")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


def cpu_at(samples: List[Sample], at: float) -> float:
    """The tree's CPU seconds at time `at`, interpolated linearly between the samples."""
    times = [sample.at for sample in samples]
    index = bisect.bisect_left(times, at)
    if index == 0:
        return samples[0].cpu if samples else 0.0
    if index == len(samples):
        return samples[-1].cpu
    before, after = samples[index - 1], samples[index]
    share = (at - before.at) / (after.at - before.at) if after.at > before.at else 1.0
    return before.cpu + share * (after.cpu - before.cpu)


def cost_between(samples: List[Sample], start: float, end: float,
                 seconds: float) -> ComponentCost:
    """The cost of the span [start, end] (`seconds` long by ML Metadata's clock)."""
    read = [sample for sample in samples if sample.memory is not None]
    during = [sample.memory for sample in read if start <= sample.at <= end]
    if not during:  # shorter than the memory readings' interval: the readings either side
        during = [sample.memory for sample in (
            next((s for s in reversed(read) if s.at < start), None),
            next((s for s in read if s.at > end), None)) if sample is not None]
    cpu = max(0.0, cpu_at(samples, end) - cpu_at(samples, start))
    inside = sum(1 for sample in read if start <= sample.at <= end)
    return ComponentCost(seconds, max(during, default=0) / 2**20, cpu,
                         cpu / seconds if seconds > 0 else 0.0, inside)


def largest_gaps(samples: List[Sample]) -> Dict[str, float]:
    """The longest wall seconds between two samples, and between two memory readings: how
    fine the per-component figures are."""
    def gap(times: List[float]) -> float:
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    return {"largest_sample_gap_seconds": gap([s.at for s in samples]),
            "largest_memory_gap_seconds": gap([s.at for s in samples if s.memory is not None])}


def component_costs(samples: List[Sample], metadata_path: pathlib.Path
                    ) -> Dict[str, ComponentCost]:
    """Each component's seconds (ML Metadata's execution times), and the CPU seconds and the
    peak of the samples taken while it ran."""
    from reports import mlmd

    (run,) = mlmd.list_runs(mlmd.open_store(metadata_path))
    return {component.node_id: cost_between(samples, component.started.timestamp(),
                                            component.finished.timestamp(), component.seconds)
            for component in run.components}


@dataclasses.dataclass
class TreeRun:
    """One measured command: its exit code, wall seconds (to its exit), the kernel's CPU
    seconds of its whole tree, the samples, how many processes it left running (killed after
    the linger), its log's end."""

    exit_code: int
    seconds: float
    cpu_seconds: float
    samples: List[Sample]
    left_running: int
    log_tail: List[str]
    sampler_cpu_seconds: float


def sample_tree(tree: RunTree, samples: List[Sample], done: threading.Event,
                cost: Dict[str, float]) -> None:
    """The sampler: CPU every SAMPLE_SECONDS, memory as often as MEMORY_SHARE allows; its own
    CPU seconds in cost["sampler"] (taken from the machine's cores, not the run's count)."""
    paced, started = PacedMemory(SAMPLE_SECONDS), time.thread_time()
    while not done.is_set():
        tree.reap_adopted()
        at, members = time.time(), tree.members()
        cpu = tree.cpu_seconds(members)
        memory = paced.read(members)
        # A process reaped between two reads is missed once; the sum never goes back.
        samples.append(Sample(at, memory, max(cpu, samples[-1].cpu if samples else 0.0)))
        cost["sampler"] = time.thread_time() - started
        done.wait(SAMPLE_SECONDS)


def measure_tree(command: Sequence[str], cwd: Optional[pathlib.Path] = None,
                 env: Optional[Dict[str, str]] = None, linger: float = LINGER_SECONDS
                 ) -> TreeRun:
    """Runs `command`, sampling its process tree; its total CPU is the kernel's count of the
    whole tree, taken once every process of it was waited for."""
    with adopting_orphans():
        foreign = {child.pid for child in psutil.Process().children()}
        reaped_before, started = reaped_cpu_seconds(), time.monotonic()
        process = subprocess.Popen(list(command), stderr=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
        tree, samples, done = RunTree(process.pid, foreign, reaped_before), [], threading.Event()
        cost: Dict[str, float] = {}
        log: Deque[str] = collections.deque(maxlen=40)
        assert process.stderr is not None
        # A thread: a process left running may hold the log open after the runner exits.
        reader = threading.Thread(target=log.extend, args=(process.stderr,), daemon=True)
        sampler = threading.Thread(target=sample_tree, args=(tree, samples, done, cost),
                                   daemon=True)
        reader.start()
        sampler.start()
        code = process.wait()
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        left = tree.finish(linger)
        reader.join()
        cpu = reaped_cpu_seconds() - reaped_before
    samples.append(Sample(time.time(), None, max(cpu, samples[-1].cpu if samples else 0.0)))
    return TreeRun(code, seconds, cpu, samples, left, [line.rstrip("\n") for line in log],
                   cost.get("sampler", 0.0))


def run_measured(args: Sequence[str], metadata_path: pathlib.Path,
                 env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Runs `python local_runner.py *args` (which writes `metadata_path`): per-component
    costs, total wall and CPU seconds, exit code and the last lines it logged."""
    run = measure_tree([sys.executable, "local_runner.py", *args],
                       pathlib.Path(__file__).resolve().parent.parent,
                       {**os.environ, **(env or {})})
    if run.left_running:
        log.warning("the run left %d processes running; they were killed after %.0f s "
                    "(their CPU is counted)", run.left_running, LINGER_SECONDS)
    costs = component_costs(run.samples, metadata_path) if run.exit_code in (0, 3) else {}
    return {"exit_code": run.exit_code, "total_seconds": run.seconds,
            "total_cpu_seconds": run.cpu_seconds,
            "cores_used": run.cpu_seconds / run.seconds if run.seconds > 0 else 0.0,
            "components": {name: dataclasses.asdict(cost) for name, cost in costs.items()},
            **largest_gaps(run.samples), "sampler_cpu_seconds": run.sampler_cpu_seconds,
            "left_running": run.left_running,
            "log_tail": run.log_tail}
