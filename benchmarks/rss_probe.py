"""Wall time, CPU seconds and peak memory of each component of one `local_runner.py` run,
from outside it.

Why from outside: every component runs in the runner's one process (and, in Beam's
multi_processing mode, in its worker processes too), so a component's peak memory and CPU are
only seen by sampling the whole process tree; the samples are matched to components by the start
and end times ML Metadata records for each execution. CPU seconds are user plus system time of
the runner, of the children it has reaped (their whole lives) and of the descendants still
running, so a worker that exits between two samples is still counted in full; a component's CPU
is the difference of that sum, interpolated between samples, at its end and at its start (off
by at most a sample's worth of the machine's cores at each end). "Cores used" is CPU over wall
seconds: what the ceiling of parallel work on this machine is measured against.

Memory is the sum of the tree's proportional set sizes (PSS): each resident page counted once,
divided among the processes that share it. That is the memory the run occupies, which is what
"how much memory does this run need" asks. The resident set (RSS) counts a shared page once per
process: the runner's pages that a forked worker (or the workers' zygote) shares copy-on-write,
and TensorFlow's libraries, would be counted once per process of the tree. The runner's RSS plus
its descendants' unique sets (USS) would undercount instead: pages shared by the forked workers
with each other but no longer with the runner (the runner wrote its copy) are nobody's unique
pages. PSS also divides the pages shared with processes outside the run (the C library, another
program's TensorFlow), so the figure is lower on a machine running other TensorFlow programs.
Reading PSS walks each process's page tables (/proc/PID/smaps_rollup), which takes the sampler's
CPU in proportion to the memory mapped, so memory is read at most as often as keeps that under
MEMORY_SHARE of one core (every SAMPLE_SECONDS while it is cheap); CPU every SAMPLE_SECONDS.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import os
import resource
import pathlib
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

import psutil

SAMPLE_SECONDS = 0.2
MEMORY_SHARE = 0.1  # the most of one core the memory readings may keep busy


@dataclasses.dataclass
class ComponentCost:
    """One component's wall seconds, the CPU seconds and peak memory (PSS) of the run's process
    tree while it ran, the cores that kept busy (CPU over wall seconds), and how many memory
    readings fell inside it (0: the peak is the larger of the readings either side)."""

    seconds: float
    peak_pss_mb: float
    cpu_seconds: float
    cores_used: float
    memory_samples: int


@dataclasses.dataclass
class Sample:
    """The process tree at one moment: its PSS in bytes (None when not read at this sample)
    and its CPU seconds so far."""

    at: float
    memory: Optional[int]
    cpu: float


def tree_pss_bytes(members: Sequence[psutil.Process]) -> int:
    """The proportional set size of these processes together (see the module's docstring)."""
    total = 0
    for member in members:
        try:
            total += member.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or a zombie
            continue
    return total


def tree_members(process: psutil.Process) -> List[psutil.Process]:
    """`process` and its descendants (Beam's workers), or none when it is gone."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User and system seconds of `process`, of the children it has reaped and of the
    descendants still running."""
    try:
        own = process.cpu_times()  # before listing children: one reaped in between is missed
        members = process.children(recursive=True)  # once, not counted twice
    except psutil.NoSuchProcess:
        return 0.0
    total = own.user + own.system + own.children_user + own.children_system
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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


def run_measured(args: Sequence[str], metadata_path: pathlib.Path,
                 env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Runs `python local_runner.py *args` (which writes `metadata_path`): per-component
    costs, total wall and CPU seconds, exit code and the last lines it logged."""
    started = time.monotonic()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        [sys.executable, "local_runner.py", *args], stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})},
        cwd=pathlib.Path(__file__).resolve().parent.parent)
    probe = psutil.Process(process.pid)
    samples: List[Sample] = []
    done = threading.Event()

    def sampler() -> None:
        next_memory = 0.0
        while not done.is_set():
            at, cpu, memory = time.time(), tree_cpu_seconds(probe), None
            if time.monotonic() >= next_memory:
                spent = time.thread_time()
                memory = tree_pss_bytes(tree_members(probe))
                spent = time.thread_time() - spent
                next_memory = time.monotonic() + max(SAMPLE_SECONDS, spent / MEMORY_SHARE)
            # A child reaped between two reads is missed once; the sum never goes back.
            samples.append(Sample(at, memory, max(cpu, samples[-1].cpu if samples else 0.0)))
            done.wait(SAMPLE_SECONDS)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    assert process.stderr is not None
    log = collections.deque(process.stderr, maxlen=40)
    code = process.wait()
    done.set()
    thread.join()
    seconds = time.monotonic() - started
    # The runner's whole life, its reaped workers included (the kernel's count on wait).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime + children.ru_stime
           - children_before.ru_utime - children_before.ru_stime)
    costs = component_costs(samples, metadata_path) if code in (0, 3) else {}
    return {"exit_code": code, "total_seconds": seconds, "total_cpu_seconds": cpu,
            "cores_used": cpu / seconds if seconds > 0 else 0.0,
            "components": {name: dataclasses.asdict(cost) for name, cost in costs.items()},
            **largest_gaps(samples),
            "log_tail": [line.rstrip("\n") for line in log]}
