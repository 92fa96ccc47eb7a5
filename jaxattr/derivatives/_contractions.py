"""The two sigma^4 contractions of the VarGrad series: ``sum_jk f_ij f_ijkk`` and
``sum_jk f_ijk^2``. folx has no operator for either: ``"forward"`` is the exact method.

References:
    Seo et al., WHI 2018, arXiv:1806.03000: VarGrad_i = sigma^2 sum_j f_ij^2
    + sigma^4 [sum_jk f_ij f_ijkk + 1/2 sum_jk f_ijk^2] + O(sigma^6).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from . import _ops
from ._core import EXACT_MAX_DIM_HIGH, build, register


def _hessian_laplacian(F, z, opts):
    return jnp.sum(jax.hessian(F)(z) * jax.hessian(_ops.exact_lap(F))(z), axis=1)


def _third_row_sqnorms(F, z, opts):
    return jnp.sum(jax.jacfwd(jax.hessian(F))(z) ** 2, axis=(1, 2))


for _method in ("exact", "forward"):
    register("hessian_laplacian_contraction", _method, limit=EXACT_MAX_DIM_HIGH)(
        _hessian_laplacian)
    register("third_derivative_row_sqnorms", _method, limit=EXACT_MAX_DIM_HIGH)(
        _third_row_sqnorms)


def _two_probes(key, z, probe):
    kv, kw = jax.random.split(key)
    return _ops.probe_vector(kv, z, probe), _ops.probe_vector(kw, z, probe)


@register("hessian_laplacian_contraction", "hutchinson")
def _hessian_laplacian_sample(F, z, key, opts):
    """``(H v)_i * d_i D^3 F[v, w, w]`` with independent probes ``v, w``."""
    v, w = _two_probes(key, z, opts.probe)

    def d3(y):  # D^3 F[v, w, w](y) = d/dt w' H(y + t v) w
        return jax.jvp(_ops.d2(F, w), (y,), (v,))[1]

    return _ops.hvp(F, z, v) * jax.grad(d3)(z)


@register("third_derivative_row_sqnorms", "hutchinson")
def _third_row_sqnorms_sample(F, z, key, opts):
    """``(d_i v' H w)^2`` with independent probes ``v, w``."""
    v, w = _two_probes(key, z, opts.probe)
    return jax.grad(lambda y: jnp.vdot(w, _ops.hvp(F, y, v)))(z) ** 2


def hessian_laplacian_contraction(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_jk f_ij f_ijkk = sum_j H_ij L_ij`` with ``L`` the Hessian of ``Lap f``.

    One of the two sigma^4 contractions of the VarGrad series. ``"exact"`` and ``"forward"``
    (no folx form: exact) need ``d <= EXACT_MAX_DIM_HIGH``. ``"hutchinson"``:
    ``E[(H v)_i * d_i D^3 f[v, w, w]]`` with independent probes ``v, w``.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError, ArgumentTypeError: as in :func:`~jaxattr.derivatives.laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> c = hessian_laplacian_contraction(lambda x: x[0] ** 4)
        >>> print(c(jnp.array([1.0, 0.0])))
        [288.   0.]

    References:
        Seo et al., arXiv:1806.03000 (the sigma^4 term of VarGrad).
    """
    return build("hessian_laplacian_contraction", f, method=method, num_probes=num_probes,
                 probe=probe, chunk=chunk)


def third_derivative_row_sqnorms(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_jk f_ijk^2`` for every ``i`` (the VarGrad series uses half of it at sigma^4).

    ``"exact"`` and ``"forward"`` (exact) form ``d x d x d`` and need
    ``d <= EXACT_MAX_DIM_HIGH``. ``"hutchinson"``: ``E[(d_i v' H w)^2]``, independent ``v, w``.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError, ArgumentTypeError: as in :func:`~jaxattr.derivatives.laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> t = third_derivative_row_sqnorms(lambda x: x[0] ** 2 * x[1])
        >>> print(t(jnp.zeros(2)))
        [8. 4.]

    References:
        Seo et al., arXiv:1806.03000 (the sigma^4 term of VarGrad).
    """
    return build("third_derivative_row_sqnorms", f, method=method, num_probes=num_probes,
                 probe=probe, chunk=chunk)
