"""What every benchmark shares: its command line, timing, the results table, and where results
are written; and the pushed model that the serving benchmarks serve."""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import platform
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from common.config import PipelineConfig, command_parser, from_flags, setting

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
README = RESULTS_DIR.parent.parent / "README.md"


@contextmanager
def timed(into: Dict[str, float], key: str) -> Iterator[None]:
    """Adds the wall-clock seconds of the block to into[key]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - started


def markdown_table(headers: Sequence[str], rows: List[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def quote_in_readme(name: str, text: str, readme: pathlib.Path = README) -> bool:
    """Replaces the README's block between <!-- name:start --> and <!-- name:end -->."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")
    return True


def write_results(name: str, table: str, records: List[Dict[str, object]]) -> pathlib.Path:
    """Writes <name>.md and <name>.json (the raw numbers), and quotes the table in the README."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    text = f"Measured {stamp} on {machine()} by `python -m benchmarks.{name}`.\n\n{table}\n"
    (RESULTS_DIR / f"{name}.md").write_text(text)
    quote_in_readme(name, text)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"date": stamp, "machine": machine(), "results": records},
                               indent=2, default=str))
    return path


def publish(name: str, table: str, records: List[Dict[str, object]], write: bool = True) -> None:
    """Prints the table and, unless told not to, writes and quotes it (see write_results)."""
    print(table)
    if write:
        path = write_results(name, table, records)
        logging.getLogger("babyweight.benchmarks").info("results written to %s", path)


@dataclasses.dataclass(frozen=True)
class Output:
    """Whether the table is also written to results/ and quoted in the README."""

    write: bool = setting(True, "Write the table to results/ and the README; --no-write: "
                          "print the table only, leave results/ and the README as they are.")


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """The pushed model the serving benchmarks start their servers on."""

    # The pipeline's --serving-dir (serving.settings.DEFAULT_MODEL_DIR; not imported, since a
    # benchmark run as a script sees benchmarks/serving.py as `serving`).
    model_dir: str = setting(str(PipelineConfig.serving_dir), "Versions directory to serve.")

    def newest_version(self) -> Tuple[int, str]:
        """(version, its directory); FileNotFoundError saying what is missing and what to do."""
        from serving.model_store import resolve_version

        try:
            return resolve_version(self.model_dir)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}\nRun the pipeline first (`make`) or pass "
                                    "--model-dir.") from None


def sizes(*default: int) -> Any:
    """The --sizes setting of the benchmarks that measure at several data sizes."""
    return setting(tuple(default), "raw natality rows per measurement")


def counts(text: str, flag: str, allow_none: bool = False) -> List[int]:
    """A comma-separated flag of positive counts (clients, rows); ValueError naming the flag
    when it is malformed (`parse` turns that into argparse's exit 2 and message)."""
    try:
        found = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        found = [0]
    if any(count < 1 for count in found) or not (found or allow_none):
        raise ValueError(f"{flag} takes comma-separated positive whole numbers"
                         f"{' (or nothing)' if allow_none else ''}, got {text!r}")
    return found


def parse(name: str, doc: Optional[str], argv: Optional[Sequence[str]],
          *configs: Type[Any]) -> Tuple[Any, ...]:
    """A benchmark's command line (its docstring as help, one --flag per field of each config
    and --write/--no-write), parsed into one object per config, then the Output."""
    parser = command_parser(f"python -m benchmarks.{name}", doc, *configs, Output)
    args = parser.parse_args(argv)
    try:
        return tuple(from_flags(cls, args) for cls in (*configs, Output))
    except ValueError as error:  # a config's own check of its values (__post_init__)
        parser.error(str(error))
