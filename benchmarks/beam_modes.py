"""Beam's in_memory and multi_processing modes compared on StatisticsGen and Transform.

For each size, the synthetic warehouse and ExampleGen's shards (4 per split) are written once;
then each component's executor (the local pipeline's: batched reads, the run's speed-ups on)
runs in a fresh process per mode (`benchmarks/beam_mode_run.py`), the modes alternating in
order from round to round, so that a change in the machine's load falls on both. Reported per
mode: the median wall seconds, the CPU seconds of the runner's process and of Beam's worker
processes, the peak resident memory of the process tree, the speed-up of each mode's median
over in_memory's from the same run, and the ceiling the CPU seconds allow (in_memory's as if on
one core, over the mode's spread evenly on its workers). On a shared machine wall seconds
follow the others' load (the 1-minute load average is printed beside them); CPU seconds much
less so.

    python -m benchmarks.beam_modes --sizes 300000 2000000 --rounds 3

`python -m benchmarks.scale --compare-modes` runs the same at its --sizes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
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


@dataclasses.dataclass(frozen=True)
class ModesConfig:
    """How the two modes are compared (also benchmarks.scale --compare-modes)."""

    workers: int = setting(2, "multi_processing workers")
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


def summary(records: List[Dict[str, Any]]) -> str:
    """Medians per size, component and mode, with the speed-ups over in_memory."""
    headers = ["raw rows", "component", "mode", "workers", "runs", "wall s (median)",
               "runner CPU s", "workers' CPU s", "total CPU s", "peak MB", "speed-up",
               "ceiling from CPU", "load (1 min)"]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["rows"], record["component"], record["mode"]), []).append(
            record)
    lines = []
    for (rows, component, mode), runs in groups.items():
        wall = statistics.median(r["seconds"] for r in runs)
        runner = statistics.median(r["runner_cpu_seconds"] for r in runs)
        workers = statistics.median(sum(r["worker_cpu_seconds"]) for r in runs)
        base = groups.get((rows, component, "in_memory"), [])
        base_wall = statistics.median(r["seconds"] for r in base) if base else float("nan")
        base_cpu = (statistics.median(r["runner_cpu_seconds"] + sum(r["worker_cpu_seconds"])
                                      for r in base) if base else float("nan"))
        # The most `workers` processes could give on an idle machine: in_memory's CPU seconds
        # as if on one core, against this mode's spread evenly over its workers. in_memory
        # already overlaps reading with Beam's thread (prefetch.py), so the real gain is less.
        parallel = max(1, runs[0]["workers"])
        ceiling = base_cpu / ((runner + workers) / parallel)
        loads = [value for r in runs for value in r["load_1min"]]
        lines.append([rows, component, mode, runs[0]["workers"], len(runs), wall, runner,
                      workers, runner + workers,
                      round(max(r["peak_rss_mb"] for r in runs)),
                      f"{base_wall / wall:.2f}x", f"{ceiling:.2f}x", f"{min(loads):.1f}-{max(loads):.1f}"])
    return markdown_table(headers, lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from common import logs

    config, modes, output = harness.parse("beam_modes", __doc__, argv, BeamModesConfig,
                                          ModesConfig)
    logs.setup()
    return run(config.sizes, modes, write=output.write)


def run(sizes: Sequence[int], modes: ModesConfig, write: bool) -> int:
    records = measure(sizes, ["in_memory", "multi_processing"], modes.workers, modes.rounds)
    publish("beam_modes", summary(records), records, write=write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
