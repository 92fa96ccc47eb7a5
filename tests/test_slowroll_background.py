"""Slow-roll background and parameters: exact power-law values, conversions, bad input."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import slowroll_shared as shared
from slowroll_shared import family

from jaxattr._compat import enable_x64
from jaxattr.errors import ArgumentError, ArgumentTypeError
from jaxattr.slowroll import background, flow_parameters, horizon_k, potential_parameters


@pytest.fixture(scope="module")
def power_law():
    return 0.02, shared.power_law(0.02)


@pytest.fixture(scope="module")
def quadratic():
    return shared.quadratic()


def test_power_law_parameters_exact(power_law):
    eps, bg = power_law
    n = jnp.array([2.0, 8.0, 15.0])
    p = flow_parameters(bg, n)
    np.testing.assert_allclose(p["eps1"], eps, rtol=1e-10)
    # eps_{n>=2} = 0: eps3, eps4 are 0/0 there, only their products with eps2 are defined
    np.testing.assert_allclose(p["eps2"], 0.0, atol=1e-10)
    np.testing.assert_allclose(p["eps2"] * p["eps3"], 0.0, atol=1e-10)
    np.testing.assert_allclose(p["eps2"] * p["eps3"] * p["eps4"], 0.0, atol=1e-10)
    for i in (1, 2, 3):  # delta_n = (-1)^n n! eps^n; abs error set by the ~1e-12 solve
        np.testing.assert_allclose(p[f"delta{i}"], (-1) ** i * math.factorial(i) * eps**i,
                                   rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(p["Y"], 1 / (1 - eps), rtol=1e-12)
    # H^2 = V/(3 - eps) on the attractor, phi = phi0 + sqrt(2 eps) N
    phi = 1.0 + math.sqrt(2 * eps) * np.asarray(n)
    np.testing.assert_allclose(p["phi"], phi, rtol=1e-11)
    np.testing.assert_allclose(p["H"], np.sqrt(np.exp(-math.sqrt(2 * eps) * phi) / (3 - eps)),
                               rtol=1e-11)


def test_quadratic_end_and_conversions(quadratic):
    bg = quadratic
    assert bool(bg.ended)
    # slow-roll estimate: N_end ~ (phi0^2 - phi_end^2)/4 with phi_end ~ sqrt(2)
    assert abs(float(bg.n_end) - (17.0**2 - 2.0) / 4) < 1.5
    np.testing.assert_allclose(bg.phi_n(bg.n_end) ** 2 / 2, 1.0, rtol=1e-9)
    p = flow_parameters(bg, jnp.array([10.0, 30.0, 50.0]))
    e1, e2, e3, e4 = (p[f"eps{i}"] for i in range(1, 5))
    np.testing.assert_allclose(p["delta1"], e2 / 2 - e1, rtol=1e-10)
    d2 = 2 * e1**2 - 2.5 * e1 * e2 + e2**2 / 4 + e2 * e3 / 2
    np.testing.assert_allclose(p["delta2"], d2, rtol=1e-9)
    d3 = (-6 * e1**3 + 12.5 * e1**2 * e2 - 4.5 * e1 * e2**2 - 4 * e1 * e2 * e3 + e2**3 / 8
          + 0.75 * e2**2 * e3 + 0.5 * e2 * e3**2 + 0.5 * e2 * e3 * e4)
    np.testing.assert_allclose(p["delta3"], d3, rtol=1e-8)
    # slow roll: eps1 = eps_V (1 - 4/3 eps_V + 2/3 eta_V) + O(2), eps_V = eta_V = 2/phi^2
    ev = 2 / p["phi"] ** 2
    assert np.all(np.abs(p["eps1"] / ev - (1 - 2 * ev / 3)) < 5 * ev**2)
    # Y = 1 + eps1 + eps1^2 + eps1 eps2 + O(3)
    y2 = 1 + e1 + e1**2 + e1 * e2
    xi = np.maximum(np.abs(e1), np.abs(e2))
    assert np.all(np.abs(p["Y"] - y2) < 10 * xi**3)
    assert np.all(np.abs(p["Y"] - (1 + e1)) > 0.1 * xi**2)  # and the 2nd-order term is seen


def test_potential_parameters_closed_form():
    phi = jnp.array([3.0, 10.0])
    p = potential_parameters(lambda x: x**4, phi)
    np.testing.assert_allclose(p["eps_V"], 8 / phi**2, rtol=1e-14)
    np.testing.assert_allclose(p["eta_V"], 12 / phi**2, rtol=1e-14)
    np.testing.assert_allclose(p["xi2_V"], 96 / phi**4, rtol=1e-14)


def test_float32_input_promoted_and_warned():
    phi = jnp.asarray(10.0, dtype=jnp.float32)
    with pytest.warns(UserWarning, match="potential_parameters: phi has dtype float32"):
        p = potential_parameters(lambda x: x**2, phi)
    assert p["eps_V"].dtype == jnp.float64


def test_x64_off_n_end_arithmetic_stays_float64(quadratic):
    """With JAX's float64 off (the default), ``bg.n_end - 60`` used to be float32 (4e-6 e-folds
    off: ln P off by 1.4e-8); n_end is now a numpy float64, so it stays exact.  Mutation: storing
    n_end as a jax array (the old code) makes the dtype float32 and the k differ by 3e-6."""
    bg = quadratic
    exact = horizon_k(bg, float(bg.n_end) - 60.0)
    with enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing to warn about
        n = bg.n_end - 60
        assert n.dtype == np.float64
        k = horizon_k(bg, n)
        assert k.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(k), np.asarray(exact))


def test_x64_off_float32_inputs_warned(quadratic):
    """A float32 n (rounded before horizon_k sees it) and a float32 potential parameter (rounded
    before any float64 arithmetic; it passes the float64 output check) are warned about.
    Mutation: deleting either warning fails its pytest.warns."""
    bg = quadratic
    with enable_x64(False):
        n32 = jnp.asarray(float(bg.n_end), jnp.float32) - 60
        assert n32.dtype == jnp.float32
        with pytest.warns(UserWarning, match="horizon_k: n has dtype float32: it was rounded"):
            k = horizon_k(bg, n32)
        assert k.dtype == np.float64  # computed in float64 all the same
        lam32 = jnp.asarray(0.2)  # float32 with x64 off
        assert lam32.dtype == jnp.float32
    # v0 = -1: the warning comes first, then V(phi0) < 0 stops it before any (new) compile
    pot = shared.Family(*(jnp.asarray(v, jnp.float64) for v in (-1.0, 0.0)),
                        lam32, *(jnp.asarray(v, jnp.float64) for v in (0.0, 0.0, 0.0, 1.0)))
    with (pytest.warns(UserWarning, match="background: potential holds float32 parameter"),
          pytest.raises(ArgumentError, match="gives V")):
        background(pot, 1.0)


def test_bad_input(quadratic):
    fn = "background: "
    with pytest.raises(ArgumentError, match=fn + r"phi0=1.0 gives V\(phi0\)=-1.0; expected"):
        background(lambda x: -(x**2), 1.0)
    with pytest.raises(ArgumentError, match=fn + "phi0=0.0 gives V'.*does not roll"):
        background(lambda x: 1.0 + x**2, 0.0)
    with pytest.raises(ArgumentError, match=fn + "phi0=0.5 gives eps1=8 >= 1: .*not inflating"):
        background(lambda x: x**2, 0.5)
    with pytest.raises(ArgumentError, match=fn + "n_max=5.0 was reached before inflation ended"):
        background(family(lam=0.2), 1.0, n_max=5.0)
    with pytest.raises(ArgumentError, match=fn + "efolds=100.0 is more than the 7.*e-folds"):
        background(family(p=2.0, v0=0.5), 17.0, efolds=100)
    with pytest.raises(ArgumentTypeError, match=fn + "potential=.* returned float32"):
        background(lambda x: jnp.float32(1.0) + x.astype(jnp.float32) ** 2, 10.0)
    with pytest.raises(ArgumentError, match=fn + r"n_max=-1 is out of range; expected .*\(0, inf"):
        background(lambda x: x**2, 10.0, n_max=-1)
    with pytest.raises(ArgumentTypeError, match=fn + "potential=3.0 has type float"):
        background(3.0, 10.0)
    with pytest.raises(ArgumentTypeError, match=fn + "max_steps=1.5 has type float"):
        background(lambda x: x**2, 10.0, max_steps=1.5)
    with pytest.raises(ArgumentTypeError, match=fn + "phi0=<array of shape \\(2,\\)"):
        background(lambda x: x**2, np.ones(2))
    with pytest.raises(ArgumentTypeError, match="flow_parameters: bg=.* has type Family"):
        flow_parameters(family(), 1.0)
    with pytest.raises(ArgumentTypeError, match="horizon_k: n='a' has dtype <U1"):
        horizon_k(quadratic, "a")
