"""The conditional-mean model of the synthetic natality table, derived from the calibration once.

    mu    = week_curve[gestation] * plurality_factor[plurality, gestation]
            * age_factor[mother_age] * sex_factor[is_male]

Sex, age and smoking are drawn independently of everything else and their factors average to 1,
so `mu` is exactly E[weight | is_male, mother_age, plurality, gestation_weeks]. Plurality and
gestation are dependent (multiples are born earlier), so the week curve and the plurality factors
are *solved* from the calibration tables such that the marginal means by week and by plurality
come out as published (`solve_model`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Sequence, Tuple

import numpy as np

from warehouse import calibration as cal


@dataclasses.dataclass(frozen=True)
class NatalityModel:
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
    start, full = cal.GROWTH_RAMP_WEEKS
    fraction = np.clip((weeks - start) / float(full - start), 0.0, 1.0)
    return cal.GROWTH_RAMP_FLOOR + (1.0 - cal.GROWTH_RAMP_FLOOR) * fraction


def _discretised_normal(weeks: np.ndarray, mean: float, sd: float) -> np.ndarray:
    density = np.exp(-0.5 * ((weeks - mean) / sd) ** 2)
    return density / density.sum()


def _week_given_plurality(weeks: np.ndarray, week_pmf: np.ndarray,
                          plurality_pmf: np.ndarray) -> np.ndarray:
    """P(week | plurality): multiples from their own curves, singletons take the remainder."""
    week_given_plurality = np.zeros((len(plurality_pmf), len(weeks)))
    for index, calibration in enumerate(cal.PLURALITY_CALIBRATION[1:], start=1):
        assert calibration.gestation_mean is not None and calibration.gestation_sd is not None
        week_given_plurality[index] = _discretised_normal(
            weeks, calibration.gestation_mean, calibration.gestation_sd
        )
    singles = week_pmf - plurality_pmf[1:] @ week_given_plurality[1:]
    if np.any(singles <= 0):
        raise ValueError("calibration: multiples' gestation exceeds the week shares at some week")
    week_given_plurality[0] = singles / plurality_pmf[0]
    return week_given_plurality


def _solve_curve_and_factors(weeks: np.ndarray, week_pmf: np.ndarray, week_target: np.ndarray,
                             week_given_plurality: np.ndarray, joint: np.ndarray,
                             plurality_target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The week curve G(w) and each plurality's factor m_p(w), iterated to a fixed point."""
    ramp = _growth_ramp(weeks.astype(np.float64))
    penalty = np.zeros(len(plurality_target))
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
    return curve, factor


def _ages() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mothers' ages, their shares, and the age factor of mean 1 giving the published means."""
    ages = np.arange(cal.MOTHER_AGE_RANGE[0], cal.MOTHER_AGE_RANGE[1] + 1, dtype=np.int64)
    if len(ages) != len(cal.MOTHER_AGE_WEIGHTS):
        raise ValueError("calibration: MOTHER_AGE_WEIGHTS must cover MOTHER_AGE_RANGE")
    age_pmf = _normalise(cal.MOTHER_AGE_WEIGHTS)
    anchor_ages, anchor_means = zip(*cal.MOTHER_AGE_MEAN_WEIGHT_ANCHORS)
    age_target = np.interp(ages, anchor_ages, anchor_means)
    age_factor = age_target / float(age_pmf @ age_target)
    return ages, age_pmf, age_factor


def _years() -> Tuple[np.ndarray, np.ndarray]:
    """The years (early ones spread uniformly, recent ones by births) and their shares."""
    early = np.arange(cal.EARLY_YEARS[0], cal.EARLY_YEARS[1] + 1, dtype=np.int64)
    recent = np.array(sorted(cal.RECENT_YEAR_BIRTHS), dtype=np.int64)
    years = np.concatenate([early, recent])
    year_pmf = np.concatenate([
        np.full(len(early), cal.EARLY_YEAR_SHARE / len(early)),
        (1.0 - cal.EARLY_YEAR_SHARE) * _normalise([cal.RECENT_YEAR_BIRTHS[y] for y in recent]),
    ])
    return years, year_pmf / year_pmf.sum()


@functools.lru_cache(maxsize=1)
def solve_model() -> NatalityModel:
    """Derive the conditional-mean model whose *marginal* means reproduce the calibration tables.

    Why a solve: twins are born earlier and lighter, so the published mean by week mixes in
    multiples and the published mean by plurality mixes in weeks. With weight = G(w) * m_p(w) *
    (sex, age factors of mean 1), the week margin fixes G(w) = T(w) / E[m_p(w) | w] and the
    plurality margin fixes each multiple's penalty d_p in m_p(w) = 1 - d_p * ramp(w); the two
    are iterated to a fixed point (multiples are rare, so it converges in a few steps).
    """
    weeks = np.array([c.week for c in cal.GESTATION_CALIBRATION], dtype=np.int64)
    week_pmf = _normalise([c.share_pct for c in cal.GESTATION_CALIBRATION])
    week_target = np.array([c.mean_weight for c in cal.GESTATION_CALIBRATION])

    pluralities = np.array([c.plurality for c in cal.PLURALITY_CALIBRATION], dtype=np.int64)
    plurality_pmf = _normalise([c.share for c in cal.PLURALITY_CALIBRATION])
    plurality_target = np.array([c.mean_weight for c in cal.PLURALITY_CALIBRATION])

    week_given_plurality = _week_given_plurality(weeks, week_pmf, plurality_pmf)
    joint = plurality_pmf[:, None] * week_given_plurality  # P(plurality, week)
    curve, factor = _solve_curve_and_factors(weeks, week_pmf, week_target, week_given_plurality,
                                             joint, plurality_target)

    multiples = joint[1:].sum(axis=0)
    multiple_factor = (joint[1:] * factor[1:]).sum(axis=0) / multiples
    coarse_factor = np.vstack([np.ones(len(weeks)), multiple_factor])
    expected_mean = float(week_pmf @ week_target)

    ages, age_pmf, age_factor = _ages()
    # Factors with E = 1 whose difference is the published boy-girl gap.
    gap = (cal.MEAN_WEIGHT_BOYS - cal.MEAN_WEIGHT_GIRLS) / expected_mean
    sex_factor = np.array([1.0 - cal.MALE_SHARE * gap, 1.0 + (1.0 - cal.MALE_SHARE) * gap])
    years, year_pmf = _years()

    return NatalityModel(
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
        null_gestation_factor=cal.GESTATION_NULL_MEAN_WEIGHT / expected_mean,
        years=years,
        year_pmf=year_pmf,
        month_pmf=_normalise(cal.MONTH_WEIGHTS),
        states=np.array(sorted(cal.STATE_BIRTHS), dtype=object),
        state_pmf=_normalise([cal.STATE_BIRTHS[s] for s in sorted(cal.STATE_BIRTHS)]),
    )


def expected_marginal_means() -> Dict[str, Dict[int, float]]:
    """Exact expected mean weight by plurality and by gestation week under the solved model.

    Why: rare groups (quadruplets, quintuplets) have too few rows in a test-sized sample to check
    empirically; their calibration is checked here instead. Ignores whole-gram rounding/clipping.
    """
    model = solve_model()
    week_given_plurality = np.diff(model.week_cdf_by_plurality, axis=1, prepend=0.0)
    joint = model.plurality_pmf[:, None] * week_given_plurality
    means = joint * model.plurality_factor * model.week_curve[None, :]
    by_plurality = means.sum(axis=1) / joint.sum(axis=1)
    by_week = means.sum(axis=0) / joint.sum(axis=0)
    return {
        "plurality": {int(p): float(m) for p, m in zip(model.pluralities, by_plurality)},
        "gestation_weeks": {int(w): float(m) for w, m in zip(model.weeks, by_week)},
    }
