"""Slow-roll background and parameters: exact power-law values, conversions, bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.errors import ArgumentError
from jaxattr.slowroll import background, flow_parameters, potential_parameters


class Family(eqx.Module):
    """V = v0 phi^p exp(-lam phi): monomials (lam = 0) and power-law inflation (p = 0).

    One class with array parameters, so every instance shares one compilation."""

    v0: jax.Array
    p: jax.Array
    lam: jax.Array

    def __call__(self, phi):
        return self.v0 * jnp.power(phi, self.p) * jnp.exp(-self.lam * phi)


def family(v0=1.0, p=0.0, lam=0.0):
    return Family(jnp.asarray(v0, float), jnp.asarray(p, float), jnp.asarray(lam, float))


@pytest.fixture(scope="module")
def power_law():
    eps = 0.02
    return eps, background(family(lam=math.sqrt(2 * eps)), 1.0, n_max=20.0, require_end=False)


@pytest.fixture(scope="module")
def quadratic():
    return background(family(p=2.0, v0=0.5), 16.0)


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
    assert abs(float(bg.n_end) - (16.0**2 - 2.0) / 4) < 1.5
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


def test_float32_input_promoted():
    phi = jnp.asarray(10.0, dtype=jnp.float32)
    p = potential_parameters(lambda x: x**2, phi)
    assert p["eps_V"].dtype == jnp.float64


def test_bad_input(quadratic):
    with pytest.raises(ArgumentError, match=r"V\(phi0\)=-1.0 must be > 0"):
        background(lambda x: -(x**2), 1.0)
    with pytest.raises(ArgumentError, match="does not roll"):
        background(lambda x: 1.0 + x**2, 0.0)
    with pytest.raises(ArgumentError, match="not inflating"):
        background(lambda x: x**2, 0.5)
    with pytest.raises(ArgumentError, match="inflation never ends within n_max=5.0"):
        background(family(lam=0.2), 1.0, n_max=5.0)
    with pytest.raises(ArgumentError, match="lasts only .* e-folds < efolds=100"):
        background(family(p=2.0, v0=0.5), 16.0, efolds=100)
    with pytest.raises(TypeError, match="returned float32"):
        background(lambda x: jnp.float32(1.0) + x.astype(jnp.float32) ** 2, 10.0)
    with pytest.raises(ArgumentError, match="n_max=-1 must be > 0"):
        background(lambda x: x**2, 10.0, n_max=-1)
