"""Reference functions with exact SmoothGrad, VarGrad and gradient covariance, for tests.

Each is derived by hand from ``E cos(u + g) = cos(u) e^(-var/2)`` for Gaussian ``g`` (or the
Gaussian moment generating function); see Seo et al., WHI 2018, arXiv:1806.03000 for the series
these closed forms check. All take absolute ``sigma`` and 1-D ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp

__all__ = ["ClosedForm", "exponential", "plane_wave", "quadratic", "ridge_cubic", "sine_network"]


class ClosedForm(NamedTuple):
    """A reference function with its exact SmoothGrad, VarGrad and gradient covariance.

    ``smoothgrad(x, sigma)``, ``vargrad(x, sigma)`` (population variance) and
    ``covariance(x, sigma)`` (``(d, d)``) are for absolute ``sigma`` and 1-D ``x``.
    """

    f: Callable
    smoothgrad: Callable
    vargrad: Callable
    covariance: Callable


def quadratic(A: Any, b: Any) -> ClosedForm:
    """``f = x'Ax/2 + b'x`` (``A`` symmetric): SG = Ax + b, Cov = sigma^2 A^2 (exact series).

    Example:
        >>> import jax.numpy as jnp
        >>> q = quadratic(jnp.eye(2), jnp.zeros(2))
        >>> print(q.vargrad(jnp.ones(2), 0.5))
        [0.25 0.25]
    """
    A, b = jnp.asarray(A), jnp.asarray(b)
    return ClosedForm(
        f=lambda x: 0.5 * x @ A @ x + b @ x,
        smoothgrad=lambda x, sigma: A @ x + b,
        vargrad=lambda x, sigma: sigma**2 * jnp.sum(A**2, axis=1),
        covariance=lambda x, sigma: sigma**2 * A @ A,
    )


def plane_wave(w: Any, b: float = 0.0) -> ClosedForm:
    """``f = sin(u)``, ``u = w.x + b``, ``s^2 = sigma^2 |w|^2``: SG = w cos(u) e^(-s^2/2),
    Var_i = (w_i^2/2)(1 - e^(-s^2))(1 - e^(-s^2) cos 2u).

    Example:
        >>> import jax.numpy as jnp
        >>> print(plane_wave(jnp.array([1.0, 0.0])).smoothgrad(jnp.zeros(2), 1e-9))
        [1. 0.]
    """
    w = jnp.asarray(w)

    def cov_scalar(x, sigma):
        u, s2 = w @ x + b, sigma**2 * (w @ w)
        return 0.5 * (1 - jnp.exp(-s2)) * (1 - jnp.exp(-s2) * jnp.cos(2 * u))

    return ClosedForm(
        f=lambda x: jnp.sin(w @ x + b),
        smoothgrad=lambda x, sigma: w * jnp.cos(w @ x + b) * jnp.exp(-(sigma**2) * (w @ w) / 2),
        vargrad=lambda x, sigma: w**2 * cov_scalar(x, sigma),
        covariance=lambda x, sigma: jnp.outer(w, w) * cov_scalar(x, sigma),
    )


def exponential(w: Any) -> ClosedForm:
    """``f = exp(w.x)``: SG = w e^(w.x + s^2/2), Var_i = w_i^2 e^(2 w.x) e^(s^2) (e^(s^2) - 1).

    Example:
        >>> import jax.numpy as jnp
        >>> print(exponential(jnp.array([1.0])).smoothgrad(jnp.zeros(1), 0.0))
        [1.]
    """
    w = jnp.asarray(w)

    def scal(x, sigma):
        s2 = sigma**2 * (w @ w)
        return jnp.exp(2 * (w @ x)) * jnp.exp(s2) * jnp.expm1(s2)

    return ClosedForm(
        f=lambda x: jnp.exp(w @ x),
        smoothgrad=lambda x, sigma: w * jnp.exp(w @ x + sigma**2 * (w @ w) / 2),
        vargrad=lambda x, sigma: w**2 * scal(x, sigma),
        covariance=lambda x, sigma: jnp.outer(w, w) * scal(x, sigma),
    )


def ridge_cubic(a: Any) -> ClosedForm:
    """``f = (a.x)^3``, ``v = a.x``, ``s^2 = sigma^2 |a|^2``: SG = 3a(v^2 + s^2),
    Var_i = a_i^2 (36 s^2 v^2 + 18 s^4) (the order-1 SG and order-2 VarGrad series are exact).

    Example:
        >>> import jax.numpy as jnp
        >>> print(ridge_cubic(jnp.array([1.0])).vargrad(jnp.zeros(1), 1.0))
        [18.]
    """
    a = jnp.asarray(a)

    def scal(x, sigma):
        v, s2 = a @ x, sigma**2 * (a @ a)
        return 36 * s2 * v**2 + 18 * s2**2

    return ClosedForm(
        f=lambda x: (a @ x) ** 3,
        smoothgrad=lambda x, sigma: 3 * a * ((a @ x) ** 2 + sigma**2 * (a @ a)),
        vargrad=lambda x, sigma: a**2 * scal(x, sigma),
        covariance=lambda x, sigma: jnp.outer(a, a) * scal(x, sigma),
    )


def sine_network(c: Any, W: Any, b: Any) -> ClosedForm:
    """``f = sum_m c_m sin(u_m)``, ``u_m = w_m.x + b_m`` (``W`` rows ``w_m``).

    With ``r_mn = sigma^2 w_m.w_n`` (so ``s_m^2 = r_mm``), ``E cos(u + g) = cos(u) e^(-var/2)``
    for Gaussian ``g`` and ``cos A cos B = (cos(A - B) + cos(A + B)) / 2`` give

    * SG = sum_m c_m w_m cos(u_m) e^(-s_m^2/2);
    * Cov(cos(u_m + g_m), cos(u_n + g_n)) = (1/2) e^(-(s_m^2 + s_n^2)/2)
      [cos(u_m - u_n)(e^(r_mn) - 1) + cos(u_m + u_n)(e^(-r_mn) - 1)] =: K_mn;
    * gradient covariance C = W' diag(c) K diag(c) W, VarGrad = diag(C).

    One unit reduces to :func:`plane_wave`.

    Example:
        >>> import jax.numpy as jnp
        >>> net = sine_network(jnp.ones(1), jnp.eye(1), jnp.zeros(1))
        >>> print(net.smoothgrad(jnp.zeros(1), 1e-9))
        [1.]
    """
    c, W, b = jnp.asarray(c), jnp.asarray(W), jnp.asarray(b)

    def K(x, sigma):
        u = W @ x + b
        r = sigma**2 * W @ W.T
        s2 = jnp.diag(r)
        damp = 0.5 * jnp.exp(-(s2[:, None] + s2[None, :]) / 2)
        return damp * (jnp.cos(u[:, None] - u[None, :]) * jnp.expm1(r)
                       + jnp.cos(u[:, None] + u[None, :]) * jnp.expm1(-r))

    def cov(x, sigma):
        cw = c[:, None] * W
        return cw.T @ K(x, sigma) @ cw

    def sg(x, sigma):
        s2 = sigma**2 * jnp.sum(W**2, axis=1)
        return (c * jnp.cos(W @ x + b) * jnp.exp(-s2 / 2)) @ W

    return ClosedForm(
        f=lambda x: c @ jnp.sin(W @ x + b),
        smoothgrad=sg,
        vargrad=lambda x, sigma: jnp.diag(cov(x, sigma)),
        covariance=cov,
    )
