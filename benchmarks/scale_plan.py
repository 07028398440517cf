"""What `benchmarks.scale` will run, and about how long it will take, before it runs.

The estimate comes from the last results the benchmark wrote (benchmarks/results/scale.json):
each configuration's whole-pipeline seconds fitted as a fixed cost plus a cost per raw row
(through its smallest and largest measured sizes; with one size, in_memory's per-row cost with
that run's ratio to in_memory at the same size). A configuration the results do not hold is
estimated as in_memory with the cache off times ASSUMED_RATIO, and the plan says so. The
generator's cost per row comes from benchmarks/results/data_stages.json. The estimate is only
as good as the machine the results came from was quiet: on a loaded machine every run is
slower by the load's factor.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from benchmarks.harness import RESULTS_DIR

FLOOR = "in_memory, cache off"
# Configurations no results hold yet, against in_memory with the cache off at the same size:
# multi_processing's from the whole pipeline's first measured run on 2 workers (README,
# "Scale"), rounded up since that run's machine was loaded; the cache costs memory, not time;
# multi_threading's CPU is in_memory's (README, "Both cores").
ASSUMED_RATIO = {"in_memory, cache on": 1.0, "multi_processing x2, cache off": 1.5,
                 "multi_threading x2, cache off": 1.0}


class Run(NamedTuple):
    """One measured pipeline run of the benchmark: a configuration at a size."""

    config: str
    rows: int


@dataclasses.dataclass(frozen=True)
class Fit:
    """Whole-pipeline seconds as fixed + per_row * rows; `basis` says where it came from."""

    fixed: float
    per_row: float
    basis: str

    def seconds(self, rows: int) -> float:
        return self.fixed + self.per_row * rows


def plan(configs: Dict[str, Sequence[int]]) -> List[Run]:
    """The runs, size by size (each warehouse is generated once for all its runs)."""
    sizes = sorted({rows for sizes in configs.values() for rows in sizes})
    return [Run(config, rows) for rows in sizes for config, chosen in configs.items()
            if rows in chosen]


def _through(points: List[Tuple[int, float]]) -> Optional[Fit]:
    """The line through the smallest and the largest size's seconds."""
    points = sorted(points)
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    (r0, s0), (r1, s1) = points[0], points[-1]
    per_row = (s1 - s0) / (r1 - r0)
    return Fit(s0 - per_row * r0, per_row, f"fitted to its runs at {r0:,} and {r1:,} rows")


def fits(results: List[Dict[str, object]], configs: Sequence[str]) -> Dict[str, Fit]:
    """A fit per configuration from earlier results (see the module's docstring)."""
    by_config: Dict[str, List[Tuple[int, float]]] = {}
    for record in results:
        by_config.setdefault(str(record["config"]), []).append(
            (int(record["rows"]), float(record["total_seconds"])))  # type: ignore[arg-type]
    floor = _through(by_config.get(FLOOR, []))
    if floor is None:
        return {}
    out = {FLOOR: floor}
    for config in configs:
        if config == FLOOR:
            continue
        points = by_config.get(config, [])
        fit = _through(points)
        if fit is None and points:
            rows, seconds = points[0]
            ratio = seconds / floor.seconds(rows)
            fit = Fit(floor.fixed * ratio, floor.per_row * ratio,
                      f"{ratio:.2f}x in_memory, as measured at {rows:,} rows")
        if fit is None:
            ratio = ASSUMED_RATIO.get(config, 1.0)
            fit = Fit(floor.fixed * ratio, floor.per_row * ratio,
                      f"not measured yet: assumed {ratio:.1f}x in_memory, cache off")
        out[config] = fit
    return out


def generator_seconds_per_row(path: pathlib.Path = RESULTS_DIR / "data_stages.json") -> float:
    """The synthetic warehouse's generation seconds per raw row, from the data stages' results
    (0 if there are none)."""
    if not path.exists():
        return 0.0
    records = json.loads(path.read_text())["results"]
    largest = max(records, key=lambda record: record["raw_rows"])
    return float(largest["generate"]) / largest["raw_rows"]


def describe(runs: List[Run], path: pathlib.Path = RESULTS_DIR / "scale.json") -> str:
    """The plan, one line a run, with each run's estimated minutes and the total."""
    earlier = json.loads(path.read_text()) if path.exists() else {"results": []}
    fitted = fits(earlier["results"], sorted({run.config for run in runs}))
    if not fitted:
        return "\n".join(f"{run.config} at {run.rows:,} raw rows" for run in runs) + (
            f"\n(no estimate: {path} holds no in_memory, cache off runs at two sizes)")
    per_row = generator_seconds_per_row()
    lines, total = [], per_row * sum({run.rows for run in runs})
    for run in runs:
        seconds = fitted[run.config].seconds(run.rows)
        total += seconds
        lines.append(f"{run.config} at {run.rows:,} raw rows: about {seconds / 60:.1f} min "
                     f"({fitted[run.config].basis})")
    lines.append(f"Total: about {total / 60:.0f} min, generating the warehouses included, "
                 f"estimated from {path.name} of {earlier.get('date', '?')} "
                 f"({earlier.get('machine', '?')}); a loaded machine takes longer by its load.")
    return "\n".join(lines)
