"""Slow-roll spectrum: exact power-law answers, convergence orders, m^2 phi^2 vs Mukhanov-Sasaki."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma, gammaln
from test_slowroll_background import family

from jaxattr.errors import ArgumentError
from jaxattr.slowroll import (
    background,
    gsr_power_spectrum,
    horizon_k,
    mukhanov_sasaki,
    power_spectrum,
    running,
    spectral_index,
)

EPS = (0.005, 0.01, 0.02, 0.04)


def exact_power_law(eps, log_k):
    """ln P of power-law inflation V = exp(-sqrt(2 eps) phi), phi0 = 1, a = 1 at N = 0.

    On the attractor phi = 1 + sqrt(2 eps) N, H^2 = exp(-sqrt(2 eps) phi)/(3 - eps), so
    ln(aH) = N(1 - eps) + ln H(0): the N where aH = k is closed form."""
    lam = math.sqrt(2 * eps)
    ln_h0 = 0.5 * (-lam - math.log(3 - eps))
    n = (log_k - ln_h0) / (1 - eps)
    ln_h = ln_h0 - eps * n
    nu = 1.5 + eps / (1 - eps)
    return ((2 * nu - 3) * math.log(2) + 2 * (gammaln(nu) - gammaln(1.5))
            + (2 * nu - 1) * math.log(1 - eps) + 2 * ln_h - math.log(8 * math.pi**2 * eps))


@pytest.fixture(scope="module")
def power_laws():
    return {e: background(family(lam=math.sqrt(2 * e)), 1.0, n_max=25.0, require_end=False)
            for e in EPS}


@pytest.fixture(scope="module")
def quadratic():
    bg = background(family(p=2.0, v0=0.5), 17.0, efolds=60)
    n_star = float(bg.n_end) - 60
    k = horizon_k(bg, jnp.array([n_star - 1.0, n_star, n_star + 1.0]))
    return bg, k, mukhanov_sasaki(bg, k)


def test_mukhanov_sasaki_power_law_exact(power_laws):
    eps = 0.04
    bg = power_laws[eps]
    k = horizon_k(bg, jnp.array([9.0, 12.0]))
    got = np.log(np.asarray(mukhanov_sasaki(bg, k)))
    want = exact_power_law(eps, np.log(np.asarray(k)))
    np.testing.assert_allclose(got, want, atol=1e-7, rtol=0)


def test_order_n_error_scales_as_eps_n_plus_1(power_laws):
    errs = np.zeros((4, len(EPS)))
    for j, eps in enumerate(EPS):
        bg = power_laws[eps]
        k = horizon_k(bg, 12.0)
        want = exact_power_law(eps, math.log(float(k)))
        for order in range(4):
            errs[order, j] = abs(float(jnp.log(power_spectrum(bg, k, order=order))) - want)
    for order in range(4):
        slope = np.polyfit(np.log(EPS), np.log(errs[order]), 1)[0]
        assert abs(slope - (order + 1)) < 0.3, (order, slope, errs[order])
    # the series P/P0 = 1 - 0.5407257 eps - 0.4597314 eps^2 - 0.3127651 eps^3 + ...: the
    # third-order error is the 4th-order remainder, far below the cubic term
    assert errs[3, 0] < 0.1 * 0.3127651 * EPS[0] ** 3


def test_power_law_tilt_and_running(power_laws):
    eps = 0.02
    bg = power_laws[eps]
    k = horizon_k(bg, jnp.array([8.0, 14.0]))
    want = 1 - 2 * eps / (1 - eps)
    for method in ("closed", "autodiff"):
        ns = spectral_index(bg, k, method=method)
        # closed form: third order (error ~ eps^4); autodiff of 3rd-order ln P: same order
        np.testing.assert_allclose(ns, want, atol=10 * eps**4)
        np.testing.assert_allclose(running(bg, k, method=method), 0.0, atol=1e-9)


def test_quadratic_accuracy_vs_mukhanov_sasaki(quadratic):
    bg, k, p_ms = quadratic
    bounds = (1e-2, 5e-4, 2e-5, 1e-6)  # REFERENCE.md: 8.1e-3, 4.4e-4, 9.4e-6, 3.5e-7
    errs = []
    for order, bound in enumerate(bounds):
        for point in ("conformal", "horizon"):
            err = np.max(np.abs(np.log(np.asarray(power_spectrum(bg, k, order=order, point=point)
                                                  / p_ms))))
            assert err < bound, (order, point, err)
        errs.append(err)
    assert errs[3] < 0.1 * errs[2]  # the third order beats the second
    assert errs[0] > 5e-3  # and the leading order really is that far off


def test_quadratic_tilt_closed_vs_autodiff(quadratic):
    bg, k, p_ms = quadratic
    closed = spectral_index(bg, k, method="closed")
    auto = spectral_index(bg, k, method="autodiff")
    np.testing.assert_allclose(closed, auto, atol=5e-7)  # xi^4 ~ 3e-7 apart
    # and both agree with a finite difference of the numerical spectrum
    lk = np.log(np.asarray(k))
    fd = np.diff(np.log(np.asarray(p_ms))) / np.diff(lk)
    a_closed = running(bg, k, method="closed")
    a_auto = np.asarray(running(bg, k, method="autodiff"))
    # trapezoid rule with its end correction: mean of n_s - 1 over the interval
    dlk = np.diff(lk)
    trap = 0.5 * (auto[1:] + auto[:-1]) - 1 - dlk / 12 * np.diff(a_auto)
    np.testing.assert_allclose(fd, trap, atol=2e-7)
    np.testing.assert_allclose(a_closed, a_auto, rtol=2e-3)


def gsr1_power_law_remainder(eps):
    """ln P_exact - ln P_GSR1 on power law, in closed form.

    There q = ln f is linear in ln x with slope -d, d = nu - 3/2 = eps/(1 - eps), and
    ln P_exact = -2 q(0) + F(d), F(d) = 2[d ln 2 + ln Gamma(3/2 + d) - ln Gamma(3/2)];
    first-order GSR is exactly its linearisation -2 q(0) + F'(0) d (for any x*), so the
    error is F(d) - F'(0) d = psi'(3/2) d^2 + O(d^3)."""
    d = eps / (1 - eps)
    f = 2 * (d * math.log(2) + gammaln(1.5 + d) - gammaln(1.5))
    return f - 2 * (math.log(2) + digamma(1.5)) * d


def test_gsr_first_order(power_laws, quadratic):
    errs = []
    for eps in EPS:
        bg = power_laws[eps]
        k = horizon_k(bg, 12.0)
        want = exact_power_law(eps, math.log(float(k)))
        errs.append(want - float(jnp.log(gsr_power_spectrum(bg, k))))
    # measured to within 3e-8 of the closed form (1.6e-3 at eps = 0.04); taking G(ln x*) at the
    # first quadrature node instead of at x* leaves an O(eps) offset (1.2e-2 eps), a tail at
    # x~ = x_max instead of the physical x there an oscillating O(eps/x_max^2) one (1e-5)
    np.testing.assert_allclose(errs, [gsr1_power_law_remainder(e) for e in EPS], atol=1e-7)
    slope = np.polyfit(np.log(EPS), np.log(np.abs(errs)), 1)[0]
    assert abs(slope - 2) < 0.15, (slope, errs)  # measured 2.03
    bg, k, p_ms = quadratic
    err = np.max(np.abs(np.log(np.asarray(gsr_power_spectrum(bg, k) / p_ms))))
    err1 = np.max(np.abs(np.log(np.asarray(power_spectrum(bg, k, order=1) / p_ms))))
    # both are first order (errors ~ xi^2); measured 2.7e-4 (GSR) vs 4.5e-4 (standard)
    assert err < 3.5e-4, (err, err1)
    assert err < 0.7 * err1, (err, err1)


def test_bad_input(quadratic, power_laws):
    bg, k, _ = quadratic
    with pytest.raises(ArgumentError, match="order=4 must be one of"):
        power_spectrum(bg, k, order=4)
    with pytest.raises(ArgumentError, match="point='middle' must be one of"):
        power_spectrum(bg, k, point="middle")
    with pytest.raises(ArgumentError, match="outside the modes that exit"):
        power_spectrum(bg, 1e-30)
    with pytest.raises(ArgumentError, match="outside the modes that exit"):
        mukhanov_sasaki(bg, horizon_k(bg, bg.n_end - 1.0))
    with pytest.raises(ArgumentError, match="k must be > 0"):
        power_spectrum(bg, -1.0)
    with pytest.raises(ArgumentError, match="method='fd' must be"):
        spectral_index(bg, k, method="fd")
    with pytest.raises(ArgumentError, match="phi0=None"):
        power_spectrum(lambda x: x**2, k)
    with pytest.raises(ArgumentError, match="start=0.5 must be > 1"):
        mukhanov_sasaki(bg, k, start=0.5)
    with pytest.raises(ArgumentError, match="order=3 must be 1 or 2"):
        gsr_power_spectrum(bg, k, order=3)
    # float32 k is promoted to float64
    p32 = power_spectrum(bg, k.astype(jnp.float32), order=0)
    assert p32.dtype == jnp.float64


def test_results_stay_float64_when_x64_is_off_globally(quadratic):
    bg, k, _ = quadratic
    expected = np.asarray(spectral_index(bg, k, method="closed"))
    with jax.enable_x64(False):  # what a user without JAX_ENABLE_X64 sees
        ns = spectral_index(bg, k, method="closed")
        assert ns.dtype == np.float64
        np.testing.assert_array_equal(np.asarray(ns), expected)  # no float32 truncation of 1 + x
