"""New months for the warehouse, optionally from a shifted population: the data that arrives
after a model is trained, to exercise monitoring and continuous training.

    .venv/bin/python -m warehouse.months --database data/natality.duckdb --months 12 \\
        --rows-per-month 2000 --older-mothers 4 --multiples-factor 3 --gestation-shift -1.5

Months are appended after the newest month of the table (or from --first-span into an empty or
new table), never over an existing one. The shift changes who is born, not how heavy a baby
of given features is: mothers' ages move by --older-mothers years, the multiples' shares are
multiplied by --multiples-factor, and the gestation distribution moves by --gestation-shift
weeks (what moves past the generator's ages, 10 to 54, or weeks, 17 to 47, piles onto that end,
so the mean moves by the shift until the shares reach an end; a shift wider than the range is
refused), while the weight of a baby of given features follows the generator's model. So a model
trained before the shift stays right on average, and monitoring must see the shift in the
inputs. The generator's info table, when there is one, keeps the rows the generator made and
counts the appended months and rows apart (appended_months, appended_rows), while its noise
floors become the whole table's, the new months included. Deterministic for a seed: month
YYYYMM is drawn from SeedSequence(seed, spawn_key=(YYYYMM,)).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import sys
from typing import List, Optional, Sequence

import duckdb
import numpy as np

from common.config import check_month, command_parser, from_flags, setting
from common.files import unusable_file
from warehouse import calibration, generator
from warehouse.natality_model import NatalityModel, solve_model
from warehouse.sampling import NATALITY_COLUMNS, Accumulator, chunk_rng, sample_chunk

LOGGER = logging.getLogger("warehouse.months")


# The ranges the generator draws from: a shift moves the shares within them, and what it moves
# past an end piles onto that end's age or week.
_AGES = calibration.MOTHER_AGE_RANGE
_WEEKS = (min(c.week for c in calibration.GESTATION_CALIBRATION),
          max(c.week for c in calibration.GESTATION_CALIBRATION))


@dataclasses.dataclass(frozen=True)
class Shift:
    """How the new months' population differs from the generator's."""

    older_mothers: float = setting(
        0.0, f"years added to every mother's age (negative: younger); ages past {_AGES[0]} or "
        f"{_AGES[1]} pile onto that age, so at most {_AGES[1] - _AGES[0]} either way")
    multiples_factor: float = setting(1.0, "multiplier of the twins', triplets', ... shares")
    gestation_shift: float = setting(
        0.0, f"weeks added to every gestation (negative: shorter); weeks past {_WEEKS[0]} or "
        f"{_WEEKS[1]} pile onto that week, so at most {_WEEKS[1] - _WEEKS[0]} either way")

    def __post_init__(self) -> None:
        if self.multiples_factor <= 0:
            raise ValueError(f"--multiples-factor must be positive, got {self.multiples_factor}")
        # Past the range's width every birth is already at one end: a larger shift would
        # quietly give the same table.
        for flag, value, (low, high) in (("--older-mothers", self.older_mothers, _AGES),
                                         ("--gestation-shift", self.gestation_shift, _WEEKS)):
            if not abs(value) <= high - low:
                raise ValueError(f"{flag} must be within ±{high - low} (the generator's range "
                                 f"is {low} to {high}), got {value}")
@dataclasses.dataclass(frozen=True)
class MonthsConfig:
    """Which table the months go to, how many, and from which seed."""

    database: pathlib.Path = setting(generator.DEFAULT_OUT, "DuckDB file holding the natality "
                                     "table (created if missing)")
    months: int = setting(12, "months to append")
    rows_per_month: int = setting(2000, "rows of each month")
    first_span: int = setting(0, "first month (YYYYMM); 0 = the month after the newest")
    seed: int = setting(generator.DEFAULT_SEED, "seed of the months' draws")


def moved(pmf: np.ndarray, shift: float) -> np.ndarray:
    """`pmf` over consecutive values with its mass moved `shift` places up (a fraction split
    between the two nearest places), what passes an end piled onto that end: so the mean moves
    by the shift until the mass reaches an end."""
    whole = math.floor(shift)
    part = shift - whole
    places = np.arange(len(pmf))
    out = np.zeros(len(pmf))
    for offset, share in ((whole, 1.0 - part), (whole + 1, part)):
        np.add.at(out, np.clip(places + offset, 0, len(pmf) - 1), pmf * share)
    return out / out.sum()


def _shifted_model(shift: Shift) -> NatalityModel:
    model = solve_model()
    pmf = model.plurality_pmf.copy()
    pmf[1:] *= shift.multiples_factor
    # Gestation: each plurality's week distribution moves by `gestation_shift` weeks.
    weeks = [moved(row, shift.gestation_shift)
             for row in np.diff(model.week_cdf_by_plurality, axis=1, prepend=0.0)]
    return dataclasses.replace(model, age_pmf=moved(model.age_pmf, shift.older_mothers),
                               plurality_pmf=pmf / pmf.sum(),
                               week_cdf_by_plurality=np.cumsum(weeks, axis=1))


def next_spans(last_span: int, months: int) -> List[int]:
    spans, year, month = [], *divmod(last_span, 100)
    for _ in range(months):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        spans.append(year * 100 + month)
    return spans


def _draw(span: int, rows: int, seed: int, model, stats: Accumulator):
    return sample_chunk(chunk_rng(seed, span), rows, model, stats, span=span)


# The rows the training query keeps (warehouse/queries): those the floors are measured over.
_KEPT = ("year > 2000 AND weight_pounds > 0 AND mother_age > 0 AND plurality > 0 "
         "AND gestation_weeks > 0")


def _stored_floors(con: duckdb.DuckDBPyConnection) -> Optional[Accumulator]:
    """The sums behind the info table's floors, when it still describes the whole table; None
    when there is no info to keep. Info that no longer matches the table (months appended by
    an earlier version of this command) is removed, so no run quotes a floor of other rows."""
    tables = {name for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()}
    if generator.INFO_TABLE_NAME not in tables:
        return None
    for name, kind in generator.APPENDED_COLUMNS:  # a file no months were appended to yet
        con.execute(f"ALTER TABLE {generator.INFO_TABLE_NAME} ADD COLUMN IF NOT EXISTS "
                    f"{name} {kind} DEFAULT 0")
    info = con.execute(f"SELECT rows + coalesce(appended_rows, 0), irreducible_rmse, "
                       f"irreducible_rmse_augmented FROM {generator.INFO_TABLE_NAME} LIMIT 1"
                       ).fetchone()
    if info is None:
        return None
    (rows,) = con.execute(f"SELECT count(*) FROM {generator.TABLE_NAME}").fetchone()
    count, shifted_sum, shifted_squares = con.execute(
        f"SELECT count(*), coalesce(sum(weight_pounds - {Accumulator.SHIFT}), 0), "
        f"coalesce(sum((weight_pounds - {Accumulator.SHIFT}) ** 2), 0) "
        f"FROM {generator.TABLE_NAME} WHERE {_KEPT}").fetchone()
    rmse, rmse_coarse = info[1:]
    if rows != info[0] or count and not (math.isfinite(rmse) and math.isfinite(rmse_coarse)):
        LOGGER.warning("%s described %s rows, the table holds %s: its noise floor no longer "
                       "describes the table and is removed", generator.INFO_TABLE_NAME,
                       info[0], rows)
        con.execute(f"DELETE FROM {generator.INFO_TABLE_NAME}")
        return None
    return Accumulator(count, rmse**2 * count if count else 0.0,
                       rmse_coarse**2 * count if count else 0.0, shifted_sum, shifted_squares)


def _update_floors(con: duckdb.DuckDBPyConnection, stats: Accumulator, months: int,
                   rows: int) -> None:
    """The info table's floors, now of the whole table (the months' weights follow the
    generator's model, so its conditional means are still the floor's predictions), and the
    `months` months of `rows` rows counted apart from the generated rows."""
    rmse, rmse_coarse, rmse_query, weight_std = stats.floors()
    con.execute(f"UPDATE {generator.INFO_TABLE_NAME} SET irreducible_rmse = ?, "
                "irreducible_rmse_augmented = ?, irreducible_rmse_query = ?, weight_std = ?, "
                "appended_months = coalesce(appended_months, 0) + ?, "
                "appended_rows = coalesce(appended_rows, 0) + ?",
                [rmse, rmse_coarse, rmse_query, weight_std, months, rows])


def append(database: pathlib.Path, months: int, rows_per_month: int, shift: Shift = Shift(),
           seed: int = generator.DEFAULT_SEED, first_span: int = 0) -> List[int]:
    """Appends `months` months of `rows_per_month` rows; returns their span numbers. The
    generator's info table, if any, counts them apart from the generated rows and its noise
    floors stay true of the whole table."""
    if months < 1 or rows_per_month < 1:
        raise ValueError("--months and --rows-per-month must be positive")
    if first_span:
        check_month(first_span, "--first-span")
    database = pathlib.Path(database)
    problem = unusable_file(database)
    if problem:  # a file in the way is one line naming the flag, before anything is drawn
        raise ValueError(f"--database {database}: {problem}")
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
        con.execute("BEGIN TRANSACTION")  # the months and the info change together, or not
        stored = _stored_floors(con)
        added = Accumulator()
        for span in spans:
            frame = _draw(span, rows_per_month, seed, model, added)
            con.register("new_month", frame)
            con.execute(f"INSERT INTO {generator.TABLE_NAME} SELECT * FROM new_month")
            con.unregister("new_month")
        if stored is not None:
            _update_floors(con, stored + added, len(spans), len(spans) * rows_per_month)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    return spans


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("python -m warehouse.months", __doc__, MonthsConfig, Shift)
    args = parser.parse_args(argv)
    config = from_flags(MonthsConfig, args)
    try:
        spans = append(config.database, config.months, config.rows_per_month,
                       from_flags(Shift, args), config.seed, config.first_span)
    except (ValueError, OSError, duckdb.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Appended {len(spans)} months ({spans[0]} to {spans[-1]}), {config.rows_per_month} "
          f"rows each, to {config.database}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
