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


@dataclasses.dataclass
class ComponentCost:
    """One component's wall seconds, the CPU seconds and peak resident memory of the run's
    process tree while it ran, and the cores that kept busy (CPU over wall seconds)."""

    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    cores_used: float


@dataclasses.dataclass
class Sample:
    """The process tree at one moment: resident bytes and CPU seconds so far."""

    at: float
    rss: int
    cpu: float


def tree_rss_bytes(process: psutil.Process) -> int:
    """Resident bytes of `process` and all its descendants (Beam's workers)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


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
    during = [sample.rss for sample in samples if start <= sample.at <= end]
    cpu = max(0.0, cpu_at(samples, end) - cpu_at(samples, start))
    return ComponentCost(seconds, max(during, default=0) / 2**20, cpu,
                         cpu / seconds if seconds > 0 else 0.0)


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
        while not done.is_set():
            at, rss, cpu = time.time(), tree_rss_bytes(probe), tree_cpu_seconds(probe)
            # A child reaped between two reads is missed once; the sum never goes back.
            samples.append(Sample(at, rss, max(cpu, samples[-1].cpu if samples else 0.0)))
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
            "log_tail": [line.rstrip("\n") for line in log]}
