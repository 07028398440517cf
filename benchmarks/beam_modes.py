"""Beam's in_memory, multi_threading and multi_processing modes on StatisticsGen and Transform.

For each size, the synthetic warehouse and ExampleGen's shards (4 per split) are written once;
then each component's executor (the local pipeline's: batched reads, the run's speed-ups on)
runs in a fresh process per mode (`benchmarks/beam_mode_run.py`), the modes alternating in
order from round to round, so that a change in the machine's load falls on both. Reported per
mode: the median wall seconds, the CPU seconds of the runner's process, of Beam's worker
processes and of the busiest thread, the cores used (CPU over wall seconds) and possible (CPU
over the busiest thread's), the peak memory of the process tree (each shared page once), the
speed-up of each mode's median over in_memory's from the same run, and the speed-up on idle
cores that the CPU seconds give (each run's least wall time: its CPU spread over the cores, and
at least its busiest thread's CPU). On a shared machine wall seconds and cores used follow the
others' load (the 1-minute load average is printed beside them); CPU seconds much less so.

    python -m benchmarks.beam_modes --sizes 300000 2000000 --rounds 3
    python -m benchmarks.beam_modes --sizes 1000000 --modes in_memory multi_threading

`python -m benchmarks.scale --compare-modes` runs the same at its --sizes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks import harness
from benchmarks.harness import markdown_table, publish
from common.config import setting

log = logging.getLogger("babyweight.benchmarks")

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPONENTS = ("StatisticsGen", "Transform")
MODES = ("in_memory", "multi_threading", "multi_processing")


@dataclasses.dataclass(frozen=True)
class ModesConfig:
    """How the modes are compared (also benchmarks.scale --compare-modes)."""

    workers: int = setting(2, "workers of the multi_threading and multi_processing modes")
    modes: Tuple[str, ...] = setting(
        MODES, "Beam direct running modes to compare; in_memory, the floor, is always run",
        choices=MODES)
    rounds: int = setting(2, "runs of each mode per component and size, alternating which goes "
                          "first")


@dataclasses.dataclass(frozen=True)
class BeamModesConfig:
    """The sizes the modes are compared at."""

    sizes: Tuple[int, ...] = harness.sizes(300_000, 2_000_000)


def mode_args(mode: str, workers: int) -> List[str]:
    """The Beam arguments the local runner passes for `mode` (pipelines/config.py)."""
    from pipelines.config import PipelineConfig

    return list(PipelineConfig(beam_direct_running_mode=mode, beam_direct_num_workers=(
        1 if mode == "in_memory" else workers)).beam_pipeline_args())


def child(*args: str) -> Dict[str, Any]:
    """Runs benchmarks/beam_mode_run.py; its result, or a failure naming its last log lines."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.beam_mode_run", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = "\n".join(done.stderr.splitlines()[-30:])
    raise RuntimeError(f"beam_mode_run {' '.join(args[:2])} failed (exit {done.returncode}):\n"
                       f"{tail}")


def measure(sizes: Sequence[int], modes: Sequence[str], workers: int,
            rounds: int) -> List[Dict[str, Any]]:
    """One record per size, component, mode and round."""
    records: List[Dict[str, Any]] = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="babyweight-modes-") as tmp:
            log.info("writing %d raw rows and ExampleGen's shards ...", rows)
            child("prepare", str(rows), tmp)
            for index in range(rounds):
                order = list(modes) if index % 2 == 0 else list(reversed(modes))
                for component in COMPONENTS:
                    for mode in order:
                        result = child("run", component, tmp, *mode_args(mode, workers))
                        records.append({"rows": rows, "component": component, "mode": mode,
                                        "workers": 1 if mode == "in_memory" else workers,
                                        "round": index, **result})
                        log.info("%s", records[-1])
    return records


def total_cpu(record: Dict[str, Any]) -> float:
    """A run's CPU seconds: Beam's runner process and its worker processes."""
    return record["runner_cpu_seconds"] + sum(record["worker_cpu_seconds"])


def cores_used(record: Dict[str, Any]) -> float:
    """CPU over wall seconds: the cores the run kept busy (on a loaded machine, its share)."""
    return total_cpu(record) / record["seconds"]


def idle_seconds(record: Dict[str, Any], cores: int) -> float:
    """The least wall time the run could take on `cores` idle cores: its CPU spread over them,
    and never less than its busiest thread's CPU (which no other thread can take over)."""
    return max(record.get("busiest_thread_cpu_seconds", float("nan")), total_cpu(record) / cores)


def summary(records: List[Dict[str, Any]], cores: Optional[int] = None) -> str:
    """Medians per size, component and mode, with the speed-ups over in_memory: measured, and
    on `cores` idle cores (default: this machine's) from the CPU seconds."""
    cores = cores or os.cpu_count() or 1
    headers = ["raw rows", "component", "mode", "workers", "runs", "wall s (median)",
               "runner CPU s", "workers' CPU s", "total CPU s", "busiest thread CPU s",
               "cores used", "cores possible", "peak MB", "speed-up",
               f"speed-up on {cores} idle cores", "load (1 min)"]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["rows"], record["component"], record["mode"]), []).append(
            record)
    lines = []
    for (rows, component, mode), runs in groups.items():
        def median(value: Any, chosen: List[Dict[str, Any]] = runs) -> float:
            return statistics.median(value(r) for r in chosen) if chosen else float("nan")

        base = groups.get((rows, component, "in_memory"), [])
        busiest = median(lambda r: r.get("busiest_thread_cpu_seconds", float("nan")))
        idle = median(lambda r: idle_seconds(r, cores))
        idle_base = median(lambda r: idle_seconds(r, cores), base)
        loads = [value for r in runs for value in r["load_1min"]]
        lines.append([
            rows, component, mode, runs[0]["workers"], len(runs), median(lambda r: r["seconds"]),
            median(lambda r: r["runner_cpu_seconds"]),
            median(lambda r: sum(r["worker_cpu_seconds"])), median(total_cpu), busiest,
            median(cores_used), median(lambda r: total_cpu(r) / r["busiest_thread_cpu_seconds"]
                                       if r.get("busiest_thread_cpu_seconds") else float("nan")),
            round(max(r["peak_memory_mb"] for r in runs)),
            f"{median(lambda r: r['seconds'], base) / median(lambda r: r['seconds']):.2f}x",
            f"{idle_base / idle:.2f}x", f"{min(loads):.1f}-{max(loads):.1f}"])
    return markdown_table(headers, lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from common import logs

    config, modes, output = harness.parse("beam_modes", __doc__, argv, BeamModesConfig,
                                          ModesConfig)
    logs.setup()
    return run(config.sizes, modes, write=output.write)


def run(sizes: Sequence[int], modes: ModesConfig, write: bool) -> int:
    chosen = ["in_memory", *(mode for mode in modes.modes if mode != "in_memory")]
    records = measure(sizes, chosen, modes.workers, modes.rounds)
    publish("beam_modes", summary(records), records, write=write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
