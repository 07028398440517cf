"""Scale: each component's wall time, CPU seconds and peak memory from 1M to 10M raw rows.

For each size the synthetic warehouse is generated (`python -m warehouse.generator`), then the
whole local pipeline runs in a fresh process per configuration, with a fresh pipeline root:
- in_memory, example cache off (--sizes): the streaming claim (memory flat in rows), the
  linearity claim, and the floor the other configurations are compared with;
- in_memory, example cache on (--cache-sizes): what the Trainer's cache costs in memory (it
  turns itself off where it would not fit);
- multi_processing and multi_threading on 2 workers, cache off (--multi-processing-sizes,
  --multi-threading-sizes), with in_memory at the same sizes in the same run: both cores for
  the Beam components (worker processes, or threads of the runner's one process), only the
  mode differing.
Peak memory is the memory the runner's whole process tree (Beam's workers included) occupied
while the component ran (each page once, however many of its processes share it), CPU seconds
that tree's user and system time, and "cores" their ratio to the wall seconds
(`benchmarks/rss_probe.py`); wall seconds are ML Metadata's. On a shared machine wall seconds
follow the others' load; CPU seconds much less so. Per-row costs are each run's seconds over its
raw rows, and the linearity ratio compares the largest size's per-row cost with the smallest's,
from the same run of this script. The projection to --project-rows (the natality table after
2000) adds the extra rows at the marginal cost between the smallest and largest size to the
largest size's time.

The full run (the defaults: in_memory with the cache off at 1M, 2M, 4M and 10M raw rows and on
at 1M, 4M and 10M; multi_processing and multi_threading at 2M). `--dry-run` prints the runs and the time each is
estimated to take from the last results (benchmarks/scale_plan.py); on a quiet 2-core machine
the whole default run is estimated well under 40 minutes, on a loaded one it takes longer by
the load's factor:

    python -m benchmarks.scale --dry-run
    python -m benchmarks.scale

One size, or a few:

    python -m benchmarks.scale --sizes 1000000 --cache-sizes --multi-processing-sizes 1000000 \
        --multi-threading-sizes

The focused mode comparison (StatisticsGen and Transform only, each executor in a fresh process
per mode, in_memory, multi_threading and multi_processing alternating; CPU seconds of the
runner, of each worker process and of the busiest thread beside the wall time;
benchmarks/beam_modes.py), about 15 minutes at 2M raw rows on a quiet machine:

    python -m benchmarks.scale --compare-modes --sizes 2000000

Not part of `make test`.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks import beam_modes, harness, scale_plan
from benchmarks.harness import markdown_table, publish
from benchmarks.rss_probe import run_measured
from common import logs
from common.config import setting

log = logging.getLogger("babyweight.benchmarks")

COMPONENTS = ("DuckDBExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator")
CONFIGS = {
    "in_memory, cache off": ["--beam-direct-running-mode", "in_memory", "--no-cache-examples"],
    "in_memory, cache on": ["--beam-direct-running-mode", "in_memory", "--cache-examples"],
    "multi_processing x2, cache off": ["--beam-direct-running-mode", "multi_processing",
                                       "--beam-direct-num-workers", "2", "--no-cache-examples"],
    "multi_threading x2, cache off": ["--beam-direct-running-mode", "multi_threading",
                                      "--beam-direct-num-workers", "2", "--no-cache-examples"],
}
DEFAULT_SIZES = (1_000_000, 4_000_000, 10_000_000)
DEFAULT_MULTI_PROCESSING_SIZES = (2_000_000,)
DEFAULT_MULTI_THREADING_SIZES = (2_000_000,)
MISSING = {"seconds": 0.0, "cpu_seconds": 0.0, "cores_used": 0.0, "peak_memory_mb": 0.0}


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """The sizes each configuration runs at, and the size the costs are projected to."""

    sizes: Optional[Tuple[int, ...]] = setting(
        None, "raw natality rows per in_memory, cache-off run (default: "
        f"{' '.join(map(str, DEFAULT_SIZES))}; with --compare-modes 2000000)")
    cache_sizes: Optional[Tuple[int, ...]] = setting(
        None, "sizes for the in_memory, cache-on configuration (default: --sizes)", nargs="*")
    multi_processing_sizes: Tuple[int, ...] = setting(
        DEFAULT_MULTI_PROCESSING_SIZES, "sizes for the multi_processing (2 workers), cache-off "
        "configuration; in_memory, cache off runs at them too, as its floor", nargs="*")
    multi_threading_sizes: Tuple[int, ...] = setting(
        DEFAULT_MULTI_THREADING_SIZES, "sizes for the multi_threading (2 workers), cache-off "
        "configuration; in_memory, cache off runs at them too", nargs="*")
    epochs: int = setting(1, "training epochs of each run")
    project_rows: int = setting(
        33_000_000, "raw rows to project the costs to: the natality table's births after 2000")
    dry_run: bool = setting(False, "print the runs and their estimated time, and run nothing")
    compare_modes: bool = setting(
        False, "run only the focused comparison of Beam's modes on StatisticsGen and Transform "
        "at --sizes (benchmarks.beam_modes)")


def generate(database: pathlib.Path, rows: int) -> None:
    subprocess.run([sys.executable, "-m", "warehouse.generator", "--rows", str(rows),
                    "--seed", "3", "--out", str(database), "--overwrite", "--quiet"],
                   check=True, cwd=pathlib.Path(__file__).resolve().parent.parent)


def run_config(database: pathlib.Path, work: pathlib.Path, flags: Sequence[str],
               epochs: int) -> Dict[str, object]:
    """One measured pipeline run; a failed run stops the benchmark with the runner's log."""
    metadata = work / "metadata.sqlite"
    result = run_measured([
        "--database", str(database), "--pipeline-root", str(work / "root"),
        "--metadata-path", str(metadata), "--reports-dir", str(work / "reports"),
        "--serving-dir", str(work / "serving" / "babyweight"), "--no-enable-cache",
        "--epochs", str(epochs), *flags], metadata)
    if result["exit_code"] not in (0, 3):
        raise RuntimeError("the pipeline failed (exit code %s):\n%s" % (
            result["exit_code"], "\n".join(result["log_tail"])))
    return result


def table(records: List[Dict[str, object]], project_rows: int) -> str:
    """Wall and CPU seconds, cores used and peak MB per component; linearity, projection and
    mode-comparison lines."""
    headers = ["configuration", "raw rows"]
    for name in COMPONENTS:
        headers += [f"{name} s", f"{name} CPU s", f"{name} cores", f"{name} peak MB"]
    headers += ["pipeline s", "pipeline CPU s", "pipeline cores"]
    lines = []
    for record in records:
        costs = record["components"]
        row: List[object] = [record["config"], record["rows"]]
        for name in COMPONENTS:
            cost = {**MISSING, **costs.get(name, {})}
            row += [cost["seconds"], cost["cpu_seconds"], cost["cores_used"],
                    round(cost["peak_memory_mb"])]
        lines.append(row + [record["total_seconds"], record.get("total_cpu_seconds", 0.0),
                            record.get("cores_used", 0.0)])
    text = markdown_table(headers, lines)
    notes = []
    for config in CONFIGS:
        runs = sorted((r for r in records if r["config"] == config), key=lambda r: r["rows"])
        if len(runs) < 2:
            continue
        small, large = runs[0], runs[-1]
        parts = []
        for name in COMPONENTS:
            a, b = small["components"].get(name), large["components"].get(name)
            if not a or not b or not a["seconds"]:
                continue
            per_row = (b["seconds"] / large["rows"]) / (a["seconds"] / small["rows"])
            memory = (b["peak_memory_mb"] / a["peak_memory_mb"] if a["peak_memory_mb"]
                      else float("nan"))
            # The largest run plus the extra rows at the marginal cost between the two sizes:
            # fixed costs (imports, Beam's workers starting) are paid once, not per row.
            marginal = (b["seconds"] - a["seconds"]) / (large["rows"] - small["rows"])
            projected = b["seconds"] + marginal * (project_rows - large["rows"])
            parts.append(f"{name}: {1e6 * marginal:.1f} µs per extra row, per-row "
                         f"cost x{per_row:.2f}, peak memory x{memory:.2f}, "
                         f"{projected / 60:.0f} min at {project_rows:,} rows")
        marginal = ((large["total_seconds"] - small["total_seconds"])
                    / (large["rows"] - small["rows"]))
        total = large["total_seconds"] + marginal * (project_rows - large["rows"])
        notes.append(f"**{config}**, {small['rows']:,} -> {large['rows']:,} rows: "
                     + "; ".join(parts) + f". Whole pipeline at {project_rows:,} rows: about "
                     f"{total / 3600:.1f} h.")
    return text + "\n\n" + "\n\n".join(notes + mode_notes(records))


def mode_notes(records: List[Dict[str, object]]) -> List[str]:
    """Each other mode's Beam components against in_memory at the same size, same run."""
    floor = {r["rows"]: r for r in records if r["config"] == scale_plan.FLOOR}
    notes = []
    for record in records:
        base = floor.get(record["rows"])
        if base is None or not str(record["config"]).startswith("multi_"):
            continue
        parts = []
        for name in ("StatisticsGen", "Transform"):
            mine, theirs = record["components"].get(name), base["components"].get(name)
            if mine and theirs and mine["seconds"]:
                parts.append(f"{name} {theirs['seconds'] / mine['seconds']:.2f}x "
                             f"({mine['cpu_seconds']:.0f} CPU s on {mine['cores_used']:.2f} "
                             f"cores against {theirs['cpu_seconds']:.0f} on "
                             f"{theirs['cores_used']:.2f})")
        notes.append(f"**{record['config']}** at {record['rows']:,} rows, speed-up over "
                     f"in_memory, cache off: " + "; ".join(parts) + ".")
    return notes


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings, modes, output = harness.parse("scale", __doc__, argv, ScaleConfig,
                                            beam_modes.ModesConfig)
    logs.setup()
    if settings.compare_modes:
        return beam_modes.run(settings.sizes or (2_000_000,), modes, write=output.write)
    sizes = settings.sizes or DEFAULT_SIZES
    runs = scale_plan.plan({
        "in_memory, cache off": sorted({*sizes, *settings.multi_processing_sizes,
                                        *settings.multi_threading_sizes}),
        "in_memory, cache on": sizes if settings.cache_sizes is None else settings.cache_sizes,
        "multi_processing x2, cache off": settings.multi_processing_sizes,
        "multi_threading x2, cache off": settings.multi_threading_sizes})
    print(scale_plan.describe(runs), flush=True)
    if settings.dry_run:
        return 0
    records = measure(runs, settings.epochs)
    publish("scale", table(records, settings.project_rows), records, write=output.write)
    return 0


def measure(runs: List[scale_plan.Run], epochs: int) -> List[Dict[str, object]]:
    """The runs in order, each size's warehouse generated once."""
    records: List[Dict[str, object]] = []
    for rows in sorted({run.rows for run in runs}):
        with tempfile.TemporaryDirectory(prefix="babyweight-scale-") as tmp:
            work = pathlib.Path(tmp)
            database = work / "natality.duckdb"
            generate(database, rows)
            for run in (run for run in runs if run.rows == rows):
                log.info("%s at %d raw rows ...", run.config, rows)
                slug = run.config.replace(", ", "-").replace(" ", "-")
                result = run_config(database, work / slug, CONFIGS[run.config], epochs)
                records.append({"config": run.config, "rows": rows, "epochs": epochs,
                                **{k: v for k, v in result.items() if k != "log_tail"}})
                log.info("%s", records[-1])
    return records


if __name__ == "__main__":
    raise SystemExit(main())
