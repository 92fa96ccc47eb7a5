"""Slow-roll parameters, exactly, by Lie derivatives along the background flow.

State z = (phi, phidot, Y) in cosmic time, flow F(z) = (phidot, -3H phidot - V', H((1-eps1)Y - 1)),
Lie derivative L q = jvp(q, z, F(z)) = dq/dt.  Then phi^(n+1) = L^n phidot,
delta_n = L^n phidot / (H^n phidot), eps1 = phidot^2/(2H^2), eps_{n+1} = L(eps_n)/(H eps_n).
Potential slow-roll parameters come from ``jax.grad`` of V.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import check_callable
from .background import Background, _float64, _warn_low_precision_leaves, check_background, x64

__all__ = ["flow_parameters", "potential_parameters", "cosmic_state"]

Fn = Callable[[jax.Array], jax.Array]


def hubble(potential, z):
    """H of the cosmic state z = (phi, phidot, Y)."""
    return jnp.sqrt((0.5 * z[1] ** 2 + potential(z[0])) / 3.0)


def flow(potential, z):
    """dz/dt along the background."""
    h = hubble(potential, z)
    e1 = 0.5 * z[1] ** 2 / h**2
    return jnp.stack(
        [z[1], -3.0 * h * z[1] - jax.grad(potential)(z[0]), h * ((1.0 - e1) * z[2] - 1.0)]
    )


def lie(potential, q: Fn) -> Fn:
    """The Lie derivative d/dt of a state function q along the flow."""
    return lambda z: jax.jvp(q, (z,), (flow(potential, z),))[1]


def d_dn(potential, q: Fn) -> Fn:
    """d/dN of a state function q (= L q / H)."""
    lq = lie(potential, q)
    return lambda z: lq(z) / hubble(potential, z)


def eps_fns(potential, n: int) -> list[Fn]:
    """[eps1, ..., eps_n] as state functions (Hubble-flow: eps_{n+1} = d ln eps_n / dN)."""
    fns = [lambda z: 0.5 * z[1] ** 2 / hubble(potential, z) ** 2]
    for _ in range(n - 1):
        prev = fns[-1]
        dprev = d_dn(potential, prev)
        fns.append(lambda z, prev=prev, dprev=dprev: dprev(z) / prev(z))
    return fns


def delta_fns(potential, n: int) -> list[Fn]:
    """[delta1, ..., delta_n] (Stewart-Gong: delta_n = phi^(n+1) / (H^n phidot))."""
    derivs: list[Fn] = [lambda z: z[1]]
    for _ in range(n):
        derivs.append(lie(potential, derivs[-1]))
    return [
        (lambda z, m=m, d=d: d(z) / (hubble(potential, z) ** m * z[1]))
        for m, d in enumerate(derivs[1:], start=1)
    ]


def cosmic_state(bg: Background, n: jax.Array) -> jax.Array:
    """z = (phi, phidot, Y) at e-fold ``n`` (scalar) of a solved background."""
    phi, phi_n = bg.state(n)
    h = jnp.sqrt(bg.potential(phi) / (3.0 - 0.5 * phi_n**2))
    return jnp.stack([phi, h * phi_n, bg.ysol.evaluate(n)[0]])


def flow_parameters(bg: Background, n: ArrayLike) -> dict[str, jax.Array]:
    """Hubble-flow and Stewart-Gong parameters at e-folds ``n``, exact along the flow.

    Args:
        bg: a solved :class:`~jaxattr.slowroll.Background`.
        n: e-fold(s) in [0, bg.n_end], any shape.

    Returns:
        A dict of arrays shaped like ``n``: ``phi``, ``phi_N``, ``H``, ``eps1`` .. ``eps4``,
        ``delta1`` .. ``delta3`` and ``Y`` (= -aH*eta).

    Example:
        >>> from jaxattr.slowroll import background
        >>> from jaxattr.slowroll import monomial
        >>> bg = background(monomial(2.0), 16.0)
        >>> p = flow_parameters(bg, 10.0)
        >>> print(round(float(p["eps1"] * p["phi"] ** 2), 1))
        2.0
    """
    check_background(bg, "flow_parameters")
    n = _float64(n, "n", "flow_parameters")
    with x64():
        return _flow_parameters(bg, jnp.asarray(n))


@eqx.filter_jit
def _flow_parameters(bg, n):
    pot = bg.potential
    eps = eps_fns(pot, 4)
    deltas = delta_fns(pot, 3)

    def one(t):
        z = cosmic_state(bg, t)
        h = hubble(pot, z)
        out = {"phi": z[0], "phi_N": z[1] / h, "H": h, "Y": z[2]}
        for i, f in enumerate(eps, start=1):
            out[f"eps{i}"] = f(z)
        for i, f in enumerate(deltas, start=1):
            out[f"delta{i}"] = f(z)
        return out

    flat = jnp.ravel(n)
    res = jax.vmap(one)(flat)
    return {k: v.reshape(n.shape) for k, v in res.items()}


def potential_parameters(potential: Fn, phi: ArrayLike) -> dict[str, jax.Array]:
    """Potential slow-roll parameters eps_V, eta_V, xi_V^2 (M_p = 1) by ``jax.grad``.

    eps_V = (V'/V)^2/2, eta_V = V''/V, xi_V^2 = V'V'''/V^2.

    Args:
        potential: V(phi).
        phi: field value(s), any shape.

    Returns:
        Dict with ``eps_V``, ``eta_V``, ``xi2_V`` shaped like ``phi``.

    Example:
        >>> p = potential_parameters(lambda p: 0.5 * p**2, 10.0)
        >>> print(float(p["eps_V"]), float(p["eta_V"]), float(p["xi2_V"]))
        0.02 0.02 0.0
    """
    fn = "potential_parameters"
    check_callable(potential, "potential", fn=fn, expected="a callable V(phi)")
    _warn_low_precision_leaves(potential, fn)
    phi = _float64(phi, "phi", fn)
    with x64():
        phi = jnp.asarray(phi)
        d1 = jax.grad(potential)
        d2 = jax.grad(d1)
        d3 = jax.grad(d2)

        def one(p):
            v = potential(p)
            return {
                "eps_V": 0.5 * (d1(p) / v) ** 2,
                "eta_V": d2(p) / v,
                "xi2_V": d1(p) * d3(p) / v**2,
            }

        res = jax.vmap(one)(jnp.ravel(phi))
        return {k: v.reshape(phi.shape) for k, v in res.items()}
