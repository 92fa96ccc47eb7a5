"""Autodiff building blocks shared by the quantities: HVPs, nested JVPs, dense Laplacians, the
folx forward Laplacian over coordinate chunks, and Hutchinson probes."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._jaxpr import cpu_loop_body

_CHUNK_BUDGET = 2**24  # entries of a d x chunk tangent block in the chunked methods


class FolxFallbackWarning(UserWarning):
    """folx has no forward-Laplacian rule for a primitive of ``f``; the exact method was used."""


def hvp(F: Callable, z: jax.Array, v: jax.Array) -> jax.Array:
    """Hessian-vector product ``H_F(z) v`` (forward over reverse)."""
    return jax.jvp(jax.grad(F), (z,), (v,))[1]


def d2(F: Callable, v: jax.Array) -> Callable:
    """z -> second directional derivative v' H_F(z) v (nested JVPs, no Hessian)."""

    def first(z):
        return jax.jvp(F, (z,), (v,))[1]

    return lambda z: jax.jvp(first, (z,), (v,))[1]


def exact_lap(F: Callable) -> Callable:
    """z -> trace of the dense ``jax.hessian`` of ``F``."""
    return lambda z: jnp.trace(jax.hessian(F)(z))


def exact_lap_power(F: Callable, k: int) -> Callable:
    """z -> ``Lap^k F`` by ``k`` nested dense Hessian traces."""
    for _ in range(k):
        F = exact_lap(F)
    return F


def auto_chunk(d: int, chunk: int | None) -> int:
    if chunk is not None:
        return min(chunk, d)
    return d if d * d <= _CHUNK_BUDGET else max(1, _CHUNK_BUDGET // d)


def chunk_ids(d: int, c: int) -> jax.Array:
    n = -(-d // c)
    ids = jnp.arange(n * c)
    return jnp.where(ids < d, ids, -1).reshape(n, c)  # -1 -> one_hot row of zeros


def folx_lap(F: Callable) -> Callable:
    """z -> the folx forward Laplacian of ``F`` (Li et al. 2023, arXiv:2307.08214)."""
    import folx

    def lap(z):
        # folx broadcasts internally by rank promotion; allow it inside folx only
        with jax.numpy_rank_promotion("allow"):
            return folx.forward_laplacian(F)(z).laplacian

    return lap


def try_folx(F: Callable, z: jax.Array, build: Callable, fallback: Callable) -> jax.Array:
    """``build()`` if folx can trace ``F``, else warn and return ``fallback()``."""
    try:
        jax.eval_shape(folx_lap(F), z)
    except (NotImplementedError, KeyError, TypeError, ValueError, AssertionError) as err:
        warnings.warn(
            f"folx has no forward-Laplacian rule for part of f ({type(err).__name__}: {err}); "
            "falling back to method='exact'",
            FolxFallbackWarning,
            stacklevel=4,  # try_folx <- impl <- transform <- user
        )
        return fallback()
    return build()


def forward_lap_chunks(F: Callable, z: jax.Array, chunk: int | None, grad: bool) -> jax.Array:
    """Sum over coordinate chunks C of the folx Laplacian of y -> F(z + P_C y) at y = 0."""
    d = z.size
    c = auto_chunk(d, chunk)
    if c >= d:
        lap = folx_lap(F)
        return jax.grad(lap)(z) if grad else lap(z)

    def one(ids):
        def lap_c(zz):
            P = jax.nn.one_hot(ids, d, dtype=zz.dtype).T  # (d, c) embedding of the chunk
            return folx_lap(lambda y: F(zz + P @ y))(jnp.zeros(c, zz.dtype))

        return jax.grad(lap_c)(z) if grad else lap_c(z)

    def body(acc, ids):
        return acc + one(ids), None

    init = jnp.zeros_like(z) if grad else jnp.zeros((), z.dtype)
    return lax.scan(cpu_loop_body(body), init, chunk_ids(d, c))[0]


def probe_vector(key: jax.Array, z: jax.Array, probe: str) -> jax.Array:
    """A Rademacher or standard Gaussian probe shaped like ``z``."""
    if probe == "rademacher":
        return jax.random.rademacher(key, z.shape, dtype=z.dtype)
    return jax.random.normal(key, z.shape, dtype=z.dtype)


def hutch_lap_power(F: Callable, k: int, probe: str) -> Callable:
    """(z, key) -> one unbiased sample of Lap^k F(z): D^{2k} F[v1, v1, ..., vk, vk]."""

    def sample_fn(z, key):
        G = F
        for i in range(k):
            G = d2(G, probe_vector(jax.random.fold_in(key, i), z, probe))
        return G(z)

    return sample_fn
