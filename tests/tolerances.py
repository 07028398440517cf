"""Tolerances of the suite's float comparisons, from the arithmetic that produced the numbers.

Every comparison of two floats in tests/ takes its tolerance from here (or says in a comment why
it needs none), so a tolerance states what may differ, never what happened to pass once.

Rounding: a float operation's result is the exact result times (1 + d) with |d| <= u, the unit
roundoff, half the machine epsilon (`eps`). A sum of n terms in any order lies within
gamma(n - 1) * (sum of |terms|) of the exact sum, gamma(k) = k u / (1 - k u) (Higham, Accuracy and
Stability of Numerical Algorithms, 2nd ed., section 4.2). So two sums of the same n terms, taken
in different orders (other batches, other threads, another engine), differ by at most
2 gamma(n - 1) * sum|terms|: relative to the sum itself when the terms share a sign.
"""
from __future__ import annotations

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23
EPS64 = float(np.finfo(np.float64).eps)  # 2**-52


def gamma(k: int, eps: float) -> float:
    """Higham's gamma_k: the relative error bound of k rounded operations in a row."""
    unit = eps / 2
    assert k * unit < 1, "too many terms for a first-order bound"
    return k * unit / (1 - k * unit)


def sum_rel(n: int, eps: float) -> float:
    """Two sums of the same n same-signed terms, in any orders: their relative difference."""
    return 2 * gamma(max(n - 1, 0), eps)


def mean_rel(n: int, eps: float) -> float:
    """Two means of the same n same-signed terms: the sums' difference and one rounded
    division on each side."""
    return sum_rel(n, eps) + 2 * gamma(1, eps)


def rms_rel(n: int, eps: float) -> float:
    """Two root-mean-squares of the same n terms: the square root halves the mean of squares'
    relative difference (each square is one rounding more), and rounds once on each side."""
    return (sum_rel(n, eps) + 2 * gamma(2, eps)) / 2 + 2 * gamma(1, eps)


def std_rel(n: int, mean: float, std: float, eps: float) -> float:
    """Two sample standard deviations of the same n numbers, by different algorithms (two-pass,
    sums shifted near the mean, Welford's updating): each variance has relative error below
    about n * kappa * u, where kappa = sqrt(1 + mean**2 / variance) >= 1 is the data's condition
    number (Chan, Golub and LeVeque, Algorithms for computing the sample variance, 1983), so the
    two differ by at most 2 n kappa u; the square root halves it, and rounds once on each side."""
    kappa = math.sqrt(1 + (mean / std) ** 2)
    return 2 * gamma(n, eps) * kappa / 2 + 2 * gamma(2, eps)


def sampling_tolerance(std: float, n: int, z: float = 4.0) -> float:
    """Half-width of a z-standard-error interval around the expected value of a mean of n
    independent draws with this standard deviation. The generator is seeded, so a test cannot
    fail by chance; z = 4 says a correctly calibrated generator's sample lands outside it for
    about 1 seed in 16,000, so a failure means the calibration moved."""
    return z * std / math.sqrt(n)


def share_tolerance(share: float, n: int, z: float = 4.0) -> float:
    """sampling_tolerance of the share of n rows with a property, `share` in 0..1."""
    return sampling_tolerance(math.sqrt(share * (1 - share)), n, z)


# The heaviest birth the data can hold: the generator's and the real table's 8165 g, in pounds.
LABEL_MAX_POUNDS = 8165 * 0.00220462262185
# The longest float32 sum in the model's forward pass with nonzero terms: a dense layer's fan-in.
# The default and FAST_TRAINING networks have at most 64 units per layer (the first deep layer
# takes 42 inputs: two numerics and five embeddings of 8); the wide layer's 129 one-hot inputs
# add exact zeros (x * 0 + s == s) except for one term per feature.
MODEL_FAN_IN = 64
# Sums on a prediction's path, one after the other: two hidden layers, then the output layer.
MODEL_DEPTH = 3


def prediction_abs(fan_in: int = MODEL_FAN_IN, depth: int = MODEL_DEPTH,
                   scale: float = LABEL_MAX_POUNDS) -> float:
    """How far two batchings of one float32 model may move one prediction (in pounds).

    A batch of one runs another matrix kernel than a batch of many, and kernels block their
    sums by the batch's shape, so the same example's dense-layer sums are taken in another
    order: each within gamma(fan_in) of exact, relative to the sum of its terms' magnitudes,
    and a layer's error reaches the output through the next layers' sums: depth * fan_in
    roundings in a row. The magnitudes are taken to be of the order of the output, at most the
    heaviest label (a model whose terms cancelled by orders of magnitude would need more).
    Two orders differ by twice that.
    """
    return 2 * gamma(depth * fan_in, EPS32) * scale


def rmse_abs_given_predictions_within(delta: float, n: int, rmse: float) -> float:
    """Two RMSEs over the same n examples whose predictions differ by at most `delta` each: by
    the triangle inequality of the Euclidean norm they differ by at most delta, plus the float64
    sums' order (rms_rel)."""
    return delta + rms_rel(n, EPS64) * rmse


def mixed_mean_abs(n: int, mean: float, std: float, eps: float) -> float:
    """Two means of the same n numbers of either sign, summed in different orders: the sums'
    bound relative to the sum of magnitudes, which is at most n times the root mean square
    sqrt(mean**2 + std**2); one rounded division on each side."""
    return sum_rel(n, eps) * math.hypot(mean, std) + 2 * gamma(1, eps) * abs(mean)


def moments_std_abs(n: int, mean: float, std: float, eps: float) -> float:
    """Two standard deviations of the same n numbers from sums of x and x**2 (as TFDV keeps
    them), combined in different orders: var = E[x**2] - mean**2, where E[x**2] carries
    mean_rel of its (positive) terms and mean**2 twice the mean's relative error, both on the
    scale mean**2 + std**2 (cancellation is what makes this form the loose one); a change of
    the variance by d moves the deviation by d / (2 std)."""
    scale = mean ** 2 + std ** 2
    variance_error = (mean_rel(n, eps) + 2 * gamma(2, eps)) * scale + 2 * abs(mean) * (
        mixed_mean_abs(n, mean, std, eps))
    return variance_error / (2 * std) if std else variance_error ** 0.5
