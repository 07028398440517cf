"""Scale: each component's wall time and peak memory from 1M to 10M raw natality rows.

For each size the synthetic warehouse is generated (`python -m warehouse.generator`), then the
whole local pipeline runs in a fresh process per configuration, with a fresh pipeline root:
- in_memory, example cache off: the streaming claim (memory flat in rows) and the floor;
- multi_processing on 2 workers, example cache on: both cores for the Beam components, and
  what the Trainer's cache costs (it turns itself off where it would not fit).
Peak memory is the resident set of the runner's whole process tree (Beam's workers included)
while the component ran (`benchmarks/rss_probe.py`); seconds are ML Metadata's. Per-row costs
are each run's seconds over its raw rows, and the linearity ratio compares the largest size's
per-row cost with the smallest's, from the same run of this script. The projection to
--project-rows (the natality table after 2000) adds the extra rows at the marginal cost between
the smallest and largest size to the largest size's time.

The full run (the defaults: in_memory at 1M, 4M and 10M raw rows, multi_processing at 1M), about
26 minutes on a 2-core machine from the times measured at 1M and 3M rows under load
(benchmarks/results/scale.md: 268 s and 336 s for the in_memory pipeline, 344 s for
multi_processing at 1M; 34 µs per extra row):

    python -m benchmarks.scale

One size, or a few:

    python -m benchmarks.scale --sizes 1000000 --multi-processing-sizes 1000000

The focused mode comparison (StatisticsGen and Transform only, each executor in a fresh process
per mode, the modes alternating; CPU seconds of the runner and of each worker process beside
the wall time; benchmarks/beam_modes.py), about 10 minutes at 2M raw rows:

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

from benchmarks import beam_modes, harness
from benchmarks.harness import markdown_table, publish
from benchmarks.rss_probe import run_measured
from common import logs
from common.config import setting

log = logging.getLogger("babyweight.benchmarks")

COMPONENTS = ("DuckDBExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator")
CONFIGS = {
    "in_memory, cache off": ["--beam-direct-running-mode", "in_memory", "--no-cache-examples"],
    "multi_processing x2, cache on": ["--beam-direct-running-mode", "multi_processing",
                                      "--beam-direct-num-workers", "2", "--cache-examples"],
}


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """The sizes each configuration runs at, and the size the costs are projected to."""

    sizes: Optional[Tuple[int, ...]] = setting(
        None, "raw natality rows per measurement (default: 1000000 4000000 10000000; with "
        "--compare-modes 2000000)")
    multi_processing_sizes: Tuple[int, ...] = setting(
        (1_000_000,), "sizes for the multi_processing, cache-on configuration", nargs="*")
    epochs: int = setting(1, "training epochs of each run")
    project_rows: int = setting(
        33_000_000, "raw rows to project the costs to: the natality table's births after 2000")
    compare_modes: bool = setting(
        False, "run only the focused in_memory/multi_processing comparison of StatisticsGen "
        "and Transform at --sizes (benchmarks.beam_modes)")

    def measured_sizes(self) -> Tuple[int, ...]:
        """--sizes, else the default of the run asked for."""
        if self.sizes:
            return self.sizes
        return (2_000_000,) if self.compare_modes else (1_000_000, 4_000_000, 10_000_000)


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
    """Seconds, peak MB and µs per raw row per component; linearity and projection lines."""
    headers = ["configuration", "raw rows"]
    for name in COMPONENTS:
        headers += [f"{name} s", f"{name} peak MB"]
    headers += ["pipeline s"]
    lines = []
    for record in records:
        costs = record["components"]
        row: List[object] = [record["config"], record["rows"]]
        for name in COMPONENTS:
            cost = costs.get(name, {"seconds": 0.0, "peak_rss_mb": 0.0})
            row += [cost["seconds"], round(cost["peak_rss_mb"])]
        lines.append(row + [record["total_seconds"]])
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
            memory = b["peak_rss_mb"] / a["peak_rss_mb"] if a["peak_rss_mb"] else float("nan")
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
    return text + "\n\n" + "\n\n".join(notes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings, modes, output = harness.parse("scale", __doc__, argv, ScaleConfig,
                                            beam_modes.ModesConfig)
    logs.setup()
    if settings.compare_modes:
        return beam_modes.run(settings.measured_sizes(), modes, write=output.write)
    plan = {"in_memory, cache off": settings.measured_sizes(),
            "multi_processing x2, cache on": settings.multi_processing_sizes}
    records: List[Dict[str, object]] = []
    for rows in sorted({size for sizes in plan.values() for size in sizes}):
        with tempfile.TemporaryDirectory(prefix="babyweight-scale-") as tmp:
            work = pathlib.Path(tmp)
            database = work / "natality.duckdb"
            generate(database, rows)
            for config, sizes in plan.items():
                if rows not in sizes:
                    continue
                log.info("%s at %d raw rows ...", config, rows)
                result = run_config(database, work / config.split(",")[0], CONFIGS[config],
                                    settings.epochs)
                records.append({"config": config, "rows": rows, "epochs": settings.epochs,
                                **{k: v for k, v in result.items() if k != "log_tail"}})
                log.info("%s", records[-1])
    publish("scale", table(records, settings.project_rows), records, write=output.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
