"""Hessian row norms ``sum_j H_ij^2``, the leading VarGrad term over ``sigma^2``.

References:
    Seo et al., WHI 2018, arXiv:1806.03000: VarGrad_i = sigma^2 sum_j f_ij^2 + O(sigma^4).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._jaxpr import cpu_loop_body
from . import _ops
from ._core import EXACT_MAX_DIM, build, register


@register("hessian_row_sqnorms", "exact", limit=EXACT_MAX_DIM)
def _exact(F, z, opts):
    return jnp.sum(jax.hessian(F)(z) ** 2, axis=1)


@register("hessian_row_sqnorms", "forward")
def _streamed(F, z, opts):
    """Hessian columns ``H e_j`` from HVPs, ``chunk`` at a time (no ``d x d`` matrix)."""
    d = z.size
    c = _ops.auto_chunk(d, opts.chunk)

    def body(acc, ids):
        V = jax.nn.one_hot(ids, d, dtype=z.dtype)  # (c, d)
        HV = jax.vmap(lambda v: _ops.hvp(F, z, v))(V)
        return acc + jnp.sum(HV**2, axis=0), None

    return lax.scan(cpu_loop_body(body), jnp.zeros_like(z), _ops.chunk_ids(d, c))[0]


@register("hessian_row_sqnorms", "hutchinson")
def _sample(F, z, key, opts):
    """``(H v)_i^2``: its mean over probes with ``E v v' = I`` is ``sum_j H_ij^2``."""
    return _ops.hvp(F, z, _ops.probe_vector(key, z, opts.probe)) ** 2


def hessian_row_sqnorms(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_j H_ij^2`` for every ``i`` (the leading VarGrad term over ``sigma^2``).

    ``"exact"``: rows of ``jax.hessian``. ``"forward"``: folx has no operator for this, so the
    Hessian columns ``H e_j`` are streamed through HVPs ``chunk`` at a time (exact, ``d`` HVPs,
    no ``d x d`` matrix). ``"hutchinson"``: ``E[(H v)_i^2]``. Options as in
    :func:`~jaxattr.derivatives.laplacian`.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError, ArgumentTypeError: as in :func:`~jaxattr.derivatives.laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> rn = hessian_row_sqnorms(lambda x: x[0] * x[1] + x[0] ** 2)
        >>> print(rn(jnp.zeros(2)))
        [5. 1.]

    References:
        Seo et al., arXiv:1806.03000 (VarGrad = sigma^2 sum_j H_ij^2 + O(sigma^4)).
    """
    return build("hessian_row_sqnorms", f, method=method, num_probes=num_probes, probe=probe,
                 chunk=chunk)
