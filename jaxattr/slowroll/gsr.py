"""General slow roll (GSR) at first and second order, evaluated on the numerical background.

Notation: x = -k eta, f = 2 pi x z / k = 2 pi Y phi_N / H (a function of time only), q = ln f,
' = d/d ln x = -Y d/dN.  With y = sqrt(2k) v normalised to y -> e^{ix} inside the horizon, the
Mukhanov-Sasaki equation is y_xx + (1 - 2/x^2) y = g y / x^2 with
g = x^2 z_xx / z - 2 = q'' + q'^2 - 3 q' = (3/2) G' + q'^2, G = -2 q + (2/3) q', and
P = lim_{x -> 0} |x y / f|^2.

First order (Stewart 2002, in the form of Dvorkin & Hu 2010):

    ln P(k) = G(ln x*) + int_{x*}^inf (dx/x) W(x) G'(ln x),
    W(x) = 3 sin 2x/(2x^3) - 3 cos 2x/x^2 - 3 sin 2x/(2x);

d/d ln x* of the right side is (1 - W(x*)) G' = O(x*^2): it converges as x* -> 0.

Second order.  The Green's-function iteration y = y0 + y1 + y2, y0 = (1 + i/x) e^{ix} = a + ib,
y_{n+1}(x) = int_x^inf du g(u)/u^2 [a(x) b(u) - b(x) a(u)] y_n(u), cannot be evaluated at a
small x* directly: outside the horizon y1/y0 -> -(1/3) int_{x*} g d ln u, and each order adds
a power of ln x*.  The exact sum of these logarithms is ln f (the growing mode is v = z); the
truncated sum leaves O(g^3 ln^3 x*, g^2 g' ln^2 x*, ...) terms that grow without bound as
x* -> 0 (evaluated that way, natural inflation f = 7 at N* = 30 is off by +6e-5, +1.4e-4,
+3.0e-4, +6.1e-4 for x* = 1e-2 .. 1e-5).
Stewart 2002 and Choe, Gong & Stewart 2004 (arXiv:hep-ph/0405155, the second-order GSR)
organise the expansion so that the ln x* terms cancel against ln f; here the cancellation is
done exactly, by a change of variable outside the horizon:

1. Write y = (f/x) R (R = curvature perturbation up to a constant).  Since f/x, proportional
   to z, solves the super-horizon equation exactly, R obeys
   R_xx - (2/x) R_x + R = -(2 q'/x) R_x: its source is proportional to R_x = O(x), so it
   carries no logarithm, and P = |R(0)|^2.
   The homogeneous solutions are w1 = x a = x cos x - sin x and w2 = x b = x sin x + cos x
   (Wronskian x^2), and for x < x_c

       R(x) = alpha w1(x) + beta w2(x) + int_x^{x_c} du [w1(x) w2(u) - w2(x) w1(u)] S(u)/u^2,
       S = -(2 q'/u) R_u,    so   R(0) = beta - int_0^{x_c} du w1(u) S(u)/u^2,

   iterated twice in q' (S from the homogeneous R, then from the first iterate).  As u -> 0
   the integrand is -(2/3) q' beta u: the result converges, and the piece below x* is added
   analytically (-q' beta x*^2 / 3), leaving O(q'^2 x*^2, q'' x*^2).
2. Inside the horizon R has no fixed asymptotic form (f keeps changing as x -> inf), so for
   x >= x_c the y-iteration y0 + y1 + y2 in g is kept (no logarithms there), and the two are
   matched at x_c: R = x y / f, R_x = (y + x y_x - q' y)/f give alpha and beta through the
   Wronskian.
3. g and q' are both O(xi), so each stage is second order and the remainder is O(xi^3) for
   every x*: no term grows with ln x*.  x_c = 2 is where the measured remainder was smallest
   (m^2 phi^2 at N* = 60 / natural inflation f = 7 at N* = 30, x* = 1e-4: x_c = 0.5: 6.6e-6 /
   5.4e-5, 1: 3.1e-6 / 2.6e-5, 2: -5.6e-7 / -6.3e-6, 3: -8.5e-7 / -9.4e-6, 5: -4.1e-6 / -4.1e-5).

All nested integrals are exact upper-cumulative Gauss-Legendre panel sums; x > x_max is added
in closed form for the first iterate.

References:
    Stewart 2002, arXiv:astro-ph/0110322; Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155;
    Dvorkin, Hu 2010, arXiv:0910.2237.
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

from .._checks import check_real
from .background import Background, x64
from .parameters import cosmic_state, d_dn, flow, hubble

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
    return f * jnp.sin(z) - g * jnp.cos(z)


def window_tail(big_x):
    """T(X) = int_X^inf W(x) dx/x in closed form (X >= 50)."""
    s2, c2 = jnp.sin(2 * big_x), jnp.cos(2 * big_x)
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


def _gsr1_one(bg, log_k, n_c, nodes, weights, edges):
    pot = bg.potential
    big_g, _ = big_g_fns(pot)

    def at(xt):
        n = n_c - jnp.log(xt)
        z = cosmic_state(bg, n)
        x = jnp.exp(log_k - bg.log_ah(n)) * z[2]
        g, dg = jax.jvp(big_g, (z,), (flow(pot, z),))  # G and dG/dt: one graph for both
        return x, z[2], g, -z[2] * dg / hubble(pot, z)

    # nodes, then the edges x_min and x_max, in one vmap
    x, y, g, g1 = jax.vmap(at)(jnp.concatenate([nodes, edges]))
    integral = jnp.sum(weights * window(x[:-2]) * g1[:-2] / y[:-2])
    # the quadrature spans x~ in [x_min, x_max]: the boundary term G(ln x*) is taken at its
    # lower edge (not at its first node), and the tail beyond its upper edge is
    # int_X^inf W G' dx/x ~ G'(X) T(X) at the physical X = -k eta there (x != x~ off de Sitter)
    return g[-2] + integral + window_tail(x[-1]) * g1[-1]


def gsr_power_spectrum(
    potential: Callable | Background,
    k: ArrayLike,
    *,
    order: int = 1,
    x_min: float = 1e-3,
    x_max: float = 100.0,
    phi0: float | None = None,
    **background_kwargs: Any,
) -> jax.Array:
    """General slow-roll power spectrum at first or second order.

    Order 1: Stewart 2002 in the Dvorkin-Hu form.  Order 2: the Green's-function expansion of
    the mode equation to second order, with the super-horizon logarithms summed exactly by
    the change of variable y = (f/x) R below x = 2 (derivation in the module docstring), so
    the result converges as ``x_min -> 0``.

    Measured ln P errors vs the exact (power law) or Mukhanov-Sasaki spectrum: order 1: power
    law exactly psi'(3/2) d^2 + O(d^3), d = eps/(1 - eps); m^2 phi^2 (N* = 60) 2.7e-4,
    lambda phi^4 6.1e-4, Starobinsky 2.5e-4.  Order 2: power law O(eps^3) (slope 3);
    m^2 phi^2 (N* = 60) -5.6e-7, natural inflation (f = 7, N* = 30) -6.3e-6 (the standard
    second-order formula: -9.4e-6, -8.2e-5), changing by < 3e-9 between x_min = 1e-3 and 1e-5.

    Args:
        potential: V(phi) or a solved :class:`Background`.
        k: wavenumbers, any shape.
        order: 1 or 2.
        x_min: lower limit x* of the integrals (super-horizon).
        x_max: upper limit of the quadrature (the tail beyond it is added in closed form).
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        P(k) shaped like ``k``.

    Raises:
        ArgumentError: bad order, x_min, x_max or k.
        ArgumentTypeError: an option of the wrong type (a bool order...).

    Example:
        >>> from jaxattr.slowroll import background, horizon_k
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 14.0)
        >>> print(bool(gsr_power_spectrum(bg, horizon_k(bg, 20.0)) > 0))
        True

    References:
        Stewart 2002, arXiv:astro-ph/0110322; Dvorkin, Hu 2010, arXiv:0910.2237;
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    from .spectrum import _check_order, _eval_n_jit, as_background, check_k

    fn = "gsr_power_spectrum"
    order = _check_order(order, fn, (1, 2))
    x_min = check_real(x_min, "x_min", fn=fn, lo=0, hi=0.1, lo_open=True)
    x_max = check_real(x_max, "x_max", fn=fn, lo=50)
    bg = as_background(potential, phi0, background_kwargs, fn)
    nodes, weights = _nodes(x_min, x_max, 40, 1.0, 12)
    with x64():
        k = check_k(bg, k, "conformal", margin_start=math.log(x_max) + 0.5,
                    margin_end=math.log(1 / x_min) + 0.5, fn=fn)
        log_k = jnp.log(k)
        n_c = _eval_n_jit(bg, log_k, "conformal")
        if order == 1:
            lp = _gsr_jit(bg, log_k, n_c, jnp.asarray(nodes), jnp.asarray(weights),
                          jnp.asarray([x_min, x_max]))
        else:
            lo_nodes, lo_jac, hi_nodes, hi_jac, w, s = (
                jnp.asarray(v) for v in _panels(x_min, x_max, 12))
            lp = _gsr2_jit(bg, log_k, n_c, lo_nodes, lo_jac, hi_nodes, hi_jac, w, s,
                           jnp.asarray([x_min, x_max]))
        return jnp.exp(lp)


@eqx.filter_jit
def _gsr_jit(bg, log_k, n_c, nodes, weights, edges):
    fn = lambda lk, nc: _gsr1_one(bg, lk, nc, nodes, weights, edges)
    return jax.vmap(fn)(jnp.ravel(log_k), jnp.ravel(n_c)).reshape(log_k.shape)


# ----------------------------------------------------------------------------------------------
# Second order: y = y0 + y1 + y2 from the Green's-function expansion of the mode equation.


X_C = 2.0  # the hand-over point -k eta = x_c between the two stages of the second order


def _cumulative_matrix(p: int):
    """Gauss-Legendre nodes t, weights w and S with S[i, j] = int_{t_i}^1 l_j(t) dt (l_j the
    Lagrange basis on the nodes): exact upper-cumulative integration of degree < p."""
    t, w = np.polynomial.legendre.leggauss(p)
    coef = np.linalg.inv(np.polynomial.legendre.legvander(t, p - 1))
    s = np.empty((p, p))
    for j in range(p):
        anti = np.polynomial.legendre.legint(coef[:, j])
        s[:, j] = np.polynomial.legendre.legval(1.0, anti) - np.polynomial.legendre.legval(t, anti)
    return t, w, s


def _panels(x_min, x_max, per_panel, x_c=X_C):
    """Panels in x~: unit steps in ln x~ on [x_min, 1] (the super-horizon stage) and unit steps
    in x~ on [1, x_max] (the sub-horizon stage).  Returns, for each stage, nodes x~ (P, p) and
    d ln x~ / dt at the nodes (P, p); then the Gauss-Legendre weights w and cumulative S."""
    t, w, s = _cumulative_matrix(per_panel)
    # 13 panels at least: every x_min >= 1e-5 gives the same shapes (no recompilation)
    n_log = max(13, math.ceil(math.log(x_c / x_min)))
    log_edges = np.linspace(math.log(x_min), math.log(x_c), n_log + 1)
    lo_nodes, lo_jac = [], []
    for lo, hi in zip(log_edges[:-1], log_edges[1:], strict=True):
        lo_nodes.append(np.exp(0.5 * (hi - lo) * t + 0.5 * (hi + lo)))
        lo_jac.append(np.full(per_panel, 0.5 * (hi - lo)))
    lin_edges = np.linspace(x_c, x_max, math.ceil(x_max - x_c) + 1)
    hi_nodes, hi_jac = [], []
    for lo, hi in zip(lin_edges[:-1], lin_edges[1:], strict=True):
        xx = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
        hi_nodes.append(xx)
        hi_jac.append(0.5 * (hi - lo) / xx)
    return (np.stack(lo_nodes), np.stack(lo_jac), np.stack(hi_nodes), np.stack(hi_jac), w, s)


def _kernels(x):
    """a = Re y0, b = Im y0 of y0 = (1 + i/x) e^{ix}; a by its series below x = 0.1."""
    xs = jnp.where(x < 0.1, 1.0, x)
    x2 = x * x
    a_series = x2 * (-1 / 3 + x2 * (1 / 30 + x2 * (-1 / 840 + x2 / 45360)))
    a = jnp.where(x < 0.1, a_series, jnp.cos(xs) - jnp.sin(xs) / xs)
    b = jnp.sin(x) + jnp.cos(x) / x
    return a, b


def _kernel_derivatives(x):
    """a' and b' (d/dx) of a = cos x - sin x / x, b = sin x + cos x / x (x ~ 1: no series)."""
    s, c = jnp.sin(x), jnp.cos(x)
    return -s - c / x + s / x**2, c - s / x - c / x**2


def _osc_tail(big_x, n, terms=10):
    """int_X^inf e^{2iv} v^-n dv by its asymptotic series (X >= 50: converged to rounding)."""
    e = jnp.exp(2j * big_x)
    total, coef = 0.0 + 0.0j, 1.0 + 0.0j
    for m in range(terms):
        total = total + coef * big_x ** (-(n + m))
        coef = coef * (n + m) / 2j
    return -e / (2j) * total


def _source_tails(big_x):
    """int_X^inf a y0 / v^2 dv and int_X^inf b y0 / v^2 dv (y0 = a + ib), exactly for v >= X."""
    e2, e3, e4 = (_osc_tail(big_x, n) for n in (2, 3, 4))
    smooth = 1 / (2 * big_x) + 1 / (6 * big_x**3)  # int (1/2v^2 + 1/2v^4)
    # a^2 = (1+c)/2 - s/v + (1-c)/(2v^2), b^2 = (1-c)/2 + s/v + (1+c)/(2v^2),
    # ab = s/2 + c/v - s/(2v^2), with c = cos 2v, s = sin 2v
    aa = smooth + 0.5 * e2.real - e3.imag - 0.5 * e4.real
    bb = smooth - 0.5 * e2.real + e3.imag + 0.5 * e4.real
    ab = 0.5 * e2.imag + e3.real - 0.5 * e4.imag
    return aa + 1j * ab, ab + 1j * bb


def _upper(w, s):
    """f (P, p) -> (int_{node}^{top} f dt on every node, the total from the lower edge)."""

    def upper(f):
        tot = f @ w
        beyond = jnp.cumsum(tot[::-1])[::-1] - tot
        return f @ s.T + beyond[:, None], jnp.sum(tot)

    return upper


def _gsr2_one(bg, log_k, n_c, lo_nodes, lo_jac, hi_nodes, hi_jac, w, s, edges,
              super_order=2, x_c=X_C):
    pot = bg.potential
    q_of = q_fn(pot)
    q1_of = d_lnx(pot, q_of)

    def at(xt):
        """x, x/Y, q, q' and g at x~ = xt (one graph: q' and q'' from one jvp)."""
        n = n_c - jnp.log(xt)
        z = cosmic_state(bg, n)
        x = jnp.exp(log_k - bg.log_ah(n)) * z[2]
        q1, dq1 = jax.jvp(q1_of, (z,), (flow(pot, z),))
        q2 = -z[2] * dq1 / hubble(pot, z)
        return x, x / z[2], q_of(z), q1, q2 + q1**2 - 3 * q1

    # every evaluation of the background in one vmap (one copy of the Lie-derivative graph)
    n_lo = lo_nodes.size
    xt = jnp.concatenate([jnp.ravel(lo_nodes), jnp.ravel(hi_nodes),
                          jnp.stack([jnp.asarray(x_c), edges[1], edges[0]])])
    xs, xys, qs, q1s, gs = jax.vmap(at)(xt)

    def on(nodes, jac, start, vals):
        out = [v[start:start + nodes.size].reshape(nodes.shape) for v in vals]
        return out[0], out[1] * jac, out[2:]

    x_c, q_c, q1_c = xs[-3], qs[-3], q1s[-3]
    x_hi, g_hi = xs[-2], gs[-2]
    x_lo, q1_lo = xs[-1], q1s[-1]
    upper = _upper(w, s)

    # 1. sub-horizon stage, x in [x_c, inf): y = y0 + y1 + y2 (Green's function in g)
    x, dx, (g,) = on(hi_nodes, hi_jac, n_lo, (xs, xys, gs))
    a, b = _kernels(x)
    y0 = a + 1j * b
    tail_a, tail_b = _source_tails(x_hi)
    src = g / x**2 * dx
    ia, ia_tot = upper(src * a * y0)
    ib, ib_tot = upper(src * b * y0)
    ia, ia_tot = ia + g_hi * tail_a, ia_tot + g_hi * tail_a
    ib, ib_tot = ib + g_hi * tail_b, ib_tot + g_hi * tail_b
    y1 = -b * ia + a * ib
    _, ja = upper(src * a * y1)
    _, jb = upper(src * b * y1)
    a_c, b_c = _kernels(x_c)
    da_c, db_c = _kernel_derivatives(x_c)
    ic, jc = ia_tot, ja  # (int a g y0 / v^2, int a g y1 / v^2) from x_c; likewise b
    y_c = a_c + 1j * b_c - b_c * (ic + jc) + a_c * (ib_tot + jb)
    dy_c = da_c + 1j * db_c - db_c * (ic + jc) + da_c * (ib_tot + jb)

    # 2. hand over to R = x y / f (R -> sqrt(P) e^{i phase} as x -> 0), times f(x_c)
    r_c = x_c * y_c
    dr_c = y_c + x_c * dy_c - q1_c * y_c  # d/dx (x y e^{q_c - q})
    w1_c, w2_c = x_c * a_c, x_c * b_c
    dw1_c, dw2_c = -x_c * jnp.sin(x_c), x_c * jnp.cos(x_c)
    alpha = (r_c * dw2_c - dr_c * w2_c) / x_c**2
    beta = (w1_c * dr_c - dw1_c * r_c) / x_c**2

    # 3. super-horizon stage, x in (0, x_c]: R'' - 2R'/x + R = -2 q' R'/x, iterated in q'
    x, dx, (q1,) = on(lo_nodes, lo_jac, 0, (xs, xys, q1s))
    a, b = _kernels(x)
    w1, w2 = x * a, x * b
    dw1, dw2 = -x * jnp.sin(x), x * jnp.cos(x)
    dr = alpha * dw1 + beta * dw2
    r0 = beta
    for _ in range(super_order):
        src = -2 * q1 * dr / x**3 * dx  # S(u) du / u^2 (the Wronskian is u^2)
        i1, i1_tot = upper(w1 * src)
        i2, _ = upper(w2 * src)
        dr = dw1 * i2 - dw2 * i1
        r0 = r0 - i1_tot
    # (0, x_min): w1 = -u^3/3, R_u = beta u, q' = q'(x_min) give -int w1 S/u^2 = -q' beta x^2/3
    r0 = r0 - q1_lo * beta * x_lo**2 / 3
    return 2 * jnp.log(jnp.abs(r0)) - 2 * q_c


@eqx.filter_jit
def _gsr2_jit(bg, log_k, n_c, lo_nodes, lo_jac, hi_nodes, hi_jac, w, s, edges):
    fn = lambda lk, nc: _gsr2_one(bg, lk, nc, lo_nodes, lo_jac, hi_nodes, hi_jac, w, s, edges)
    return jax.vmap(fn)(jnp.ravel(log_k), jnp.ravel(n_c)).reshape(log_k.shape)
