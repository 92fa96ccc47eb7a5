"""Shared, solved-once inputs of the slow-roll tests (cached for the whole session).

One potential class with array parameters covers every model, so the background solve, the
spectra, GSR and Mukhanov-Sasaki each compile once for all of them; ``functools.cache`` makes
each background (and each independent reference spectrum) a per-session singleton shared by
test_slowroll_*.py.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import ms_reference
import numpy as np
from scipy.special import gammaln

from jaxattr.slowroll import background, horizon_k

EPS = (0.005, 0.01, 0.02, 0.04)
ROOT_2_3 = math.sqrt(2.0 / 3.0)


class Family(eqx.Module):
    """V = v0 phi^p exp(-lam phi) (1 - s exp(-mu phi))^2 + w (1 + cos(phi / f)).

    Monomials (lam = s = w = 0), power-law inflation (p = 0), Starobinsky (p = lam = 0, s = 1,
    mu = sqrt(2/3)) and natural inflation (v0 = 0, w = 1)."""

    v0: jax.Array
    p: jax.Array
    lam: jax.Array
    s: jax.Array
    mu: jax.Array
    w: jax.Array
    f: jax.Array

    def __call__(self, phi):
        base = self.v0 * jnp.power(phi, self.p) * jnp.exp(-self.lam * phi)
        return base * (1 - self.s * jnp.exp(-self.mu * phi)) ** 2 + self.w * (
            1 + jnp.cos(phi / self.f))


def family(v0=1.0, p=0.0, lam=0.0, s=0.0, mu=0.0, w=0.0, f=1.0):
    return Family(*(jnp.asarray(v, jnp.float64) for v in (v0, p, lam, s, mu, w, f)))


def starobinsky():
    return family(s=1.0, mu=ROOT_2_3)


def natural(f=7.0):
    return family(v0=0.0, w=1.0, f=f)


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


@functools.cache
def power_law(eps):
    return background(family(lam=math.sqrt(2 * eps)), 1.0, n_max=25.0, require_end=False)


@functools.cache
def quadratic():
    """m^2 phi^2 / 2 from phi0 = 17 (n_end = 72.8)."""
    return background(family(p=2.0, v0=0.5), 17.0, efolds=60)


@functools.cache
def natural_bg():
    """Natural inflation V = 1 + cos(phi / 7) from phi0 = 1 (n_end = 260)."""
    return background(natural(), 1.0, efolds=30)


# the independent reference at rtol 1e-10: 7e-10 from the exact power-law spectrum (see
# ms_reference), far below every slow-roll error it is compared with (>= 3e-7)
REF_RTOL = 1e-10


@functools.cache
def quadratic_reference(n_star):
    """(k, ln P) of the independent reference for m^2 phi^2 / 2 at N* - 1, N*, N* + 1 e-folds
    before the end, its own horizon crossing defining k."""
    ref = ms_reference.quadratic(17.0, rtol=REF_RTOL)
    ks = np.array([ref.k_at(ref.n_end - n_star + d) for d in (1.0, 0.0, -1.0)])
    return ks, ref.log_powers(ks)


@functools.cache
def natural_reference(n_star=30):
    """(k, ln P) of the independent reference for natural inflation (f = 7) at N* + 1, N*,
    N* - 1 (3 k, like every other call: one compilation per function)."""
    f = 7.0
    ref = ms_reference.Reference(lambda x: 1 + math.cos(x / f), lambda x: -math.sin(x / f) / f,
                                 lambda x: -math.cos(x / f) / f**2, 1.0, rtol=REF_RTOL)
    ks = np.array([ref.k_at(ref.n_end - n_star + d) for d in (1.0, 0.0, -1.0)])
    return ks, ref.log_powers(ks)


def k_star(bg, n_star):
    """k crossing N* e-folds before the end of bg, from the library (for non-reference tests)."""
    return horizon_k(bg, jnp.asarray(float(bg.n_end) - n_star))
