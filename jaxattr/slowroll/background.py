"""Inflaton background in e-folds: phi(N), phi_N, H, and Y = -aH*eta, solved with diffrax.

Units M_p = 1, N = ln a (a = 1 at the start).  In e-folds the field obeys

    phi_NN = -(3 - phi_N^2/2) (phi_N + V'/V),   H^2 = V / (3 - phi_N^2/2),

started on the slow-roll attractor phi_N = -V'/V and stopped where eps1 = phi_N^2/2 = 1.
Y = -aH*eta obeys dY/dN = (1 - eps1) Y - 1 and is integrated backward from the end.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._checks import check_callable, check_int, check_real, fail, fail_type
from .._compat import enable_x64

__all__ = ["Background", "background"]

Potential = Callable[[jax.Array], jax.Array]


def x64():
    """Context manager enabling float64 locally (the module never flips it globally)."""
    if jax.config.jax_enable_x64:  # pyright: ignore[reportAttributeAccessIssue]  # a dynamic flag
        return contextlib.nullcontext()
    return enable_x64(True)


def _warn_low_precision_leaves(potential, fn: str) -> None:
    """Warn if a pytree potential holds floating arrays narrower than float64."""
    narrow = sorted({str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(potential)
                     if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
                     and jnp.finfo(leaf.dtype).bits < 64})
    if narrow:
        warnings.warn(
            f"{fn}: potential holds {'/'.join(narrow)} parameter arrays: their values are"
            " rounded (float32: relative 6e-8) before any float64 arithmetic; create them in"
            " float64 (jnp.asarray(x, jnp.float64) inside jax.enable_x64(True), or numpy)",
            UserWarning, stacklevel=3)


def _float64(value, name: str, fn: str, stacklevel: int = 3) -> np.ndarray:
    """A real array as numpy float64; float32/16 input (rounded already) is warned about."""
    arr = value if isinstance(value, (np.ndarray, jax.Array)) else np.asarray(value)
    dtype = arr.dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        fail_type(fn, name, value, f"has dtype {dtype}", "real numbers")
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 64:
        warnings.warn(
            f"{fn}: {name} has dtype {dtype}: it was rounded before reaching {fn} (float32:"
            f" relative 6e-8), e.g. by arithmetic done with JAX's float64 off; pass Python"
            f" floats, numpy float64, or compute {name} inside jax.enable_x64(True)",
            UserWarning, stacklevel=stacklevel)
    return np.asarray(arr, dtype=np.float64)


def check_background(bg, fn: str) -> Background:
    if not isinstance(bg, Background):
        fail_type(fn, "bg", bg, f"has type {type(bg).__name__}",
                  "a Background from jaxattr.slowroll.background(V, phi0)")
    return bg


def _rhs(potential: Potential):
    dv = jax.grad(potential)

    def field(n, y, args):
        del n, args
        phi, phi_n = y[0], y[1]
        phi_nn = -(3.0 - 0.5 * phi_n**2) * (phi_n + dv(phi) / potential(phi))
        return jnp.stack([phi_n, phi_nn])

    return field


class Background(eqx.Module):
    """A solved inflaton background (a pytree; evaluate it anywhere in [n_start, n_end]).

    Attributes:
        potential: the potential V(phi): a function or an equinox Module (its arrays are traced).
        n_start: first e-fold (0), a 0-d numpy float64 array.
        n_end: last e-fold: the end of inflation (eps1 = 1), or ``n_max``; a 0-d numpy float64
            array, so that ``bg.n_end - 60`` stays float64 even with JAX's float64 off.
        ended: whether inflation ended (eps1 reached 1) inside the solved range.
        grid: the solver's accepted steps, shape (m,), padded with ``n_end``.
        grid_log_ah: ln(aH) on ``grid``.
        grid_y: Y on ``grid``.
        sol: dense diffrax solution of (phi, phi_N).
        ysol: dense diffrax solution of Y = -aH*eta (integrated backward from ``n_end``).
    """

    potential: Potential
    n_start: np.ndarray
    n_end: np.ndarray
    ended: jax.Array
    grid: jax.Array
    grid_log_ah: jax.Array
    grid_y: jax.Array
    sol: diffrax.Solution
    ysol: diffrax.Solution

    def state(self, n: jax.Array) -> jax.Array:
        """(phi, phi_N) at e-fold ``n`` (scalar), from the dense solution."""
        return self.sol.evaluate(n)

    def phi(self, n: jax.Array) -> jax.Array:
        """Field value at e-fold(s) ``n``."""
        return jnp.vectorize(lambda t: self.state(t)[0])(n)

    def phi_n(self, n: jax.Array) -> jax.Array:
        """dphi/dN at e-fold(s) ``n``."""
        return jnp.vectorize(lambda t: self.state(t)[1])(n)

    def hubble(self, n: jax.Array) -> jax.Array:
        """Hubble rate H at e-fold(s) ``n``."""

        def one(t):
            phi, phi_n = self.state(t)
            return jnp.sqrt(self.potential(phi) / (3.0 - 0.5 * phi_n**2))

        return jnp.vectorize(one)(n)

    def y(self, n: jax.Array) -> jax.Array:
        """Y = -aH*eta at e-fold(s) ``n`` (-> 1 in de Sitter)."""
        return jnp.vectorize(lambda t: self.ysol.evaluate(t)[0])(n)

    def log_ah_y(self, n: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(ln(aH), Y, eps1) at a scalar e-fold ``n`` (two dense evaluations)."""
        phi, phi_n = self.state(n)
        h2 = self.potential(phi) / (3.0 - 0.5 * phi_n**2)
        return n + 0.5 * jnp.log(h2), self.ysol.evaluate(n)[0], 0.5 * phi_n**2

    def log_ah(self, n: jax.Array) -> jax.Array:
        """ln(aH) at e-fold(s) ``n``: the k that crosses the horizon there is exp(log_ah)."""
        return n + jnp.log(self.hubble(n))


def _solve_background(potential, phi0, n_max, rtol, atol, max_steps):
    field = _rhs(potential)
    dv = jax.grad(potential)
    y0 = jnp.stack([phi0, -dv(phi0) / potential(phi0)])

    def cond(t, y, args, **kwargs):
        del t, args, kwargs
        return 0.5 * y[1] ** 2 - 1.0

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        t0=0.0,
        t1=n_max,
        dt0=1e-2,
        y0=y0,
        saveat=diffrax.SaveAt(steps=True, dense=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=diffrax.Event(cond, root_finder=optx.Newton(rtol=1e-13, atol=1e-13)),
        max_steps=max_steps,
        throw=False,
    )
    return sol


def _solve_y(sol, n_end, ended, rtol, atol, max_steps):
    def eps1(n):
        return 0.5 * sol.evaluate(n)[1] ** 2

    def field(n, y, args):
        del args
        return (1.0 - eps1(n)) * y - 1.0

    e_end = eps1(n_end)
    # Boundary value: the local power-law relation Y = 1/(1 - eps1) (exact for power-law
    # inflation); at the end of inflation eps1 = 1 it is clipped.  Its influence on Y(N)
    # decays like exp(-(n_end - N)).
    y_end = jnp.where(ended, 2.0, 1.0 / (1.0 - jnp.minimum(e_end, 0.5)))
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        t0=n_end,
        t1=0.0,
        dt0=-1e-2,
        y0=jnp.reshape(y_end, (1,)),
        saveat=diffrax.SaveAt(dense=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
    )


@eqx.filter_jit
def _solve(potential, phi0, n_max, rtol, atol, max_steps):
    sol = _solve_background(potential, phi0, n_max, rtol, atol, max_steps)
    ts, ys = cast(jax.Array, sol.ts), cast(jax.Array, sol.ys)  # saved: SaveAt(steps=True)
    n_end = jnp.nanmax(jnp.where(jnp.isfinite(ts), ts, -jnp.inf))
    ended = sol.event_mask if sol.event_mask is not None else jnp.array(False)
    ysol = _solve_y(sol, n_end, ended, rtol, atol, max_steps)
    grid = jnp.where(jnp.isfinite(ts), ts, n_end)

    def at(n):
        phi, phi_n = sol.evaluate(n)
        return n + 0.5 * jnp.log(potential(phi) / (3.0 - 0.5 * phi_n**2)), ysol.evaluate(n)[0]

    grid_log_ah, grid_y = jax.vmap(at)(grid)
    vmin = jnp.min(jax.vmap(potential)(jnp.where(jnp.isfinite(ys[:, 0]), ys[:, 0], phi0)))
    return sol, ysol, n_end, ended, grid, grid_log_ah, grid_y, vmin


def background(
    potential: Potential,
    phi0: float,
    *,
    efolds: float | None = None,
    n_max: float = 500.0,
    require_end: bool = True,
    rtol: float = 1e-13,
    atol: float = 1e-15,
    max_steps: int = 16384,
) -> Background:
    """Solve the inflaton background of ``V(phi)`` from ``phi0`` to the end of inflation.

    The field starts on the slow-roll attractor ``phi_N = -V'/V`` at ``phi0``; the solve runs in
    e-folds N with an 8th-order adaptive Runge-Kutta method (Dopri8) at tight tolerances with
    dense output, and stops where eps1 = 1.  Y = -aH*eta is then integrated backward from the
    end.  float64 is enabled locally (the global flag is never changed).

    Args:
        potential: V(phi), a JAX-traceable scalar function, positive where the field rolls.
        phi0: initial field value.
        efolds: if given, inflation must last at least this many e-folds (the pivot scale at
            ``efolds`` before the end is then inside the solved range).
        n_max: the largest N solved.
        require_end: raise if inflation has not ended by ``n_max`` (pass ``False`` for models
            that never end, such as power-law inflation).
        rtol: relative tolerance of the solver.
        atol: absolute tolerance of the solver.
        max_steps: step budget of the solver.

    Returns:
        A :class:`Background` pytree.

    Raises:
        ArgumentError: if V(phi0) <= 0, V'(phi0) = 0, eps1(phi0) >= 1, V is not positive where
            the field rolls, inflation does not end (``require_end``) or does not last
            ``efolds``, the solver fails, or an option is out of range.
        ArgumentTypeError: if V is not callable or does not compute in float64.

    Warns:
        UserWarning: if V is a pytree (an equinox Module...) holding float32/16 arrays: their
            values are rounded (relative 6e-8 for float32), which float64 cannot undo.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 5.0)
        >>> print(bool(bg.ended))
        True

    References:
        Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
    """
    fn = "background"
    check_callable(potential, "potential", fn=fn, expected="a callable V(phi)")
    n_max = check_real(n_max, "n_max", fn=fn, lo=0, lo_open=True)
    if efolds is not None:
        efolds = check_real(efolds, "efolds", fn=fn, lo=0, lo_open=True)
    rtol = check_real(rtol, "rtol", fn=fn, lo=0, lo_open=True)
    atol = check_real(atol, "atol", fn=fn, lo=0, lo_open=True)
    max_steps = check_int(max_steps, "max_steps", fn=fn, minimum=1)
    phi0 = check_real(phi0, "phi0", fn=fn, expected="a finite real scalar")
    _warn_low_precision_leaves(potential, fn)
    with x64():
        phi0_64 = jnp.asarray(phi0, dtype=jnp.float64)
        v0 = jnp.asarray(potential(phi0_64))
        if v0.dtype != jnp.float64:
            fail_type(fn, "potential", potential, f"returned {v0.dtype} for a float64 phi",
                      "a V(phi) that computes in float64",
                      "write V with float64 arithmetic (no float32 casts or constants)")
        if not (float(v0) > 0):
            fail(fn, "phi0", float(phi0_64), f"gives V(phi0)={float(v0)}",
                 "a phi0 with V(phi0) > 0")
        dv0 = float(jax.grad(potential)(phi0_64))
        if dv0 == 0.0 or not math.isfinite(dv0):
            fail(fn, "phi0", float(phi0_64), f"gives V'(phi0)={dv0}: the field does not roll",
                 "a phi0 where V' is finite and nonzero (no slow roll at an extremum)")
        eps_v = 0.5 * (dv0 / float(v0)) ** 2
        if eps_v >= 1.0:
            fail(fn, "phi0", float(phi0_64),
                 f"gives eps1={eps_v:.3g} >= 1: the field is not inflating there",
                 "a phi0 where eps_V = (V'/V)^2/2 < 1")
        sol, ysol, n_end, ended, grid, grid_log_ah, grid_y, vmin = _solve(
            potential, phi0_64, jnp.asarray(n_max, jnp.float64), jnp.asarray(rtol, jnp.float64),
            jnp.asarray(atol, jnp.float64), int(max_steps),
        )
        if not (float(vmin) > 0) or not np.all(np.isfinite(np.asarray(grid))):
            fail(fn, "potential", potential,
                 f"is not positive where the field rolls (min V = {float(vmin):.3g})",
                 "V > 0 along the trajectory from phi0 to the end of inflation")
        if sol.result != diffrax.RESULTS.successful and not bool(ended):
            fail(fn, "max_steps", max_steps, f"was too small: the background solve failed"
                 f" ({sol.result})", "a larger max_steps")
        if require_end and not bool(ended):
            fail(fn, "n_max", n_max, "was reached before inflation ended",
                 "a model whose inflation ends within n_max e-folds",
                 "pass require_end=False to solve a model that does not end")
        if efolds is not None and float(n_end) < efolds:
            fail(fn, "efolds", efolds, f"is more than the {float(n_end):.4g} e-folds inflation"
                 " lasts", "efolds <= the duration of inflation", "start from a larger |phi0|")
        return Background(
            potential=potential,
            n_start=np.asarray(0.0),
            n_end=np.asarray(n_end, dtype=np.float64),
            ended=jnp.asarray(ended),
            grid=grid,
            grid_log_ah=grid_log_ah,
            grid_y=grid_y,
            sol=sol,
            ysol=ysol,
        )
