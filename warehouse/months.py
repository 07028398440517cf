"""New months for the warehouse, optionally from a shifted population: the data that arrives
after a model is trained, to exercise monitoring and continuous training.

    .venv/bin/python -m warehouse.months --database data/natality.duckdb --months 12 \\
        --rows-per-month 2000 --older-mothers 4 --multiples-factor 3 --gestation-shift -1.5

Months are appended after the newest month of the table (or from --first-span into an empty or
new table), never over an existing one. The shift changes who is born, not how heavy a baby
of given features is: mothers' ages move by --older-mothers years, the multiples' shares are
multiplied by --multiples-factor, and the gestation distribution moves by --gestation-shift
weeks, while the weight of a baby of given features follows the generator's model. So a model
trained before the shift stays right on average, and monitoring must see the shift in the
inputs. Deterministic for a seed: month YYYYMM is drawn from
SeedSequence(seed, spawn_key=(YYYYMM,)).
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import List, Optional, Sequence

import duckdb
import numpy as np

from common.config import check_month, command_parser, from_flags, setting
from warehouse import generator
from warehouse.natality_model import NatalityModel, solve_model
from warehouse.sampling import NATALITY_COLUMNS, Accumulator, chunk_rng, sample_chunk


@dataclasses.dataclass(frozen=True)
class Shift:
    """How the new months' population differs from the generator's."""

    older_mothers: float = setting(0.0, "years added to the mothers' age distribution")
    multiples_factor: float = setting(1.0, "multiplier of the twins', triplets', ... shares")
    gestation_shift: float = setting(0.0, "weeks added to every gestation (negative: shorter)")

    def __post_init__(self) -> None:
        if self.multiples_factor <= 0:
            raise ValueError(f"--multiples-factor must be positive, got {self.multiples_factor}")


@dataclasses.dataclass(frozen=True)
class MonthsConfig:
    """Which table the months go to, how many, and from which seed."""

    database: pathlib.Path = setting(generator.DEFAULT_OUT, "DuckDB file holding the natality "
                                     "table (created if missing)")
    months: int = setting(12, "months to append")
    rows_per_month: int = setting(2000, "rows of each month")
    first_span: int = setting(0, "first month (YYYYMM); 0 = the month after the newest")
    seed: int = setting(generator.DEFAULT_SEED, "seed of the months' draws")


def _shifted_model(shift: Shift) -> NatalityModel:
    model = solve_model()
    ages = model.ages
    # Mothers' ages move: each age takes the share of the age `older_mothers` years younger.
    source = np.clip(ages - shift.older_mothers, ages[0], ages[-1])
    age_pmf = np.interp(source, ages, model.age_pmf)
    pmf = model.plurality_pmf.copy()
    pmf[1:] *= shift.multiples_factor
    # Gestation: each plurality's week distribution moves by `gestation_shift` weeks.
    weeks = model.weeks.astype(float)
    week_source = np.clip(weeks - shift.gestation_shift, weeks[0], weeks[-1])
    cdf = []
    for row in np.diff(model.week_cdf_by_plurality, axis=1, prepend=0.0):
        moved = np.interp(week_source, weeks, row)
        cdf.append(np.cumsum(moved / moved.sum()))
    return dataclasses.replace(model, age_pmf=age_pmf / age_pmf.sum(),
                               plurality_pmf=pmf / pmf.sum(),
                               week_cdf_by_plurality=np.array(cdf))


def next_spans(last_span: int, months: int) -> List[int]:
    spans, year, month = [], *divmod(last_span, 100)
    for _ in range(months):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        spans.append(year * 100 + month)
    return spans


def _draw(span: int, rows: int, seed: int, model, shift: Shift):
    rng = chunk_rng(seed, span)
    frame = sample_chunk(rng, rows, model, Accumulator())
    year, month = divmod(span, 100)
    frame["year"] = year
    frame["month"] = month
    return frame


def append(database: pathlib.Path, months: int, rows_per_month: int, shift: Shift = Shift(),
           seed: int = generator.DEFAULT_SEED, first_span: int = 0) -> List[int]:
    """Appends `months` months of `rows_per_month` rows; returns their span numbers."""
    if months < 1 or rows_per_month < 1:
        raise ValueError("--months and --rows-per-month must be positive")
    if first_span:
        check_month(first_span, "--first-span")
    database = pathlib.Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    model = _shifted_model(shift)
    with duckdb.connect(str(database)) as con:
        columns = ", ".join(f"{n} {k}" for n, k in NATALITY_COLUMNS)
        con.execute(f"CREATE TABLE IF NOT EXISTS {generator.TABLE_NAME} ({columns})")
        newest = con.execute(f"SELECT MAX(year * 100 + month) FROM {generator.TABLE_NAME}"
                             ).fetchone()[0]
        if first_span and newest and first_span <= newest:
            raise ValueError(f"--first-span {first_span} is not after the table's newest month "
                             f"{newest}; months are appended, never rewritten")
        if not first_span and not newest:
            raise ValueError("the table is empty: give --first-span YYYYMM")
        start = first_span or 0
        spans = ([start] + next_spans(start, months - 1)) if start else next_spans(newest, months)
        for span in spans:
            frame = _draw(span, rows_per_month, seed, model, shift)
            con.register("new_month", frame)
            con.execute(f"INSERT INTO {generator.TABLE_NAME} SELECT * FROM new_month")
            con.unregister("new_month")
        con.execute("CHECKPOINT")
    return spans


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m warehouse.months", __doc__, MonthsConfig, Shift)
    args = parser.parse_args(argv)
    config = from_flags(MonthsConfig, args)
    try:
        spans = append(config.database, config.months, config.rows_per_month,
                       from_flags(Shift, args), config.seed, config.first_span)
    except (ValueError, duckdb.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Appended {len(spans)} months ({spans[0]} to {spans[-1]}), {config.rows_per_month} "
          f"rows each, to {config.database}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
