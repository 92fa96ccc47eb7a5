"""Second-order general slow roll: xi^3 convergence on power law, convergence as x_min -> 0,
accuracy against the independent Mukhanov-Sasaki reference (tests/ms_reference.py)."""

import jax.numpy as jnp
import numpy as np
import pytest
import slowroll_shared as shared
from slowroll_shared import EPS, exact_power_law, family, starobinsky

from jaxattr.errors import ArgumentError, ArgumentTypeError
from jaxattr.slowroll import (
    background,
    gsr_power_spectrum,
    horizon_k,
    mukhanov_sasaki,
    power_spectrum,
)


def _ln(p):
    return np.log(np.asarray(p))


@pytest.fixture(scope="module")
def power_law_errors():
    """max |ln P_GSR - ln P_exact| over 3 k for orders 1, 2 at each eps (power law)."""
    errs = np.zeros((2, len(EPS)))
    for j, eps in enumerate(EPS):
        bg = shared.power_law(eps)
        k = horizon_k(bg, jnp.array([11.0, 12.0, 13.0]))
        want = exact_power_law(eps, np.log(np.asarray(k)))
        for i, order in enumerate((1, 2)):
            errs[i, j] = np.max(np.abs(_ln(gsr_power_spectrum(bg, k, order=order)) - want))
    return errs


def test_gsr2_error_scales_as_xi_cubed(power_law_errors):
    slope = np.polyfit(np.log(EPS), np.log(power_law_errors[1]), 1)[0]
    # measured 3.27 (errors 7.5e-9, 8.4e-8, 7.8e-7, 6.8e-6: err/eps^3 = 0.060 .. 0.107, an
    # O(eps^4) admixture of the same sign, hence the asymmetric window); a first-order-accurate
    # result has slope 2.  Mutation: one pass in q' in the super-horizon stage instead of two
    # gives slope 2.10 (errors 9.5e-6 .. 7.5e-4)
    assert 2.8 < slope < 3.6, (slope, power_law_errors[1])
    # one order of xi better than first order (~ psi'(3/2) eps^2) at every eps
    assert np.all(power_law_errors[1] < np.array(EPS) * power_law_errors[0]), power_law_errors


@pytest.mark.parametrize("n_star", [60, 30])
def test_gsr2_quadratic_vs_independent_reference(n_star):
    """m^2 phi^2 against the scipy reference (no code shared).  Target <= 3e-6 at N* = 60."""
    bg = shared.quadratic()
    k, ln_ref = shared.quadratic_reference(n_star)
    err2 = np.max(np.abs(_ln(gsr_power_spectrum(bg, k, order=2)) - ln_ref))
    err1 = np.max(np.abs(_ln(gsr_power_spectrum(bg, k, order=1)) - ln_ref))
    # regression bounds = measured x 2: N* = 60: 5.9e-7 (target 3e-6; the previous
    # implementation: 7.9e-6), N* = 30: 6.7e-6; first order 2.7e-4, 1.1e-3
    bound = {60: 1.2e-6, 30: 1.4e-5}[n_star]
    assert err2 < bound, (err1, err2)
    assert err2 < 0.02 * err1, (err1, err2)  # measured 0.0022, 0.0059


def test_gsr2_natural_inflation_beats_standard_second_order():
    """Natural inflation (f = 7) at N* = 30, where the old x_min-dependent second order was
    worse than the standard second-order formula."""
    bg = shared.natural_bg()
    k, ln_ref = shared.natural_reference(30)
    err_gsr = float(_ln(gsr_power_spectrum(bg, k, order=2))[1] - ln_ref[1])
    err_std = float(_ln(power_spectrum(bg, k, order=2))[1] - ln_ref[1])
    # measured -6.3e-6 vs -8.2e-5 (the previous GSR2: +1.4e-4 at the default x_min = 1e-3);
    # regression bound 2 x measured
    assert abs(err_gsr) < 1.3e-5, (err_gsr, err_std)
    assert abs(err_gsr) < 0.25 * abs(err_std), (err_gsr, err_std)


def test_gsr2_converges_as_x_min_to_zero():
    """The second order must have a limit as x_min -> 0.  Measured changes vs x_min = 1e-5:
    2.4e-9 (1e-3), 3.3e-11 (1e-4).  Mutations: the previous implementation (ln x* secular
    terms, no exact super-horizon stage) changed by 4.6e-4 between 1e-3 and 1e-5 on this
    model; dropping the analytic (0, x_min) piece -q' beta x_min^2 / 3 leaves 3.5e-8."""
    bg = shared.natural_bg()
    k = horizon_k(bg, float(bg.n_end) - jnp.array([31.0, 30.0, 29.0]))
    lnp = {x: _ln(gsr_power_spectrum(bg, k, order=2, x_min=x)) for x in (1e-3, 1e-4, 1e-5)}
    assert np.max(np.abs(lnp[1e-3] - lnp[1e-5])) < 1e-8
    assert np.max(np.abs(lnp[1e-4] - lnp[1e-5])) < 1e-9


def _errors_vs_ms(v, phi0):
    """Max |ln P / P_MS| of GSR orders 1, 2 at N* = 60 before the end and one e-fold around."""
    bg = background(v, phi0, efolds=60)
    n_star = float(bg.n_end) - 60
    k = horizon_k(bg, jnp.array([n_star - 1.0, n_star, n_star + 1.0]))
    ln_ms = _ln(mukhanov_sasaki(bg, k))
    return [np.max(np.abs(_ln(gsr_power_spectrum(bg, k, order=o)) - ln_ms)) for o in (1, 2)]


@pytest.mark.parametrize(
    ("v", "phi0", "bound"), [(family(p=4.0, v0=0.25), 25.0, 4.2e-6), (starobinsky(), 5.6, 1.1e-6)],
    ids=["lambda_phi4", "starobinsky"],
)
def test_gsr2_beats_gsr1_vs_mukhanov_sasaki(v, phi0, bound):
    # the library's MS (itself checked against the independent reference in
    # test_slowroll_spectrum.py to 2e-9)
    err1, err2 = _errors_vs_ms(v, phi0)
    # measured (GSR1, GSR2): lambda phi^4 (6.1e-4, 2.1e-6), Starobinsky (2.5e-4, 5.3e-7);
    # regression bounds 2 x measured; the ratio is ~ xi (measured 0.0034, 0.0021)
    assert err2 < bound, (err1, err2)
    assert err2 < 0.02 * err1, (err1, err2)


def test_gsr_order_checked():
    bg = shared.quadratic()
    k = shared.quadratic_reference(60)[0]
    with pytest.raises(ArgumentError, match="gsr_power_spectrum: order=3 is not an available"):
        gsr_power_spectrum(bg, k, order=3)
    with pytest.raises(ArgumentTypeError, match="gsr_power_spectrum: order=True is a bool"):
        gsr_power_spectrum(bg, k, order=True)
