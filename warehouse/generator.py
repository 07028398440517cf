"""Synthetic stand-in for BigQuery's `bigquery-public-data.samples.natality`, written to DuckDB.

Why: the pipeline's query, tests and benchmarks need a natality table without BigQuery. The real
table cannot be shipped, so this module writes one with the real column names and types for what
the query touches, calibrated to the real table's published aggregates (warehouse/calibration.py:
shares and mean weights by sex, plurality, gestation week and mother's age), and it knows its own
noise floor: the RMSE that even the true conditional mean would score. A trained model is judged
against that floor.

The pieces: the calibration tables (warehouse/calibration.py), the conditional-mean model solved
from them (warehouse/natality_model.py), the row sampler and its running floors
(warehouse/sampling.py); this module writes the DuckDB file and is the command line.

Determinism: chunk k is drawn from `SeedSequence(seed, spawn_key=(k,))`, so the content depends
on (seed, rows, chunk_rows) and the numpy version (numpy may change Generator streams between
feature releases; `created_with` records both versions).

    python -m warehouse.generator --rows 100000 --out data/natality.duckdb
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import duckdb
import numpy as np

from common.config import command_parser, from_flags, setting
from common.files import unusable_file
from warehouse.natality_model import solve_model
from warehouse.sampling import NATALITY_COLUMNS, Accumulator, chunk_rng, sample_chunk

LOGGER = logging.getLogger("warehouse.generator")  # same name under `python -m`

GENERATOR_VERSION = "1.0"
TABLE_NAME = "natality"
INFO_TABLE_NAME = "natality_generator_info"
DEFAULT_ROWS = 100_000
DEFAULT_SEED = 42
DEFAULT_CHUNK_ROWS = 250_000
DEFAULT_OUT = pathlib.Path("data/natality.duckdb")

INFO_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("seed", "BIGINT"),
    ("rows", "BIGINT"),
    ("created_with", "VARCHAR"),
    ("irreducible_rmse", "DOUBLE"),
    ("irreducible_rmse_augmented", "DOUBLE"),
    ("irreducible_rmse_query", "DOUBLE"),
    ("weight_std", "DOUBLE"),
)
# Added by `warehouse.months` when it appends: `rows` stays the rows the generator made, so the
# file still says what --rows and --seed made it.
APPENDED_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("appended_months", "BIGINT"),
    ("appended_rows", "BIGINT"),
)


@dataclasses.dataclass(frozen=True)
class GeneratorReport:
    """Facts about one generated table, also stored in `natality_generator_info`.

    The three floors are RMSEs of the stored `weight_pounds` against the Bayes-optimal prediction,
    over the rows that pass the query's filter:
    - irreducible_rmse: vs E[weight | is_male, mother_age, plurality, gestation_weeks];
    - irreducible_rmse_augmented: the query's second copy of each row, where is_male is unknown and
      plurality is only "1" vs "2+": vs E[weight | mother_age, gestation_weeks, plurality == 1];
    - irreducible_rmse_query: both copies together, sqrt of the mean of the two MSEs.
    weight_std is the standard deviation of weight_pounds over the same rows.
    `rows` are the rows the generator made; `warehouse.months` counts the months and rows it
    appends apart, and keeps the floors and weight_std true of the whole table.
    """

    seed: int
    rows: int
    created_with: str
    irreducible_rmse: float
    irreducible_rmse_augmented: float
    irreducible_rmse_query: float
    weight_std: float
    appended_months: int = 0
    appended_rows: int = 0

    def description(self) -> str:
        """What the file holds, in words: the generated rows, and any months appended since."""
        text = f"{self.rows:,} rows generated with seed {self.seed}"
        if self.appended_months:
            text += (f" and {self.appended_months} month{'s' * (self.appended_months != 1)} "
                     f"({self.appended_rows:,} rows) appended by warehouse.months")
        return text


def created_with() -> str:
    """Version string stored with the table: the stream depends on numpy, so it is recorded."""
    return (
        f"warehouse.generator {GENERATOR_VERSION} "
        f"(numpy {np.__version__}, duckdb {duckdb.__version__})"
    )


def _table_names(con: duckdb.DuckDBPyConnection) -> List[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return [name for (name,) in rows]


def _start_from_existing(database: pathlib.Path, temp: pathlib.Path) -> None:
    """Carry other tables of an existing database over, so only our two tables are overwritten."""
    if not database.exists():
        return
    with duckdb.connect(str(database)) as con:
        others = set(_table_names(con)) - {TABLE_NAME, INFO_TABLE_NAME}
        if others:
            con.execute("CHECKPOINT")  # fold any WAL into the file before copying it
    if others:
        shutil.copyfile(database, temp)


def _remove_quietly(path: pathlib.Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass


def generate(
    database: pathlib.Path,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Optional[Callable[[int, int], None]] = None,
) -> GeneratorReport:
    """Write `rows` synthetic natality rows and the run facts into the DuckDB file `database`.

    Rows are drawn in chunks of `chunk_rows` (memory stays bounded for millions of rows) into a
    temporary file beside `database` that replaces it only when complete, so a reader never sees
    a half-written table. Other tables already in `database` are kept. `progress(done, total)`
    is called after each chunk.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    database = pathlib.Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    temp = database.with_name(f".{database.name}.{os.getpid()}.tmp")
    _remove_quietly(temp)
    model = solve_model()
    stats = Accumulator()
    try:
        _start_from_existing(database, temp)
        with duckdb.connect(str(temp)) as con:
            for name in (TABLE_NAME, INFO_TABLE_NAME):
                con.execute(f"DROP TABLE IF EXISTS {name}")
            columns_sql = ", ".join(f"{name} {kind}" for name, kind in NATALITY_COLUMNS)
            con.execute(f"CREATE TABLE {TABLE_NAME} ({columns_sql})")
            started = time.perf_counter()
            done = 0
            chunk_index = 0
            while done < rows:
                n = min(chunk_rows, rows - done)
                chunk = sample_chunk(chunk_rng(seed, chunk_index), n, model, stats)
                con.register("natality_chunk", chunk)
                con.execute(f"INSERT INTO {TABLE_NAME} SELECT * FROM natality_chunk")
                con.unregister("natality_chunk")
                done += n
                chunk_index += 1
                elapsed = time.perf_counter() - started
                LOGGER.info(
                    "chunk %d: %d/%d rows (%.0f rows/s)",
                    chunk_index, done, rows, done / elapsed if elapsed > 0 else float("inf"),
                )
                if progress is not None:
                    progress(done, rows)

            rmse, rmse_coarse, rmse_query, weight_std = stats.floors()
            report = GeneratorReport(
                seed=seed,
                rows=rows,
                created_with=created_with(),
                irreducible_rmse=rmse,
                irreducible_rmse_augmented=rmse_coarse,
                irreducible_rmse_query=rmse_query,
                weight_std=weight_std,
            )
            info_sql = ", ".join(f"{name} {kind}" for name, kind in INFO_COLUMNS)
            con.execute(f"CREATE TABLE {INFO_TABLE_NAME} ({info_sql})")
            con.execute(
                f"INSERT INTO {INFO_TABLE_NAME} VALUES ({', '.join('?' * len(INFO_COLUMNS))})",
                [getattr(report, name) for name, _ in INFO_COLUMNS],
            )
            con.execute("CHECKPOINT")
        os.replace(temp, database)
        stale_wal = database.with_name(database.name + ".wal")
        if stale_wal.exists():  # a WAL of the replaced file would be replayed onto the new one
            stale_wal.unlink()
    finally:
        _remove_quietly(temp)
    return report


def read_report(database: pathlib.Path,
                wait: Optional[float] = None) -> Optional[GeneratorReport]:
    """The run facts stored by `generate`, or None if the file or its info table is missing;
    a writer holding the file is waited for `wait` seconds (engine.LOCK_WAIT_SECONDS)."""
    database = pathlib.Path(database)
    if not database.exists():
        return None
    from warehouse.engine import waiting_for_writers

    opened = waiting_for_writers(database, lambda: duckdb.connect(str(database), read_only=True),
                                 wait)
    with opened as con:
        if INFO_TABLE_NAME not in _table_names(con):
            return None
        present = {name for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
            [INFO_TABLE_NAME]).fetchall()}
        names = [name for name, _ in INFO_COLUMNS + APPENDED_COLUMNS if name in present]
        row = con.execute(f"SELECT {', '.join(names)} FROM {INFO_TABLE_NAME} LIMIT 1").fetchone()
    if row is None:
        return None
    return GeneratorReport(**{name: value for name, value in zip(names, row)
                              if value is not None or name not in dict(APPENDED_COLUMNS)})


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """What to generate and where: the same seed and row count always give the same table."""

    rows: int = setting(DEFAULT_ROWS, "Number of rows to generate.", minimum=1)
    seed: int = setting(DEFAULT_SEED, "Random seed (>= 0).", minimum=0)
    out: pathlib.Path = setting(DEFAULT_OUT, "DuckDB file to write.")
    chunk_rows: int = setting(
        DEFAULT_CHUNK_ROWS,
        "Rows drawn per chunk (bounds memory; part of what determines the content).", minimum=1)
    quiet: bool = setting(False, "Log warnings only, no per-chunk progress.")
    overwrite: bool = setting(
        False, "Replace an existing --out file (without it, an existing warehouse is kept).")


DESCRIPTION = (
    "Write a synthetic, calibrated stand-in for bigquery-public-data.samples.natality into a\n"
    f"DuckDB file (tables '{TABLE_NAME}' and '{INFO_TABLE_NAME}'). The same seed and row count\n"
    "always give the same table. Prints the noise floor (irreducible RMSE) a model trained on\n"
    "it can reach.")


def _parse_args(argv: Optional[Sequence[str]]) -> GenerateConfig:
    parser = command_parser("python -m warehouse.generator", DESCRIPTION, GenerateConfig)
    return from_flags(GenerateConfig, parser.parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point: generate, log progress per chunk, print the report."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    problem = unusable_file(args.out)
    if problem:
        print(f"error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} already exists; pass --overwrite to replace it "
              "(runs trained on it would no longer match their data)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = generate(args.out, rows=args.rows, seed=args.seed, chunk_rows=args.chunk_rows)
    LOGGER.info("wrote %s in %.1f s", args.out, time.perf_counter() - started)
    for name, _ in INFO_COLUMNS:
        value = getattr(report, name)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
