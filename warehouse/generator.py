"""Synthetic stand-in for BigQuery's `bigquery-public-data.samples.natality`, written to DuckDB.

Why: the pipeline's query, tests and benchmarks need a natality table without BigQuery. The real
table cannot be shipped, so this module draws one with the real column names and types for what
the query touches, calibrated to the real table's published aggregates (shares and mean weights by
sex, plurality, gestation week and mother's age), and it knows its own noise floor: the RMSE that
even the true conditional mean would score. A trained model is judged against that floor.

The weight model, in one place:

    mu    = week_curve[gestation] * plurality_factor[plurality, gestation]
            * age_factor[mother_age] * sex_factor[is_male]
    y_lb  = mu + noise_scale(mu) * (NOISE_SD_LB * eps
                                    + SMOKING_EFFECT_LB * (smoker - SMOKING_SHARE))
    grams = clip(round(y_lb / GRAMS_TO_POUNDS), MIN_GRAMS, MAX_GRAMS);  weight_pounds = grams * ...

Sex, age and smoking are drawn independently of everything else and their factors average to 1,
so `mu` is exactly E[weight | is_male, mother_age, plurality, gestation_weeks] (before rounding
and clipping, which the reported floors include because they are measured on stored weights).
Plurality and gestation are dependent (multiples are born earlier), so the week curve and the
plurality factors are *solved* from the calibration tables such that the marginal means by week
and by plurality come out as published (`_solve_model`).

Determinism: chunk k is drawn from `SeedSequence(seed, spawn_key=(k,))`, so the content depends
on (seed, rows, chunk_rows) and the numpy version (numpy may change Generator streams between
feature releases; `created_with` records both versions).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import duckdb
import numpy as np
import pandas as pd

LOGGER = logging.getLogger("warehouse.generator")  # same name under `python -m`

GENERATOR_VERSION = "1.0"
TABLE_NAME = "natality"
INFO_TABLE_NAME = "natality_generator_info"
DEFAULT_ROWS = 100_000
DEFAULT_SEED = 42
DEFAULT_CHUNK_ROWS = 250_000
DEFAULT_OUT = pathlib.Path("data/natality.duckdb")

# =================================================================================================
# Calibration tables. Targets are the real table's published aggregates; the other numbers shape
# the parts the aggregates do not pin down. Everything the generator draws comes from here.
# =================================================================================================

# The real table stores whole grams converted to pounds with this factor.
GRAMS_TO_POUNDS: float = 0.00220462262185
MIN_GRAMS: int = 227
MAX_GRAMS: int = 8165

# --- year / month ---------------------------------------------------------------------------------
# The query keeps `year > 2000`; earlier years exist in the real table (1969-2008) and must be
# filtered out, so ~10% of rows are spread uniformly over 1969-2000.
EARLY_YEARS: Tuple[int, int] = (1969, 2000)
EARLY_YEAR_SHARE: float = 0.10
# US births (millions) 2001-2008: relative weights of the recent years.
RECENT_YEAR_BIRTHS: Dict[int, float] = {
    2001: 4.026, 2002: 4.022, 2003: 4.090, 2004: 4.112,
    2005: 4.138, 2006: 4.266, 2007: 4.316, 2008: 4.248,
}
# Relative births by month, January..December (late summer peak).
MONTH_WEIGHTS: Tuple[float, ...] = (8.1, 7.5, 8.3, 8.0, 8.4, 8.4, 8.9, 9.0, 8.6, 8.5, 8.0, 8.3)

# --- sex ------------------------------------------------------------------------------------------
MALE_SHARE: float = 0.512
MEAN_WEIGHT_GIRLS: float = 7.10
MEAN_WEIGHT_BOYS: float = 7.35


@dataclasses.dataclass(frozen=True)
class PluralityCalibration:
    """Share and marginal mean weight of one plurality, and (for multiples) when they are born.

    Singletons have no gestation parameters: their week distribution is what is left of the
    overall week distribution once the multiples' are taken out.
    """

    plurality: int
    share: float
    mean_weight: float
    gestation_mean: Optional[float] = None
    gestation_sd: Optional[float] = None


PLURALITY_CALIBRATION: Tuple[PluralityCalibration, ...] = (
    PluralityCalibration(1, 0.96628, 7.31),
    PluralityCalibration(2, 0.03200, 5.16, gestation_mean=35.2, gestation_sd=2.9),
    PluralityCalibration(3, 0.00160, 3.69, gestation_mean=32.0, gestation_sd=3.0),
    PluralityCalibration(4, 0.00010, 2.88, gestation_mean=29.8, gestation_sd=3.2),
    PluralityCalibration(5, 0.00002, 2.54, gestation_mean=28.5, gestation_sd=3.4),
)
# Multiples grow slower in the womb, more so late in pregnancy: the plurality penalty is scaled by
# a ramp rising linearly from GROWTH_RAMP_FLOOR at GROWTH_RAMP_WEEKS[0] to 1 at
# GROWTH_RAMP_WEEKS[1].
GROWTH_RAMP_WEEKS: Tuple[int, int] = (24, 38)
GROWTH_RAMP_FLOOR: float = 0.4


@dataclasses.dataclass(frozen=True)
class WeekCalibration:
    """Share of births (percent, renormalised) and marginal mean weight at one gestation week."""

    week: int
    share_pct: float
    mean_weight: float


# Shares sum to 100. Published mean weights: 24: 1.81, 28: 3.40, 32: 4.94, 34: 5.72,
# 36: 6.44, 37: 6.86, 38: 7.25, 39: 7.53, 40: 7.71, 41: 7.80 (peak), 42: 7.68, 43-47: ~7.6.
# Published shares: 39 ~26%, 40 ~20%, 38 ~19%, 37 ~9%, 41 ~9%. The other weeks are
# interpolated by hand (a long thin preterm tail; below 24 weeks falling toward ~1.0 lb).
GESTATION_CALIBRATION: Tuple[WeekCalibration, ...] = (
    WeekCalibration(17, 0.020, 1.00), WeekCalibration(18, 0.025, 1.04),
    WeekCalibration(19, 0.030, 1.09), WeekCalibration(20, 0.045, 1.16),
    WeekCalibration(21, 0.045, 1.27), WeekCalibration(22, 0.070, 1.42),
    WeekCalibration(23, 0.085, 1.60), WeekCalibration(24, 0.120, 1.81),
    WeekCalibration(25, 0.130, 2.20), WeekCalibration(26, 0.170, 2.60),
    WeekCalibration(27, 0.190, 3.00), WeekCalibration(28, 0.270, 3.40),
    WeekCalibration(29, 0.290, 3.79), WeekCalibration(30, 0.420, 4.17),
    WeekCalibration(31, 0.470, 4.56), WeekCalibration(32, 0.720, 4.94),
    WeekCalibration(33, 0.900, 5.34), WeekCalibration(34, 1.550, 5.72),
    WeekCalibration(35, 2.400, 6.09), WeekCalibration(36, 4.500, 6.44),
    WeekCalibration(37, 9.000, 6.86), WeekCalibration(38, 19.000, 7.25),
    WeekCalibration(39, 26.000, 7.53), WeekCalibration(40, 20.000, 7.71),
    WeekCalibration(41, 9.000, 7.80), WeekCalibration(42, 3.100, 7.68),
    WeekCalibration(43, 0.700, 7.63), WeekCalibration(44, 0.350, 7.61),
    WeekCalibration(45, 0.200, 7.60), WeekCalibration(46, 0.120, 7.60),
    WeekCalibration(47, 0.080, 7.60),
)
# Gestation is unknown (NULL) for ~0.7% of births; their mean weight is 7.16.
GESTATION_NULL_SHARE: float = 0.007
GESTATION_NULL_MEAN_WEIGHT: float = 7.16

# --- mother's age ---------------------------------------------------------------------------------
MOTHER_AGE_RANGE: Tuple[int, int] = (10, 54)
# Relative births by single year of age 10..54, peaking at 25-29.
MOTHER_AGE_WEIGHTS: Tuple[float, ...] = (
    0.002, 0.005, 0.020, 0.060, 0.150,  # 10-14
    0.450, 1.000, 1.700, 2.600, 3.400,  # 15-19
    4.200, 4.600, 4.900, 5.100, 5.300,  # 20-24
    5.400, 5.500, 5.500, 5.500, 5.400,  # 25-29
    5.200, 4.900, 4.600, 4.200, 3.700,  # 30-34
    3.200, 2.700, 2.200, 1.750, 1.350,  # 35-39
    1.000, 0.700, 0.450, 0.270, 0.150,  # 40-44
    0.080, 0.045, 0.030, 0.020, 0.015,  # 45-49
    0.010, 0.006, 0.004, 0.003, 0.002,  # 50-54
)
# Marginal mean weight by age (linear between anchors): ~6.9 at 15, ~7.36 at 29-35, 6.95 at 45.
MOTHER_AGE_MEAN_WEIGHT_ANCHORS: Tuple[Tuple[int, float], ...] = (
    (10, 6.70), (15, 6.90), (18, 6.97), (20, 7.03), (22, 7.10), (25, 7.23), (28, 7.33),
    (29, 7.36), (35, 7.36), (38, 7.30), (40, 7.20), (45, 6.95), (50, 6.80), (54, 6.70),
)

# --- noise ----------------------------------------------------------------------------------------
# Residual sd around the true conditional mean (homoscedastic above NOISE_KNEE_LB; below it the sd
# shrinks in proportion to the mean, never under NOISE_FLOOR_FRACTION of it, so that very preterm
# babies of ~1-2 lb are not clipped at MIN_GRAMS).
NOISE_SD_LB: float = 0.985
NOISE_KNEE_LB: float = 5.0
NOISE_FLOOR_FRACTION: float = 0.15
# Smoking: drawn independently of the model features, centred, so it is part of the noise the
# four features cannot explain (as in the real data, where the query does not select it).
SMOKING_SHARE: float = 0.11
SMOKING_EFFECT_LB: float = -0.40
CIGARETTE_NULL_SHARE: float = 0.12  # not reported by the birth certificate revision in use

# --- other columns --------------------------------------------------------------------------------
WEIGHT_NULL_SHARE: float = 0.001
# P(married | age) = ceiling / (1 + exp(-(age - centre) / scale)).
MARRIED_LOGISTIC: Tuple[float, float, float] = (0.88, 23.0, 3.0)
# Births (thousands, late 2000s) by state, for realistic `state` codes.
STATE_BIRTHS: Dict[str, float] = {
    "AL": 64, "AK": 11, "AZ": 102, "AR": 41, "CA": 566, "CO": 71, "CT": 42, "DE": 12, "DC": 9,
    "FL": 239, "GA": 151, "HI": 19, "ID": 25, "IL": 180, "IN": 90, "IA": 41, "KS": 42, "KY": 59,
    "LA": 66, "ME": 14, "MD": 78, "MA": 78, "MI": 125, "MN": 73, "MS": 46, "MO": 82, "MT": 12,
    "NE": 27, "NV": 40, "NH": 14, "NJ": 116, "NM": 30, "NY": 254, "NC": 131, "ND": 9, "OH": 151,
    "OK": 54, "OR": 50, "PA": 150, "RI": 12, "SC": 62, "SD": 12, "TN": 86, "TX": 407, "UT": 56,
    "VT": 6, "VA": 108, "WA": 88, "WV": 21, "WI": 72, "WY": 8,
}

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
INFO_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("seed", "BIGINT"),
    ("rows", "BIGINT"),
    ("created_with", "VARCHAR"),
    ("irreducible_rmse", "DOUBLE"),
    ("irreducible_rmse_augmented", "DOUBLE"),
    ("irreducible_rmse_query", "DOUBLE"),
    ("weight_std", "DOUBLE"),
)


# =================================================================================================
# Report
# =================================================================================================
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
    """

    seed: int
    rows: int
    created_with: str
    irreducible_rmse: float
    irreducible_rmse_augmented: float
    irreducible_rmse_query: float
    weight_std: float


def created_with() -> str:
    """Version string stored with the table: the stream depends on numpy, so it is recorded."""
    return (
        f"warehouse.generator {GENERATOR_VERSION} "
        f"(numpy {np.__version__}, duckdb {duckdb.__version__})"
    )


# =================================================================================================
# Model: derived from the calibration tables once
# =================================================================================================
@dataclasses.dataclass(frozen=True)
class _Model:
    """Everything the sampler needs, derived so that the marginal means match the targets."""

    weeks: np.ndarray  # int64, 17..47
    week_cdf_by_plurality: np.ndarray  # (5, n_weeks)
    week_curve: np.ndarray  # G(w): mean weight of a singleton at week w, before sex/age factors
    plurality_factor: np.ndarray  # (5, n_weeks): multiplier of the week curve
    coarse_factor: np.ndarray  # (2, n_weeks): E[plurality_factor | week, single / multiple]
    pluralities: np.ndarray  # int64 1..5
    plurality_pmf: np.ndarray
    ages: np.ndarray
    age_pmf: np.ndarray
    age_factor: np.ndarray
    sex_factor: np.ndarray  # [girl, boy]
    expected_mean: float
    null_gestation_factor: float
    years: np.ndarray
    year_pmf: np.ndarray
    month_pmf: np.ndarray
    states: np.ndarray  # object array of codes
    state_pmf: np.ndarray


def _normalise(weights: Sequence[float]) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    return array / array.sum()


def _growth_ramp(weeks: np.ndarray) -> np.ndarray:
    """How much of a plurality's growth penalty applies at each week (GROWTH_RAMP_FLOOR..1)."""
    start, full = GROWTH_RAMP_WEEKS
    fraction = np.clip((weeks - start) / float(full - start), 0.0, 1.0)
    return GROWTH_RAMP_FLOOR + (1.0 - GROWTH_RAMP_FLOOR) * fraction


def _discretised_normal(weeks: np.ndarray, mean: float, sd: float) -> np.ndarray:
    density = np.exp(-0.5 * ((weeks - mean) / sd) ** 2)
    return density / density.sum()


@functools.lru_cache(maxsize=1)
def _solve_model() -> _Model:
    """Derive the conditional-mean model whose *marginal* means reproduce the calibration tables.

    Why a solve: twins are born earlier and lighter, so the published mean by week mixes in
    multiples and the published mean by plurality mixes in weeks. With weight = G(w) * m_p(w) *
    (sex, age factors of mean 1), the week margin fixes G(w) = T(w) / E[m_p(w) | w] and the
    plurality margin fixes each multiple's penalty d_p in m_p(w) = 1 - d_p * ramp(w); the two
    are iterated to a fixed point (multiples are rare, so it converges in a few steps).
    """
    weeks = np.array([c.week for c in GESTATION_CALIBRATION], dtype=np.int64)
    week_pmf = _normalise([c.share_pct for c in GESTATION_CALIBRATION])
    week_target = np.array([c.mean_weight for c in GESTATION_CALIBRATION])

    pluralities = np.array([c.plurality for c in PLURALITY_CALIBRATION], dtype=np.int64)
    plurality_pmf = _normalise([c.share for c in PLURALITY_CALIBRATION])
    plurality_target = np.array([c.mean_weight for c in PLURALITY_CALIBRATION])

    # P(week | plurality): multiples from their own curves, singletons take the remainder.
    week_given_plurality = np.zeros((len(pluralities), len(weeks)))
    for index, calibration in enumerate(PLURALITY_CALIBRATION[1:], start=1):
        assert calibration.gestation_mean is not None and calibration.gestation_sd is not None
        week_given_plurality[index] = _discretised_normal(
            weeks, calibration.gestation_mean, calibration.gestation_sd
        )
    singles = week_pmf - plurality_pmf[1:] @ week_given_plurality[1:]
    if np.any(singles <= 0):
        raise ValueError("calibration: multiples' gestation exceeds the week shares at some week")
    week_given_plurality[0] = singles / plurality_pmf[0]
    joint = plurality_pmf[:, None] * week_given_plurality  # P(plurality, week)

    ramp = _growth_ramp(weeks.astype(np.float64))
    penalty = np.zeros(len(pluralities))
    for _ in range(200):
        factor = 1.0 - penalty[:, None] * ramp[None, :]
        curve = week_target / ((joint * factor).sum(axis=0) / week_pmf)
        # mean_p = sum_w P(w|p) G(w) (1 - d_p ramp(w)) = A_p - d_p B_p, solved for d_p.
        a = week_given_plurality @ curve
        b = week_given_plurality @ (curve * ramp)
        new_penalty = (a - plurality_target) / b
        new_penalty[0] = 0.0
        if np.max(np.abs(new_penalty - penalty)) < 1e-13:
            penalty = new_penalty
            break
        penalty = new_penalty
    factor = 1.0 - penalty[:, None] * ramp[None, :]
    curve = week_target / ((joint * factor).sum(axis=0) / week_pmf)
    if np.any(factor <= 0.2):
        raise ValueError("calibration: plurality penalties too strong; move the multiples' weeks")

    multiples = joint[1:].sum(axis=0)
    multiple_factor = (joint[1:] * factor[1:]).sum(axis=0) / multiples
    coarse_factor = np.vstack([np.ones(len(weeks)), multiple_factor])
    expected_mean = float(week_pmf @ week_target)

    ages = np.arange(MOTHER_AGE_RANGE[0], MOTHER_AGE_RANGE[1] + 1, dtype=np.int64)
    if len(ages) != len(MOTHER_AGE_WEIGHTS):
        raise ValueError("calibration: MOTHER_AGE_WEIGHTS must cover MOTHER_AGE_RANGE")
    age_pmf = _normalise(MOTHER_AGE_WEIGHTS)
    anchor_ages, anchor_means = zip(*MOTHER_AGE_MEAN_WEIGHT_ANCHORS)
    age_target = np.interp(ages, anchor_ages, anchor_means)
    age_factor = age_target / float(age_pmf @ age_target)

    # Factors with E = 1 whose difference is the published boy-girl gap.
    gap = (MEAN_WEIGHT_BOYS - MEAN_WEIGHT_GIRLS) / expected_mean
    sex_factor = np.array([1.0 - MALE_SHARE * gap, 1.0 + (1.0 - MALE_SHARE) * gap])

    early = np.arange(EARLY_YEARS[0], EARLY_YEARS[1] + 1, dtype=np.int64)
    recent = np.array(sorted(RECENT_YEAR_BIRTHS), dtype=np.int64)
    years = np.concatenate([early, recent])
    year_pmf = np.concatenate([
        np.full(len(early), EARLY_YEAR_SHARE / len(early)),
        (1.0 - EARLY_YEAR_SHARE) * _normalise([RECENT_YEAR_BIRTHS[y] for y in recent]),
    ])

    return _Model(
        weeks=weeks,
        week_cdf_by_plurality=np.cumsum(week_given_plurality, axis=1),
        week_curve=curve,
        plurality_factor=factor,
        coarse_factor=coarse_factor,
        pluralities=pluralities,
        plurality_pmf=plurality_pmf,
        ages=ages,
        age_pmf=age_pmf,
        age_factor=age_factor,
        sex_factor=sex_factor,
        expected_mean=expected_mean,
        null_gestation_factor=GESTATION_NULL_MEAN_WEIGHT / expected_mean,
        years=years,
        year_pmf=year_pmf / year_pmf.sum(),
        month_pmf=_normalise(MONTH_WEIGHTS),
        states=np.array(sorted(STATE_BIRTHS), dtype=object),
        state_pmf=_normalise([STATE_BIRTHS[s] for s in sorted(STATE_BIRTHS)]),
    )


def expected_marginal_means() -> Dict[str, Dict[int, float]]:
    """Exact expected mean weight by plurality and by gestation week under the solved model.

    Why: rare groups (quadruplets, quintuplets) have too few rows in a test-sized sample to check
    empirically; their calibration is checked here instead. Ignores whole-gram rounding/clipping.
    """
    model = _solve_model()
    week_given_plurality = np.diff(model.week_cdf_by_plurality, axis=1, prepend=0.0)
    joint = model.plurality_pmf[:, None] * week_given_plurality
    means = joint * model.plurality_factor * model.week_curve[None, :]
    by_plurality = means.sum(axis=1) / joint.sum(axis=1)
    by_week = means.sum(axis=0) / joint.sum(axis=0)
    return {
        "plurality": {int(p): float(m) for p, m in zip(model.pluralities, by_plurality)},
        "gestation_weeks": {int(w): float(m) for w, m in zip(model.weeks, by_week)},
    }


# =================================================================================================
# Sampling
# =================================================================================================
@dataclasses.dataclass
class _Accumulator:
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


def _chunk_rng(seed: int, chunk_index: int) -> np.random.Generator:
    """An independent stream per chunk: content never depends on how much is held in memory."""
    sequence = np.random.SeedSequence(seed, spawn_key=(chunk_index,))
    return np.random.Generator(np.random.PCG64(sequence))


def _sample_chunk(
    rng: np.random.Generator, n: int, model: _Model, stats: _Accumulator
) -> pd.DataFrame:
    """Draw n rows as a DataFrame of nullable columns; update the running floors.

    A pandas frame rather than an Arrow table because duckdb 1.5 cannot scan pyarrow 10 tables
    (it needs the Arrow PyCapsule interface of pyarrow >= 14).
    """
    # Draw order is part of the format: changing it changes every table for a given seed.
    year = rng.choice(model.years, size=n, p=model.year_pmf)
    month = rng.choice(np.arange(1, 13, dtype=np.int64), size=n, p=model.month_pmf)
    state = rng.choice(model.states, size=n, p=model.state_pmf)
    is_male = rng.random(n) < MALE_SHARE
    age_index = rng.choice(len(model.ages), size=n, p=model.age_pmf)
    plurality_index = rng.choice(len(model.pluralities), size=n, p=model.plurality_pmf)
    week_uniform = rng.random(n)
    married_uniform = rng.random(n)
    smoker = rng.random(n) < SMOKING_SHARE
    cigarette_null = rng.random(n) < CIGARETTE_NULL_SHARE
    gestation_null = rng.random(n) < GESTATION_NULL_SHARE
    weight_null = rng.random(n) < WEIGHT_NULL_SHARE
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
    scale = np.clip(observed_mean / NOISE_KNEE_LB, NOISE_FLOOR_FRACTION, 1.0)
    residual = NOISE_SD_LB * eps + SMOKING_EFFECT_LB * (smoker - SMOKING_SHARE)
    pounds = observed_mean + scale * residual
    grams = np.clip(np.rint(pounds / GRAMS_TO_POUNDS), MIN_GRAMS, MAX_GRAMS)
    weight = grams * GRAMS_TO_POUNDS

    ceiling, centre, spread = MARRIED_LOGISTIC
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


# =================================================================================================
# DuckDB
# =================================================================================================
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
    model = _solve_model()
    stats = _Accumulator()
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
                chunk = _sample_chunk(_chunk_rng(seed, chunk_index), n, model, stats)
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


def read_report(database: pathlib.Path) -> Optional[GeneratorReport]:
    """The run facts stored by `generate`, or None if the file or its info table is missing."""
    database = pathlib.Path(database)
    if not database.exists():
        return None
    with duckdb.connect(str(database), read_only=True) as con:
        if INFO_TABLE_NAME not in _table_names(con):
            return None
        names = [name for name, _ in INFO_COLUMNS]
        row = con.execute(f"SELECT {', '.join(names)} FROM {INFO_TABLE_NAME} LIMIT 1").fetchone()
    if row is None:
        return None
    return GeneratorReport(**dict(zip(names, row)))


# =================================================================================================
# CLI
# =================================================================================================
def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m warehouse.generator",
        description=(
            "Write a synthetic, calibrated stand-in for bigquery-public-data.samples.natality "
            f"into a DuckDB file (tables '{TABLE_NAME}' and '{INFO_TABLE_NAME}'). The same seed "
            "and row count always give the same table. Prints the noise floor (irreducible RMSE) "
            "a model trained on it can reach."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="number of rows to generate")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (>= 0)")
    parser.add_argument(
        "--out", type=pathlib.Path, default=DEFAULT_OUT, help="DuckDB file to write"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
        help="rows drawn per chunk (bounds memory; part of what determines the content)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="log warnings only, no per-chunk progress"
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing --out file (without it, an existing warehouse is kept)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point: generate, log progress per chunk, print the report."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} already exists; pass --overwrite to replace it "
              "(runs trained on it would no longer match their data)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = generate(args.out, rows=args.rows, seed=args.seed, chunk_rows=args.chunk_rows)
    LOGGER.info("wrote %s in %.1f s", args.out, time.perf_counter() - started)
    for field in dataclasses.fields(report):
        value = getattr(report, field.name)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{field.name}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
