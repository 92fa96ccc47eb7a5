"""Standard slow-roll power spectrum at orders 0-3, spectral index and running.

P/P0 (Choe-Gong-Stewart 2004) with P0 = H^2/(8 pi^2 eps1), in eps = eps1 and the Stewart-Gong
delta_n.  The evaluation point matters at third order: every quantity is taken where -k eta = 1
with a = alpha (``point="conformal"``, the default), or where aH = k with a = alpha - ln Y
(``point="horizon"``); both are exact through xi^3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import check_choice, check_int, fail
from .._compat import add_note
from ..errors import ArgumentError
from .background import Background, _float64, background, check_background, x64
from .parameters import _flow_parameters, cosmic_state, delta_fns, eps_fns, flow, hubble, lie

__all__ = [
    "ALPHA",
    "evaluation_efold",
    "horizon_k",
    "power_spectrum",
    "running",
    "spectral_index",
]

EULER_GAMMA = 0.57721566490153286061
ALPHA = 2.0 - math.log(2.0) - EULER_GAMMA  # 0.7296355...
ZETA3 = 1.20205690315959428540
PI2 = math.pi**2
POINTS = ("conformal", "horizon")


def _coefficient_terms(a):
    """The series P/P0 - 1 as [(order, coefficient, (powers of eps, d1, d2, d3))]."""
    z3 = ZETA3
    return [
        (1, 4 * a - 2, (1, 0, 0, 0)),
        (1, 2 * a, (0, 1, 0, 0)),
        (2, -(a**2) + PI2 / 12, (0, 0, 1, 0)),
        (2, 4 * a**2 - 19 + 7 * PI2 / 3, (2, 0, 0, 0)),
        (2, 3 * a**2 + 2 * a - 20 + 29 * PI2 / 12, (1, 1, 0, 0)),
        (2, 3 * a**2 - 4 + 5 * PI2 / 12, (0, 2, 0, 0)),
        (3, a**3 / 3 - PI2 * a / 12 + 4 / 3 - 2 * z3 / 3, (0, 0, 0, 1)),
        (
            3,
            -5 * a**3 / 3 - 2 * a**2 + 20 * a - 9 * PI2 * a / 4 + 16 / 3 + PI2 / 6 - 14 * z3 / 3,
            (1, 0, 1, 0),
        ),
        (3, -3 * a**3 + 8 * a - 7 * PI2 * a / 12 - 4 + 2 * z3, (0, 1, 1, 0)),
        (3, 4 * a**2 + 8 * a + 16 + 5 * PI2 - 48 * z3, (3, 0, 0, 0)),
        (
            3,
            -5 * a**3 / 3 + 4 * a**2 + 32 * a - 9 * PI2 * a / 4 + 88 / 3 + 23 * PI2 / 3
            - 230 * z3 / 3,
            (2, 1, 0, 0),
        ),
        (
            3,
            3 * a**3 + 4 * a**2 - 24 * a + 13 * PI2 * a / 4 + 16 + 7 * PI2 / 3 - 30 * z3,
            (1, 2, 0, 0),
        ),
        (3, 4 * a**3 - 16 * a + 5 * PI2 * a / 3 + 8 - 6 * z3, (0, 3, 0, 0)),
    ]


def series_ratio(eps, d1, d2, d3, a, order: int):
    """P/P0 truncated at ``order`` (0-3), with constant a (alpha, or alpha - ln Y)."""
    vals = (eps, d1, d2, d3)
    total = jnp.ones_like(eps)
    for o, c, powers in _coefficient_terms(a):
        if o <= order:
            term = c
            for v, p in zip(vals, powers, strict=True):
                if p:
                    term = term * v**p
            total = total + term
    return total


def log_power_fn(potential, point: str):
    """ln P at orders 0..3 (a vector of 4) as a function of the state z = (phi, phidot, Y)."""
    eps1 = eps_fns(potential, 1)[0]
    deltas = delta_fns(potential, 3)

    def lnp(z):
        h = hubble(potential, z)
        e = eps1(z)
        d1, d2, d3 = (f(z) for f in deltas)
        a = ALPHA if point == "conformal" else ALPHA - jnp.log(z[2])
        ln0 = jnp.log(h**2 / (8 * PI2 * e))
        return jnp.stack([ln0 + jnp.log(series_ratio(e, d1, d2, d3, a, o)) for o in range(4)])

    return lnp


def _evaluation_efold(bg: Background, log_k: jax.Array, point: str) -> jax.Array:
    """N where the mode ln k is evaluated: a guess from the grid, then Newton steps.

    ``point="conformal"``: ln k = ln(aH) - ln Y (-k eta = 1), d ln k/dN = 1/Y;
    ``point="horizon"``: ln k = ln(aH), d ln k/dN = 1 - eps1.
    """
    conformal = point == "conformal"
    gvals = bg.grid_log_ah - jnp.log(bg.grid_y) if conformal else bg.grid_log_ah
    n = jnp.interp(log_k, gvals, bg.grid)

    def newton(_, n):
        lah, y, e1 = bg.log_ah_y(n)
        f, df = (lah - jnp.log(y), 1.0 / y) if conformal else (lah, 1.0 - e1)
        return jnp.clip(n - (f - log_k) / df, bg.n_start, bg.n_end)

    return jax.lax.fori_loop(0, 3, newton, n)


def _check_order(order, fn, orders=(0, 1, 2, 3)):
    order = check_int(order, "order", fn=fn)
    if order not in orders:
        fail(fn, "order", order, "is not an available order",
             "one of " + ", ".join(map(str, orders)))
    return order


def _check_point(point, fn):
    return check_choice(point, "point", POINTS, fn=fn)


def as_background(potential_or_bg, phi0, bg_kwargs, fn: str = "background") -> Background:
    """Use a solved background as is, or solve one for a potential."""
    if isinstance(potential_or_bg, Background):
        return potential_or_bg
    if phi0 is None:
        fail(fn, "phi0", phi0, "is missing for a potential V", "the initial field value phi0",
             "pass phi0=..., or a solved Background instead of V")
    try:
        return background(potential_or_bg, phi0, **bg_kwargs)
    except (ArgumentError, TypeError) as e:
        add_note(e, f"(raised while {fn} solved the background of V from phi0={phi0!r})")
        raise


def log_k_range(bg: Background, point: str = "conformal") -> tuple[float, float]:
    """The range of ln k whose evaluation point lies inside the solved background."""
    with x64():
        vals = bg.grid_log_ah - jnp.log(bg.grid_y) if point == "conformal" else bg.grid_log_ah
        return float(vals[0]), float(jnp.max(vals))


def check_k(bg: Background, k, point: str = "conformal", *, margin_start=0.0, margin_end=0.0,
            fn: str = "power_spectrum", stacklevel: int = 4):
    """Validate k (positive, inside the solved range) and return it as float64."""
    kk = _float64(k, "k", fn, stacklevel)
    if kk.size == 0 or not np.all(kk > 0):
        fail(fn, "k", k, "is not all > 0" if kk.size else "is empty", "wavenumbers k > 0")
    lo, hi = log_k_range(bg, point)
    lk = np.log(kk)
    lo, hi = lo + margin_start, hi - margin_end
    if lk.min() < lo or lk.max() > hi:
        fail(fn, "k", k, f"spans [{kk.min():.4g}, {kk.max():.4g}], outside the modes that exit"
             " during the solved background", f"k in [{math.exp(lo):.4g}, {math.exp(hi):.4g}]")
    return jnp.asarray(kk)


def evaluation_efold(bg: Background, k: ArrayLike, *, point: str = "conformal") -> jax.Array:
    """The e-fold where mode k is evaluated (-k eta = 1, or aH = k).

    Raises:
        ArgumentError: bad point, or k outside the solved background.
        ArgumentTypeError: ``bg`` is not a :class:`Background`.
    """
    fn = "evaluation_efold"
    check_background(bg, fn)
    _check_point(point, fn)
    with x64():
        k = check_k(bg, k, point, fn=fn)
        return _eval_n_jit(bg, jnp.log(k), point)


@eqx.filter_jit
def _eval_n_jit(bg, log_k, point):
    return jax.vmap(lambda lk: _evaluation_efold(bg, lk, point))(jnp.ravel(log_k)).reshape(
        log_k.shape
    )


def horizon_k(bg: Background, n: ArrayLike) -> jax.Array:
    """k = aH of the mode that crosses the horizon at e-fold(s) ``n`` (a = 1 at N = 0).

    Computed in float64 whatever JAX's global float64 flag.  ``bg.n_end`` is a numpy float64,
    so ``horizon_k(bg, bg.n_end - 60)`` stays exact with the flag off; an ``n`` that arrives
    as float32 (rounded already: 4e-6 e-folds near N = 60) is used but warned about.

    Raises:
        ArgumentTypeError: ``bg`` is not a :class:`Background`, or ``n`` is not real.

    Warns:
        UserWarning: ``n`` has a floating dtype narrower than float64.

    Example:
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 16.0)
        >>> print(bool(horizon_k(bg, 10.0) > horizon_k(bg, 5.0)))
        True
    """
    check_background(bg, "horizon_k")
    n = _float64(n, "n", "horizon_k")
    with x64():
        return _horizon_jit(bg, jnp.asarray(n))


@eqx.filter_jit
def _horizon_jit(bg, n):
    return jnp.exp(bg.log_ah(n))


@eqx.filter_jit
def _power_jit(bg, log_k, point):
    """ln P at all orders 0..3: shape (4, *log_k.shape)."""
    lnp = log_power_fn(bg.potential, point)

    def one(lk):
        return lnp(cosmic_state(bg, _evaluation_efold(bg, lk, point)))

    return jax.vmap(one, out_axes=1)(jnp.ravel(log_k)).reshape((4, *log_k.shape))


@eqx.filter_jit
def _index_jit(bg, log_k, point, what):
    """n_s - 1 (``what="ns"``) or alpha_s (``"alpha"``, the tangent of the n_s jvp along the
    flow) of ln P at all orders 0..3: shape (4, *log_k.shape).  n_s alone compiles a graph
    half the size, which is what spectral_index users pay for."""
    pot = bg.potential
    lnp = log_power_fn(pot, point)
    e1 = eps_fns(pot, 1)[0]

    def per_ln_k(z, dq_dt):
        # d/d ln k along the evaluation curve: (dq/dN) / (d ln k/dN), dq/dN = (dq/dt) / H
        dq_dn = dq_dt / hubble(pot, z)
        return dq_dn * z[2] if point == "conformal" else dq_dn / (1.0 - e1(z))

    def ns_minus_1(z):
        return per_ln_k(z, lie(pot, lnp)(z))

    def one(lk):
        z = cosmic_state(bg, _evaluation_efold(bg, lk, point))
        if what == "ns":
            return ns_minus_1(z)
        _, dns_dt = jax.jvp(ns_minus_1, (z,), (flow(pot, z),))
        return per_ln_k(z, dns_dt)

    return jax.vmap(one, out_axes=1)(jnp.ravel(log_k)).reshape((4, *log_k.shape))


def power_spectrum(
    potential: Callable | Background,
    k: ArrayLike,
    *,
    order: int = 3,
    point: str = "conformal",
    phi0: float | None = None,
    **background_kwargs: Any,
) -> jax.Array:
    """Standard slow-roll curvature power spectrum P(k) at order 0-3.

    P = H^2/(8 pi^2 eps1) [1 + (4a - 2) eps1 + 2a delta1 + ...] (Choe-Gong-Stewart 2004, through
    the cubic terms), with H, eps1, delta_n exact along the solved background (Lie derivatives)
    and evaluated where -k eta = 1 with a = alpha = 2 - ln 2 - gamma_E (``point="conformal"``),
    or where aH = k with a = alpha - ln Y (``point="horizon"``).  Both are exact through the
    third order; the error of order n scales as xi^(n+1).

    Args:
        potential: V(phi), or a solved :class:`Background` (then ``phi0`` is not needed).
        k: comoving wavenumbers (a = 1 at N = 0), any shape.
        order: 0, 1, 2 or 3.
        point: ``"conformal"`` or ``"horizon"``.
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        P(k), shaped like ``k``, float64.

    Raises:
        ArgumentError: bad order or point, or k outside the modes that exit during the
            solved background; see :func:`background` for the background's checks.

    Example:
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 16.0)
        >>> k = horizon_k(bg, 20.0)
        >>> p3 = power_spectrum(bg, k, order=3)
        >>> p0 = power_spectrum(bg, k, order=0)
        >>> print(abs(float(jnp.log(p3 / p0))) < 0.05)
        True

    References:
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155; Stewart, Gong 2001, arXiv:astro-ph/0101225.
    """
    fn = "power_spectrum"
    order = _check_order(order, fn)
    _check_point(point, fn)
    bg = as_background(potential, phi0, background_kwargs, fn)
    with x64():
        k = check_k(bg, k, point, fn=fn)
        return jnp.exp(_power_jit(bg, jnp.log(k), point)[order])


def _closed_ns(e1, e2, e3, e4):
    a = ALPHA
    return (
        -2 * e1 - e2 - 2 * e1**2 + (2 * a - 3) * e1 * e2 + a * e2 * e3 - 2 * e1**3
        + (6 * a - 17 + PI2) * e1**2 * e2 + (-(a**2) + 3 * a - 7 + 7 * PI2 / 12) * e1 * e2**2
        + (-(a**2) + 4 * a - 7 + 7 * PI2 / 12) * e1 * e2 * e3 + (PI2 / 4 - 2) * e2**2 * e3
        + (PI2 / 24 - a**2 / 2) * (e2 * e3**2 + e2 * e3 * e4)
    )


def _closed_alpha(e1, e2, e3, e4):
    a = ALPHA
    return (
        -2 * e1 * e2 - e2 * e3 - 6 * e1**2 * e2 + (2 * a - 3) * e1 * e2**2
        + (2 * a - 4) * e1 * e2 * e3 + a * (e2 * e3**2 + e2 * e3 * e4)
    )


def _index(what, potential, k, order, method, point, phi0, bg_kwargs):
    fn = "spectral_index" if what == "ns" else "running"
    order = _check_order(order, fn)
    _check_point(point, fn)
    check_choice(method, "method", ("closed", "autodiff"), fn=fn)
    bg = as_background(potential, phi0, bg_kwargs, fn)
    with x64():
        if method == "closed":
            k = check_k(bg, k, "horizon", fn=fn, stacklevel=5)
            # eps1..eps4 from flow_parameters' compiled function (shared with it), then the
            # closed forms on a few numbers
            p = _flow_parameters(bg, _eval_n_jit(bg, jnp.log(k), "horizon"))
            closed = _closed_ns if what == "ns" else _closed_alpha
            return closed(*(p[f"eps{i}"] for i in range(1, 5)))
        k = check_k(bg, k, point, fn=fn, stacklevel=5)
        return _index_jit(bg, jnp.log(k), point, what)[order]


def spectral_index(
    potential: Callable | Background,
    k: ArrayLike,
    *,
    method: str = "autodiff",
    order: int = 3,
    point: str = "conformal",
    phi0: float | None = None,
    **background_kwargs: Any,
) -> jax.Array:
    """Scalar spectral index n_s(k) = 1 + d ln P / d ln k.

    ``method="autodiff"`` differentiates ln P of :func:`power_spectrum` (given ``order`` and
    ``point``) exactly: d/d ln k = (d/dN) / (d ln k/dN) along the evaluation curve, with d/dN a
    Lie derivative along the flow.  ``method="closed"`` is the third-order closed form in
    eps1..eps4 at aH = k (Choe-Gong-Stewart 2004).

    Args:
        potential: V(phi) or a solved :class:`Background`.
        k: wavenumbers, any shape.
        method: ``"autodiff"`` or ``"closed"``.
        order: order of ln P differentiated (autodiff only).
        point: evaluation point of ln P (autodiff only).
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        n_s(k) shaped like ``k``.

    Raises:
        ArgumentError: bad method, order, point or k.

    Example:
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 16.0)
        >>> ns = spectral_index(bg, horizon_k(bg, 10.0))
        >>> print(round(float(ns), 3))
        0.963

    References:
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    with x64():  # add in float64: outside the context the sum would be truncated to float32
        return 1.0 + _index("ns", potential, k, order, method, point, phi0, background_kwargs)


def running(
    potential: Callable | Background,
    k: ArrayLike,
    *,
    method: str = "autodiff",
    order: int = 3,
    point: str = "conformal",
    phi0: float | None = None,
    **background_kwargs: Any,
) -> jax.Array:
    """Running of the spectral index alpha_s(k) = d n_s / d ln k.

    Args:
        potential: V(phi) or a solved :class:`Background`.
        k: wavenumbers, any shape.
        method: ``"autodiff"`` (second derivative of ln P) or ``"closed"`` (third-order form
            in eps1..eps4 at aH = k).
        order: order of ln P differentiated (autodiff only).
        point: evaluation point of ln P (autodiff only).
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        alpha_s(k) shaped like ``k``.

    Raises:
        ArgumentError: bad method, order, point or k.

    Example:
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 16.0)
        >>> a_s = running(bg, horizon_k(bg, 10.0), method="closed")
        >>> print(bool(a_s < 0))
        True

    References:
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    return _index("alpha", potential, k, order, method, point, phi0, background_kwargs)
