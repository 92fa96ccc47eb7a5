"""Statistics to compare a Monte Carlo estimate with a (possibly truncated) reference.

A check passes iff ``|estimate - reference| <= z * SE + B``: ``SE`` must be computed
independently of the code under test, ``B`` bounds the reference's own truncation error. The
relative standard error of the ddof=1 sample variance of ``n`` samples with kurtosis ``kappa`` is
``sqrt((kappa - (n - 3) / (n - 1)) / n)`` (Gaussian: ``sqrt(2 / (n - 1))``; Casella & Berger,
Statistical Inference, 2nd ed., exercise 5.8).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._checks import check_real, fail

__all__ = ["Comparison", "compare", "samples_for_mean", "samples_for_variance"]


class Comparison(NamedTuple):
    """``passed`` iff ``|estimate - reference| <= z * stderr + bias_bound`` everywhere.

    ``excess`` is the largest ``|estimate - reference| - (z * stderr + bias_bound)`` (<= 0 when
    passed); ``zscore`` the largest ``|estimate - reference| / stderr``.
    """

    passed: bool
    excess: float
    zscore: float


def compare(
    estimate: Any, stderr: Any, reference: Any, *, bias_bound: Any = 0.0, z: float = 5.0
) -> Comparison:
    """Decide whether a Monte Carlo estimate agrees with a (possibly truncated) reference.

    Args:
        estimate: the estimate (array). stderr: its standard error (broadcastable, >= 0).
        reference: the value to compare with. bias_bound: a bound on the reference's own error
            (e.g. twice the first neglected series term), >= 0. z: standard errors allowed (> 0);
            choose it from the number of assertions (z = 5: 6e-7 false failures per element).

    Returns:
        A :class:`Comparison`.

    Raises:
        ArgumentError: ``z <= 0``, negative ``stderr`` or ``bias_bound``.

    Example:
        >>> compare(1.02, 0.01, 1.0, z=5.0).passed
        True
        >>> compare(1.2, 0.01, 1.0, bias_bound=0.05, z=5.0).passed
        False
    """
    z = check_real(z, "z", fn="compare", lo=0.0, lo_open=True)
    est, se, ref = (np.asarray(a, dtype=np.float64) for a in (estimate, stderr, reference))
    bias = np.asarray(bias_bound, dtype=np.float64)
    if np.any(se < 0):
        fail("compare", "stderr", stderr, f"has a negative entry ({se.min()})",
             "standard errors >= 0")
    if np.any(bias < 0):
        fail("compare", "bias_bound", bias_bound, f"has a negative entry ({bias.min()})",
             "bounds >= 0")
    err = np.abs(est - ref)
    excess = err - (z * se + bias)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(se > 0, err / np.where(se > 0, se, 1.0), np.where(err > 0, np.inf, 0.0))
    return Comparison(bool(np.all(excess <= 0)), float(np.max(excess)), float(np.max(zs)))


def samples_for_variance(rel_err: float, *, z: float = 5.0, kurtosis: float = 3.0) -> int:
    """Samples needed to confirm a variance to relative error ``rel_err`` at ``z`` SEs:
    ``n = 1 + z^2 (kurtosis - 1) / rel_err^2`` (relative SE of the ddof=1 variance ~
    ``sqrt((kurtosis - 1) / n)``; Gaussian samples: kurtosis 3).

    Example:
        >>> samples_for_variance(0.1, z=4.0)
        3201
    """
    fn = "samples_for_variance"
    rel_err = check_real(rel_err, "rel_err", fn=fn, lo=0.0, lo_open=True)
    z = check_real(z, "z", fn=fn, lo=0.0, lo_open=True)
    kurtosis = check_real(kurtosis, "kurtosis", fn=fn, lo=1.0)
    return math.ceil(1 + z**2 * (kurtosis - 1) / rel_err**2 - 1e-9)


def samples_for_mean(sd: float, effect: float, *, rel_err: float = 0.1, z: float = 5.0) -> int:
    """Samples needed so that ``z`` standard errors of a mean of samples with standard deviation
    ``sd`` are ``rel_err * |effect|``: ``n = (z sd / (rel_err |effect|))^2``.

    Example:
        >>> samples_for_mean(1.0, 1.0, rel_err=0.5, z=5.0)
        100
    """
    fn = "samples_for_mean"
    sd = check_real(sd, "sd", fn=fn, lo=0.0)
    effect = check_real(effect, "effect", fn=fn)
    if effect == 0:
        fail(fn, "effect", effect, "is zero", "a nonzero effect size")
    rel_err = check_real(rel_err, "rel_err", fn=fn, lo=0.0, lo_open=True)
    z = check_real(z, "z", fn=fn, lo=0.0, lo_open=True)
    return max(2, math.ceil((z * sd / (rel_err * abs(effect))) ** 2 - 1e-9))
