"""What every benchmark shares: timing, the results table, and where results are written."""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import platform
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

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


def argument_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as help, and --no-write."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true",
                        help="print the table only; leave results/ and the README as they are")
    return parser
