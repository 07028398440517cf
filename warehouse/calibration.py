"""The synthetic natality table's calibration: the real table's published aggregates.

Targets are the real table's published aggregates (shares and mean weights by sex, plurality,
gestation week and mother's age); the other numbers shape the parts the aggregates do not pin
down. Everything the generator draws comes from here; warehouse/natality_model.py derives the
conditional-mean model from these tables and warehouse/sampling.py draws the rows.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

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
