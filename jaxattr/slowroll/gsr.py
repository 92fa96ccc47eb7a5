"""General slow roll (Stewart 2002, Dvorkin-Hu form), evaluated on the numerical background.

x = -k eta, f = 2 pi x z / k = 2 pi Y phi_N / H (a function of time only), q = ln f,
' = d/d ln x = -Y d/dN.  The mode equation is y'' + (1 - 2/x^2) y = g y / x^2 with
g = q'' + q'^2 - 3 q' = (3/2) G' + q'^2, G = -2 q + (2/3) q'.  First order:

    ln P(k) = G(ln x*) + int_{x*}^inf (dx/x) W(x) G'(ln x),
    W(x) = 3 sin 2x/(2x^3) - 3 cos 2x/x^2 - 3 sin 2x/(2x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ArgumentError
from .background import Background, x64
from .parameters import cosmic_state, d_dn, hubble

__all__ = ["gsr_power_spectrum"]


def q_fn(potential):
    """q = ln f = ln(2 pi Y |phi_N| / H) of the state z = (phi, phidot, Y)."""
    ln2pi = math.log(2 * math.pi)
    return lambda z: (
        ln2pi + jnp.log(z[2]) + jnp.log(jnp.abs(z[1])) - 2 * jnp.log(hubble(potential, z))
    )


def d_lnx(potential, fn):
    """d/d ln x = -Y d/dN of a state function."""
    dn = d_dn(potential, fn)
    return lambda z: -z[2] * dn(z)


def g_fn(potential):
    """g = x^2 z_xx / z - 2 (the source of the mode equation), exact along the flow."""
    q = q_fn(potential)
    q1 = d_lnx(potential, q)
    q2 = d_lnx(potential, q1)
    return lambda z: q2(z) + q1(z) ** 2 - 3 * q1(z)


def big_g_fns(potential):
    """G = -2q + (2/3)q' and G' = dG/d ln x."""
    q = q_fn(potential)
    q1 = d_lnx(potential, q)
    big_g = lambda z: -2 * q(z) + (2.0 / 3.0) * q1(z)
    return big_g, d_lnx(potential, big_g)


def window(x):
    """W(x) = 3 sin 2x/(2x^3) - 3 cos 2x/x^2 - 3 sin 2x/(2x), series below x = 0.1."""
    xs = jnp.where(x < 0.1, 1.0, x)
    full = 3 * jnp.sin(2 * xs) / (2 * xs**3) - 3 * jnp.cos(2 * xs) / xs**2 - 3 * jnp.sin(
        2 * xs
    ) / (2 * xs)
    x2 = x * x
    series = 1 + 2 * x2 / 5 - 6 * x2**2 / 35 + 4 * x2**3 / 189 - 2 * x2**4 / 1485
    return jnp.where(x < 0.1, series, full)


def _ci_asymptotic(z):
    """Cosine integral Ci(z) for large z (z >= 100: error < 1e-16)."""
    f = (1 - 2 / z**2 + 24 / z**4 - 720 / z**6) / z
    g = (1 - 6 / z**2 + 120 / z**4 - 5040 / z**6) / z**2
    return f * math.sin(z) - g * math.cos(z)


def window_tail(big_x: float) -> float:
    """T(X) = int_X^inf W(x) dx/x in closed form (X >= 50)."""
    s2, c2 = math.sin(2 * big_x), math.cos(2 * big_x)
    boundary = 0.5 * s2 / big_x**3 - c2 / big_x**2
    sin_int = s2 / big_x - 2 * _ci_asymptotic(2 * big_x)  # int_X^inf sin 2x / x^2 dx
    return boundary + 0.5 * sin_int


def _nodes(x_min, x_max, n_log, panel, per_panel):
    """Quadrature in x~ = exp(N_c - N): Gauss-Legendre in ln x~ on [x_min, 1], panels in x~
    on [1, x_max].  Returns nodes x~ and weights for the measure dx~/x~."""
    gx, gw = np.polynomial.legendre.leggauss(n_log)
    a, b = math.log(x_min), 0.0
    s = 0.5 * (b - a) * gx + 0.5 * (b + a)
    nodes = [np.exp(s)]
    weights = [0.5 * (b - a) * gw]
    px, pw = np.polynomial.legendre.leggauss(per_panel)
    edges = np.arange(1.0, x_max + 0.5 * panel, panel)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        xx = 0.5 * (hi - lo) * px + 0.5 * (hi + lo)
        nodes.append(xx)
        weights.append(0.5 * (hi - lo) * pw / xx)
    return np.concatenate(nodes), np.concatenate(weights)


def _gsr1_one(bg, log_k, n_c, nodes, weights, tail):
    pot = bg.potential
    big_g, big_g1 = big_g_fns(pot)

    def at(xt):
        n = n_c - jnp.log(xt)
        z = cosmic_state(bg, n)
        x = jnp.exp(log_k - bg.log_ah(n)) * z[2]
        return x, z[2], big_g1(z)

    x, y, g1 = jax.vmap(at)(nodes)
    integral = jnp.sum(weights * window(x) * g1 / y)
    z_star = cosmic_state(bg, n_c - jnp.log(nodes[0]))
    # nodes[0] is the smallest x: the boundary term G(ln x*) is taken there, and the tail
    # beyond the last node uses G' there (int_X^inf W G' dx/x ~ G'(X) T(X)).
    return big_g(z_star) + integral + tail * g1[-1]


def gsr_power_spectrum(
    potential: Callable | Background,
    k,
    *,
    order: int = 1,
    x_min: float = 1e-3,
    x_max: float = 100.0,
    phi0: float | None = None,
    **background_kwargs,
) -> jax.Array:
    """General slow-roll power spectrum at first order (Stewart 2002, Dvorkin-Hu form).

    Args:
        potential: V(phi) or a solved :class:`Background`.
        k: wavenumbers, any shape.
        order: 1 (second order: not available yet).
        x_min: lower limit x* of the window integral (super-horizon).
        x_max: upper limit of the quadrature (the tail beyond it is added in closed form).
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        P(k) shaped like ``k``.

    Raises:
        ArgumentError: bad order, x_min, x_max or k.

    Example:
        >>> from jaxattr.slowroll import background, horizon_k
        >>> bg = background(lambda p: 0.5 * p**2, 14.0)  # doctest: +SKIP
        >>> print(bool(gsr_power_spectrum(bg, horizon_k(bg, 20.0)) > 0))  # doctest: +SKIP
        True

    References:
        Stewart 2002, arXiv:astro-ph/0110322; Dvorkin, Hu 2010, arXiv:0910.2237;
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    from .spectrum import _eval_n_jit, as_background, check_k

    if order != 1:
        raise ArgumentError(f"order={order!r} must be 1")
    if not 0 < x_min < 0.1:
        raise ArgumentError(f"x_min={x_min} must be in (0, 0.1)")
    if not x_max >= 50:
        raise ArgumentError(f"x_max={x_max} must be >= 50")
    bg = as_background(potential, phi0, background_kwargs)
    nodes, weights = _nodes(x_min, x_max, 40, 1.0, 12)
    with x64():
        k = check_k(bg, k, "conformal", margin_start=math.log(x_max) + 0.5,
                    margin_end=math.log(1 / x_min) + 0.5)
        log_k = jnp.log(k)
        n_c = _eval_n_jit(bg, log_k, "conformal")
        lp = _gsr_jit(bg, log_k, n_c, jnp.asarray(nodes), jnp.asarray(weights),
                      window_tail(x_max))
        return jnp.exp(lp)


@eqx.filter_jit
def _gsr_jit(bg, log_k, n_c, nodes, weights, tail):
    fn = lambda lk, nc: _gsr1_one(bg, lk, nc, nodes, weights, tail)
    return jax.vmap(fn)(jnp.ravel(log_k), jnp.ravel(n_c)).reshape(log_k.shape)
