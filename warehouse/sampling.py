"""Drawing the synthetic natality rows, a chunk at a time, and the running noise floors.

    y_lb  = mu + noise_scale(mu) * (NOISE_SD_LB * eps
                                    + SMOKING_EFFECT_LB * (smoker - SMOKING_SHARE))
    grams = clip(round(y_lb / GRAMS_TO_POUNDS), MIN_GRAMS, MAX_GRAMS);  weight_pounds = grams * ...

`mu` is warehouse/natality_model.py's conditional mean; the floors include the whole-gram rounding
and clipping because they are measured on the stored weights. Chunk k is drawn from
`SeedSequence(seed, spawn_key=(k,))`, so the content never depends on how much is held in memory.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
import pandas as pd

from warehouse import calibration as cal
from warehouse.natality_model import NatalityModel

# Column order follows the real table (year, month, state, is_male, weight_pounds, plurality,
# mother_age, gestation_weeks, mother_married, cigarette_use); BigQuery's types mapped to DuckDB.
NATALITY_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("year", "BIGINT"),
    ("month", "BIGINT"),
    ("state", "VARCHAR"),
    ("is_male", "BOOLEAN"),
    ("weight_pounds", "DOUBLE"),
    ("plurality", "BIGINT"),
    ("mother_age", "BIGINT"),
    ("gestation_weeks", "BIGINT"),
    ("mother_married", "BOOLEAN"),
    ("cigarette_use", "BOOLEAN"),
)
@dataclasses.dataclass
class Accumulator:
    """Running sums over rows passing the query filter, for the floors and the weight std."""

    count: int = 0
    squared_error: float = 0.0
    squared_error_coarse: float = 0.0
    shifted_sum: float = 0.0
    shifted_squares: float = 0.0

    SHIFT = 7.2  # sums of (w - SHIFT) keep the variance free of cancellation

    def add(self, weight: np.ndarray, mean: np.ndarray, coarse_mean: np.ndarray) -> None:
        self.count += int(weight.size)
        self.squared_error += float(np.sum((weight - mean) ** 2))
        self.squared_error_coarse += float(np.sum((weight - coarse_mean) ** 2))
        shifted = weight - self.SHIFT
        self.shifted_sum += float(np.sum(shifted))
        self.shifted_squares += float(np.sum(shifted**2))

    def __add__(self, other: "Accumulator") -> "Accumulator":
        """The sums over both accumulators' rows (disjoint rows of one table)."""
        return Accumulator(*(getattr(self, f.name) + getattr(other, f.name)
                             for f in dataclasses.fields(self)))

    def floors(self) -> Tuple[float, float, float, float]:
        if self.count < 2:
            return (math.nan,) * 4
        mse, mse_coarse = self.squared_error / self.count, self.squared_error_coarse / self.count
        variance = (self.shifted_squares - self.shifted_sum**2 / self.count) / (self.count - 1)
        return (
            math.sqrt(mse),
            math.sqrt(mse_coarse),
            math.sqrt((mse + mse_coarse) / 2.0),
            math.sqrt(max(variance, 0.0)),
        )


def chunk_rng(seed: int, chunk_index: int) -> np.random.Generator:
    """An independent stream per chunk: content never depends on how much is held in memory."""
    sequence = np.random.SeedSequence(seed, spawn_key=(chunk_index,))
    return np.random.Generator(np.random.PCG64(sequence))


def sample_chunk(
    rng: np.random.Generator, n: int, model: NatalityModel, stats: Accumulator,
    span: Optional[int] = None,
) -> pd.DataFrame:
    """Draw n rows as a DataFrame of nullable columns; update the running floors.

    With `span` (YYYYMM) every row is born in that month (warehouse.months), and the floors
    count the rows the query keeps from that month; year and month are still drawn, so the
    rest of the stream is the same either way.

    A pandas frame rather than an Arrow table because duckdb 1.5 cannot scan pyarrow 10 tables
    (it needs the Arrow PyCapsule interface of pyarrow >= 14).
    """
    # Draw order is part of the format: changing it changes every table for a given seed.
    year = rng.choice(model.years, size=n, p=model.year_pmf)
    month = rng.choice(np.arange(1, 13, dtype=np.int64), size=n, p=model.month_pmf)
    if span is not None:
        year, month = (np.full(n, part, dtype=np.int64) for part in divmod(span, 100))
    state = rng.choice(model.states, size=n, p=model.state_pmf)
    is_male = rng.random(n) < cal.MALE_SHARE
    age_index = rng.choice(len(model.ages), size=n, p=model.age_pmf)
    plurality_index = rng.choice(len(model.pluralities), size=n, p=model.plurality_pmf)
    week_uniform = rng.random(n)
    married_uniform = rng.random(n)
    smoker = rng.random(n) < cal.SMOKING_SHARE
    cigarette_null = rng.random(n) < cal.CIGARETTE_NULL_SHARE
    gestation_null = rng.random(n) < cal.GESTATION_NULL_SHARE
    weight_null = rng.random(n) < cal.WEIGHT_NULL_SHARE
    eps = rng.standard_normal(n)

    week_index = np.empty(n, dtype=np.int64)
    last_week = len(model.weeks) - 1
    for p in range(len(model.pluralities)):
        rows = plurality_index == p
        found = np.searchsorted(model.week_cdf_by_plurality[p], week_uniform[rows], side="right")
        week_index[rows] = np.minimum(found, last_week)

    week_curve = model.week_curve[week_index]
    age_factor = model.age_factor[age_index]
    mean = (
        week_curve
        * model.plurality_factor[plurality_index, week_index]
        * age_factor
        * model.sex_factor[is_male.astype(np.int64)]
    )
    is_multiple = (plurality_index > 0).astype(np.int64)
    coarse_mean = week_curve * model.coarse_factor[is_multiple, week_index] * age_factor
    observed_mean = np.where(gestation_null, mean * model.null_gestation_factor, mean)
    scale = np.clip(observed_mean / cal.NOISE_KNEE_LB, cal.NOISE_FLOOR_FRACTION, 1.0)
    residual = cal.NOISE_SD_LB * eps + cal.SMOKING_EFFECT_LB * (smoker - cal.SMOKING_SHARE)
    pounds = observed_mean + scale * residual
    grams = np.clip(np.rint(pounds / cal.GRAMS_TO_POUNDS), cal.MIN_GRAMS, cal.MAX_GRAMS)
    weight = grams * cal.GRAMS_TO_POUNDS

    ceiling, centre, spread = cal.MARRIED_LOGISTIC
    married = married_uniform < ceiling / (1.0 + np.exp(-(model.ages[age_index] - centre) / spread))

    # The query filter: year > 2000 AND weight_pounds > 0 AND mother_age > 0 AND plurality > 0
    # AND gestation_weeks > 0 (NULLs fail it).
    kept = (year > 2000) & ~gestation_null & ~weight_null
    stats.add(weight[kept], mean[kept], coarse_mean[kept])

    no_nulls = np.zeros(n, dtype=bool)
    columns = {
        "year": pd.arrays.IntegerArray(year, no_nulls),
        "month": pd.arrays.IntegerArray(month, no_nulls),
        "state": state,
        "is_male": pd.arrays.BooleanArray(is_male, no_nulls),
        "weight_pounds": pd.arrays.FloatingArray(weight, weight_null),
        "plurality": pd.arrays.IntegerArray(model.pluralities[plurality_index], no_nulls),
        "mother_age": pd.arrays.IntegerArray(model.ages[age_index], no_nulls),
        "gestation_weeks": pd.arrays.IntegerArray(model.weeks[week_index], gestation_null),
        "mother_married": pd.arrays.BooleanArray(married, no_nulls),
        "cigarette_use": pd.arrays.BooleanArray(smoker, cigarette_null),
    }
    return pd.DataFrame({name: columns[name] for name, _ in NATALITY_COLUMNS})
