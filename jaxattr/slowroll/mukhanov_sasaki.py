"""Numerical reference spectrum: the Mukhanov-Sasaki equation solved mode by mode.

In e-folds, R_NN + (3 - eps1 + 2 phi_NN/phi_N) R_N + (k/aH)^2 R = 0, integrated together with
the background (phi, phi_N) from k/aH = ``start`` (Bunch-Davies, with the Hankel asymptotic
series at the local index nu) to k/aH = ``stop`` (or the end of inflation), real and imaginary
parts split and rescaled by ``|R_init|``.  ``P = k^3 |R|^2 / (2 pi^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import check_int, check_real, fail
from .background import Background, x64
from .gsr import g_fn
from .parameters import cosmic_state
from .spectrum import as_background, check_k

__all__ = ["mukhanov_sasaki"]


def _field(potential):
    dv = jax.grad(potential)

    def field(n, s, log_k):
        phi, phi_n, rr, rr_n, ri, ri_n = s
        phi_nn = -(3.0 - 0.5 * phi_n**2) * (phi_n + dv(phi) / potential(phi))
        h2 = potential(phi) / (3.0 - 0.5 * phi_n**2)
        ratio2 = jnp.exp(2.0 * (log_k - n) - jnp.log(h2))  # (k/aH)^2
        fric = 3.0 - 0.5 * phi_n**2 + 2.0 * phi_nn / phi_n
        return jnp.stack(
            [phi_n, phi_nn, rr_n, -fric * rr_n - ratio2 * rr, ri_n, -fric * ri_n - ratio2 * ri]
        )

    return field


def _hankel_start(x, nu2):
    """y(x) = sqrt(pi x / 2) H_nu(x) e^{-i(x - nu pi/2 - pi/4)} e^{ix}, and dy/dx, asymptotic."""
    mu = 4.0 * nu2
    a = [1.0]
    for m in range(1, 5):
        a.append(a[-1] * (mu - (2 * m - 1) ** 2) / (8.0 * m))
    s = sum((1j) ** m * a[m] / x**m for m in range(5))
    ds = sum(-m * (1j) ** m * a[m] / x ** (m + 1) for m in range(1, 5))
    e = jnp.exp(1j * x)
    return e * s, e * (1j * s + ds)


def _solve_one(bg, log_k, start, stop, rtol, atol, max_steps):
    pot = bg.potential
    # start: k/aH = start; stop: k/aH = stop or the end of inflation
    grid_ah = bg.grid_log_ah
    target0 = log_k - jnp.log(start)
    n0 = jnp.interp(target0, grid_ah, bg.grid)

    def newton(_, n):
        lah, _y, e1 = bg.log_ah_y(n)
        return n - (lah - target0) / (1.0 - e1)

    n0 = jax.lax.fori_loop(0, 3, newton, n0)
    n1 = jnp.minimum(jnp.interp(log_k - jnp.log(stop), grid_ah, bg.grid), bg.n_end)
    phi, phi_n = bg.state(n0)
    lah, yv, _ = bg.log_ah_y(n0)
    x = jnp.exp(log_k - lah) * yv  # -k eta
    z = cosmic_state(bg, n0)
    nu2 = 2.25 + g_fn(pot)(z)
    yy, dyx = _hankel_start(x, nu2)
    # v = y / sqrt(2k); R = v / z with z = a phi_N; dv/dN = -k dy/dx / (sqrt(2k) aH)
    dv = jax.grad(pot)
    phi_nn = -(3.0 - 0.5 * phi_n**2) * (phi_n + dv(phi) / pot(phi))
    zn_over_z = 1.0 + phi_nn / phi_n
    r = yy  # times 1/(sqrt(2k) a phi_N): a common real factor, restored below
    r_n = -jnp.exp(log_k - lah) * dyx - zn_over_z * yy
    scale = jnp.abs(r)
    r, r_n = r / scale, r_n / scale
    log_norm = (
        2.0 * jnp.log(scale) - log_k - math.log(2.0) - 2.0 * n0 - 2.0 * jnp.log(jnp.abs(phi_n))
    )
    s0 = jnp.stack([phi, phi_n, r.real, r_n.real, r.imag, r_n.imag])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_field(pot)),
        diffrax.Dopri8(),
        t0=n0,
        t1=n1,
        dt0=1e-3,
        y0=s0,
        args=log_k,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
    )
    s1 = cast(jax.Array, sol.ys)[-1]  # saved: SaveAt(t1=True)
    mod2 = s1[2] ** 2 + s1[4] ** 2
    log_p = 3.0 * log_k + log_norm + jnp.log(mod2) - math.log(2.0 * math.pi**2)
    return log_p, sol.result == diffrax.RESULTS.successful


@eqx.filter_jit
def _ms_jit(bg, log_k, start, stop, rtol, atol, max_steps):
    fn = lambda lk: _solve_one(bg, lk, start, stop, rtol, atol, max_steps)
    lp, ok = jax.vmap(fn)(jnp.ravel(log_k))
    return lp.reshape(log_k.shape), ok


def mukhanov_sasaki(
    potential: Callable | Background,
    k: ArrayLike,
    *,
    start: float = 1e3,
    stop: float = 1e-6,
    rtol: float = 3e-13,
    atol: float = 1e-16,
    max_steps: int = 100_000,
    phi0: float | None = None,
    **background_kwargs: Any,
) -> jax.Array:
    """The numerical curvature power spectrum P(k) from the Mukhanov-Sasaki equation (vmapped).

    Each mode starts in the Bunch-Davies vacuum at k/aH = ``start`` (asymptotic Hankel series at
    the local index nu^2 = 9/4 + x^2 z''/z - 2) and is integrated with the background to
    k/aH = ``stop`` (or the end of inflation), real and imaginary parts split and rescaled by
    ``|R_init|`` so the absolute tolerance never underflows.

    Args:
        potential: V(phi) or a solved :class:`Background`.
        k: wavenumbers (a = 1 at N = 0), any shape.
        start: k/aH at the start (sub-horizon), > 1.
        stop: k/aH at the end (super-horizon), < 1.  The frozen mode still moves as
            (k/aH)^2: stopping at 1e-4 leaves +1.0e-8 in ln P (m^2 phi^2, N* = 60), the
            default 1e-6 leaves 1e-12 (measured against stop = 1e-8).
        rtol: relative tolerance.
        atol: absolute tolerance (on the rescaled mode).
        max_steps: step budget per mode.
        phi0: initial field value, when ``potential`` is V.
        **background_kwargs: passed to :func:`background`.

    Returns:
        P(k) shaped like ``k``.

    Raises:
        ArgumentError: bad start/stop/tolerances, k outside the modes that start after N = 0
            and exit 2 e-folds before the end, or a failed solve.

    Example:
        >>> from jaxattr.slowroll import background, horizon_k
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 14.0)
        >>> p = mukhanov_sasaki(bg, horizon_k(bg, 20.0))
        >>> print(p.shape, bool(p > 0))
        () True

    References:
        Mukhanov 1988; Sasaki 1986; Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    fn = "mukhanov_sasaki"
    start = check_real(start, "start", fn=fn, lo=1, lo_open=True,
                       expected="k/aH > 1 at the start (sub-horizon)")
    stop = check_real(stop, "stop", fn=fn, lo=0, hi=1, lo_open=True,
                      expected="k/aH in (0, 1) at the stop (super-horizon)")
    if stop == 1:
        fail(fn, "stop", stop, "is out of range", "k/aH in (0, 1) at the stop (super-horizon)")
    rtol = check_real(rtol, "rtol", fn=fn, lo=0, lo_open=True)
    atol = check_real(atol, "atol", fn=fn, lo=0, lo_open=True)
    max_steps = check_int(max_steps, "max_steps", fn=fn, minimum=1)
    bg = as_background(potential, phi0, background_kwargs, fn)
    with x64():
        k = check_k(bg, k, "horizon", margin_start=math.log(start), margin_end=2.0, fn=fn)
        # start, stop and the tolerances are traced: changing them does not recompile
        lp, ok = _ms_jit(bg, jnp.log(k), jnp.asarray(start, jnp.float64),
                         jnp.asarray(stop, jnp.float64), jnp.asarray(rtol, jnp.float64),
                         jnp.asarray(atol, jnp.float64), max_steps)
        if not bool(jnp.all(ok)):
            fail(fn, "max_steps", max_steps, "was too small: a mode solve failed",
                 "a larger max_steps")
        return jnp.exp(lp)
