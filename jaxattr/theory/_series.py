"""The SmoothGrad and VarGrad series of Seo et al. (WHI 2018, arXiv:1806.03000) as executable
transforms, built from :mod:`jaxattr.derivatives`.

With ``eps ~ N(0, sigma^2 I)`` and ``t = sigma^2 / 2`` (heat semigroup, ``E f(x + eps) =
e^{t Lap} f(x)``):

* SmoothGrad_i = sum_k sigma^(2k) / (2^k k!) d_i Lap^k f(x);
* VarGrad_i = sigma^2 sum_j f_ij^2 + sigma^4 [sum_jk f_ij f_ijkk + 1/2 sum_jk f_ijk^2]
  + O(sigma^6);
* Cov_ij = sigma^2 (H^2)_ij + (sigma^4/2) [sum_k (T_k T_k)_ij + (H L + L H)_ij] + O(sigma^6),
  ``T_k = d_k H``, ``L`` the Hessian of ``Lap f``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypedDict, cast, overload

import jax
import jax.numpy as jnp

from .. import derivatives as _d
from .._checks import check_int, check_key, check_real, fail
from ..derivatives import Estimate, _core, _ops
from ._smoothness import warn_if_kinked

__all__ = ["smoothgrad_series", "vargrad_covariance_series", "vargrad_series"]


def _check_sigma(sigma: Any, fn: str) -> float:
    return check_real(sigma, "sigma", fn=fn, lo=0.0, lo_open=True,
                      expected="a finite absolute noise standard deviation > 0")


class _BuildOptions(TypedDict):
    """The options every series passes to :func:`jaxattr.derivatives._core.build`."""

    method: str
    num_probes: int
    probe: str
    chunk: int | None
    fn: str


@overload
def _combine(terms: list[jax.Array], coefs: list[float], stochastic: Literal[False]
             ) -> jax.Array: ...
@overload
def _combine(terms: list[Estimate], coefs: list[float], stochastic: Literal[True]
             ) -> Estimate: ...
def _combine(terms: list, coefs: list[float], stochastic: bool) -> jax.Array | Estimate:
    # terms is never empty: each sum is an array (its start, 0, is not returned alone)
    if not stochastic:
        return cast(jax.Array, sum(c * t for c, t in zip(coefs, terms, strict=True)))
    value = cast(jax.Array, sum(c * t.value for c, t in zip(coefs, terms, strict=True)))
    var = sum((c * t.stderr) ** 2 for c, t in zip(coefs, terms, strict=True))
    return Estimate(value, jnp.sqrt(var))


def smoothgrad_series(
    f: Callable,
    sigma: float,
    *,
    order: int = 1,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The SmoothGrad series ``sum_{k=0}^{order} sigma^(2k) / (2^k k!) grad Lap^k f``.

    Its error against the true SmoothGrad (``E grad f(x + eps)``, absolute ``sigma``) is
    ``O(sigma^(2 order + 2))``; it is exact for polynomials of degree ``<= 2 order + 2``.

    Args:
        f: scalar function of one array ``x``.
        sigma: absolute noise standard deviation, > 0.
        order: number of correction terms ``K >= 0`` (``0`` is the plain gradient).
        method: ``"exact"``, ``"forward"`` or ``"hutchinson"`` (see :mod:`jaxattr.derivatives`;
            ``order >= 2`` needs ``d <= EXACT_MAX_DIM_HIGH`` except with ``"hutchinson"``).
        num_probes, probe, chunk: options of the Hutchinson / chunked forward methods.

    Returns:
        ``x -> array shaped like x``; with ``"hutchinson"`` ``(x, key) -> Estimate`` (the
        gradient term is exact, term ``k`` uses ``fold_in(key, k)``).

    Raises:
        ArgumentError: ``sigma <= 0``, ``order < 0``, unknown ``method``, ``num_probes < 1``,
            ``d`` too large for the method.
        ArgumentTypeError: non-integer ``order``, non-real ``sigma``, ``f`` not scalar.

    Warns:
        NonSmoothWarning: when ``f`` contains ReLU/abs/max kinks (the series is zero a.e.).

    Example:
        >>> import jax.numpy as jnp
        >>> sg = smoothgrad_series(lambda x: jnp.sum(x**3), 0.5, order=1)
        >>> print(sg(jnp.array([1.0, 0.0])))  # 3 x^2 + 3 sigma^2
        [3.75 0.75]

    References:
        Seo et al., arXiv:1806.03000, the SmoothGrad series (heat-semigroup expansion);
        Smilkov et al., arXiv:1706.03825 (SmoothGrad).
    """
    fn = "smoothgrad_series"
    sigma = _check_sigma(sigma, fn)
    order = check_int(order, "order", fn=fn, minimum=0)
    _core.check_options(fn, method, num_probes, probe, chunk)
    coefs = [sigma ** (2 * k) / (2**k * math.factorial(k)) for k in range(order + 1)]
    opts = _BuildOptions(method=method, num_probes=num_probes, probe=probe, chunk=chunk, fn=fn)
    builders = [_core.build("grad_laplacian_power", f, k=k, **opts) for k in range(1, order + 1)]
    grad = jax.grad(f)

    if method == "hutchinson":

        def series_mc(x: jax.Array, key: jax.Array) -> Estimate:
            key = check_key(key, fn=fn)
            _core.flatten(f, x, fn=fn)
            warn_if_kinked(f, x)
            g = grad(x)
            terms = [Estimate(g, jnp.zeros_like(g))]
            terms += [b(x, jax.random.fold_in(key, k)) for k, b in enumerate(builders, 1)]
            return _combine(terms, coefs, True)

        return series_mc

    def series(x: jax.Array) -> jax.Array:
        _core.flatten(f, x, fn=fn)
        warn_if_kinked(f, x)
        return _combine([grad(x)] + [b(x) for b in builders], coefs, False)

    return series


def vargrad_series(
    f: Callable,
    sigma: float,
    *,
    order: int = 2,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The VarGrad series (population variance of ``grad f(x + eps)``) to ``sigma^(2 order)``.

    ``order=1``: ``sigma^2 sum_j f_ij^2``; ``order=2`` adds
    ``sigma^4 [sum_jk f_ij f_ijkk + 1/2 sum_jk f_ijk^2]``; ``order=0`` is zero.

    Args:
        f: scalar function. sigma: absolute noise std, > 0. order: 0, 1 or 2.
        method, num_probes, probe, chunk: as in :func:`smoothgrad_series` (``order=2`` needs
            ``d <= EXACT_MAX_DIM_HIGH`` except with ``"hutchinson"``).

    Returns:
        ``x -> array shaped like x``; with ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError: ``sigma <= 0``, ``order`` not in 0..2, unknown ``method``,
            ``num_probes < 1``, ``d`` too large for the method.
        ArgumentTypeError: non-integer ``order``, ``f`` not scalar.

    Warns:
        NonSmoothWarning: when ``f`` contains ReLU/abs/max kinks.

    Example:
        >>> import jax.numpy as jnp
        >>> vg = vargrad_series(lambda x: jnp.sum(x**3), 0.5, order=2)
        >>> print(vg(jnp.array([1.0, 0.0])))  # 36 s^2 x^2 + 18 s^4
        [10.125  1.125]

    References:
        Seo et al., arXiv:1806.03000, the VarGrad series; Adebayo et al., arXiv:1810.03292
        (VarGrad).
    """
    fn = "vargrad_series"
    sigma = _check_sigma(sigma, fn)
    order = check_int(order, "order", fn=fn, minimum=0)
    if order > 2:
        fail(fn, "order", order, "is not implemented", "0, 1 or 2")
    _core.check_options(fn, method, num_probes, probe, chunk)
    opts = _BuildOptions(method=method, num_probes=num_probes, probe=probe, chunk=chunk, fn=fn)
    builders, coefs = [], []
    if order >= 1:
        builders.append(_core.build("hessian_row_sqnorms", f, **opts))
        coefs.append(sigma**2)
    if order >= 2:
        builders += [_core.build("hessian_laplacian_contraction", f, **opts),
                     _core.build("third_derivative_row_sqnorms", f, **opts)]
        coefs += [sigma**4, sigma**4 / 2]

    if method == "hutchinson":

        def series_mc(x: jax.Array, key: jax.Array) -> Estimate:
            key = check_key(key, fn=fn)
            warn_if_kinked(f, x)
            if not builders:
                _core.flatten(f, x, fn=fn)
                return Estimate(jnp.zeros_like(x), jnp.zeros_like(x))
            terms = [b(x, jax.random.fold_in(key, i)) for i, b in enumerate(builders)]
            return _combine(terms, coefs, True)

        return series_mc

    def series(x: jax.Array) -> jax.Array:
        warn_if_kinked(f, x)
        if not builders:
            _core.flatten(f, x, fn=fn)
            return jnp.zeros_like(x)
        return _combine([b(x) for b in builders], coefs, False)

    return series


def vargrad_covariance_series(f: Callable, sigma: float, *, order: int = 2) -> Callable:
    """The covariance of ``grad f(x + eps)`` to ``sigma^(2 order)``, exactly (small ``d``).

    ``C = sigma^2 H^2 + (sigma^4 / 2) [sum_k T_k T_k + H L + L H]`` with ``T_k = d_k H`` and
    ``L`` the Hessian of ``Lap f``. Its diagonal is :func:`vargrad_series`.

    Args:
        f: scalar function. sigma: absolute noise std, > 0. order: 1 or 2.

    Returns:
        ``x -> array of shape x.shape + x.shape``.

    Raises:
        ArgumentError: ``sigma <= 0``, ``order`` not 1 or 2, ``d`` above ``EXACT_MAX_DIM``
            (``order=1``) or ``EXACT_MAX_DIM_HIGH`` (``order=2``).

    Example:
        >>> import jax.numpy as jnp
        >>> cov = vargrad_covariance_series(lambda x: x[0] * x[1], 0.5, order=1)
        >>> print(cov(jnp.zeros(2)))
        [[0.25 0.  ]
         [0.   0.25]]

    References:
        Seo et al., arXiv:1806.03000 (covariance of the noisy gradient).
    """
    fn = "vargrad_covariance_series"
    sigma = _check_sigma(sigma, fn)
    order = check_int(order, "order", fn=fn, minimum=1)
    if order > 2:
        fail(fn, "order", order, "is not implemented", "1 or 2")
    limit = _d.EXACT_MAX_DIM if order == 1 else _d.EXACT_MAX_DIM_HIGH

    def cov(x: jax.Array) -> jax.Array:
        warn_if_kinked(f, x)
        F, z = _core.flatten(f, x, fn=fn, limit=limit, where=f"order={order}",
                             fix="this dense covariance has no large-d method")
        H = jax.hessian(F)(z)
        C = sigma**2 * H @ H
        if order == 2:
            T = jax.jacfwd(jax.hessian(F))(z)
            L = jax.hessian(_ops.exact_lap(F))(z)
            C = C + sigma**4 / 2 * (jnp.einsum("kil,klj->ij", T, T) + H @ L + L @ H)
        return C.reshape(jnp.shape(x) * 2)

    return cov
