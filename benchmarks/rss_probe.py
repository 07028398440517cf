"""Wall time and peak memory of each component of one `local_runner.py` run, from outside it.

Why from outside: every component runs in the runner's one process (and, in Beam's
multi_processing mode, in its worker processes too), so a component's peak memory is only seen
by sampling the resident set of the whole process tree; the samples are matched to components
by the start and end times ML Metadata records for each execution.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import psutil

SAMPLE_SECONDS = 0.2


@dataclasses.dataclass
class ComponentCost:
    """One component's wall seconds and peak resident memory of the run's process tree."""

    seconds: float
    peak_rss_mb: float


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


def component_costs(samples: List[Tuple[float, int]], metadata_path: pathlib.Path
                    ) -> Dict[str, ComponentCost]:
    """Each component's seconds (ML Metadata's execution times) and the peak of the samples
    taken while it ran."""
    from reports import mlmd

    (run,) = mlmd.list_runs(mlmd.open_store(metadata_path))
    costs = {}
    for component in run.components:
        start, end = component.started.timestamp(), component.finished.timestamp()
        during = [rss for at, rss in samples if start <= at <= end]
        costs[component.node_id] = ComponentCost(component.seconds,
                                                 max(during, default=0) / 2**20)
    return costs


def run_measured(args: Sequence[str], metadata_path: pathlib.Path,
                 env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Runs `python local_runner.py *args` (which writes `metadata_path`): per-component
    costs, total seconds, exit code and the last lines it logged."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "local_runner.py", *args], stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})},
        cwd=pathlib.Path(__file__).resolve().parent.parent)
    probe = psutil.Process(process.pid)
    samples: List[Tuple[float, int]] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            samples.append((time.time(), tree_rss_bytes(probe)))
            done.wait(SAMPLE_SECONDS)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    assert process.stderr is not None
    log = collections.deque(process.stderr, maxlen=40)
    code = process.wait()
    done.set()
    thread.join()
    costs = component_costs(samples, metadata_path) if code in (0, 3) else {}
    return {"exit_code": code, "total_seconds": time.monotonic() - started,
            "components": {name: dataclasses.asdict(cost) for name, cost in costs.items()},
            "log_tail": [line.rstrip("\n") for line in log]}
