"""The registry of (quantity x method) implementations and the one builder that serves them all.

Each quantity module (:mod:`._laplacian`, :mod:`._hessian`, :mod:`._contractions`) registers, for
every method it supports, a function of the flattened problem ``(F, z)``:

* ``"exact"`` and ``"forward"``: ``impl(F, z, opts) -> array`` (a scalar or a ``(d,)`` vector);
* ``"hutchinson"``: ``impl(F, z, key, opts) -> array``, ONE unbiased sample, averaged by
  :func:`build` over ``num_probes`` keys ``fold_in(key, i)``.

``F(z) = f(z.reshape(x.shape))`` and ``z = x.reshape(-1)``. An implementation also declares the
largest ``d`` it accepts (``limit``, possibly depending on the options). :func:`build` validates
the options when the transform is built, in the vocabulary of :mod:`jaxattr._checks`, with
messages that start with the public function's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .._checks import (
    check_callable,
    check_choice,
    check_floating,
    check_int,
    check_key,
    fail,
    fail_type,
)
from .._jaxpr import cpu_loop_body

EXACT_MAX_DIM = 2048
"""Largest ``d`` for ``method="exact"`` on second/third-order quantities (a ``d x d`` Hessian)."""
EXACT_MAX_DIM_HIGH = 256
"""Largest ``d`` for fourth-order quantities (``d x d x d`` tensors or nested Hessians)."""

METHODS = ("exact", "forward", "hutchinson")
PROBES = ("rademacher", "gaussian")


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (sample std, ddof=1, over sqrt(probes))."""

    value: jax.Array
    stderr: jax.Array


class Options(NamedTuple):
    """The validated options of one built transform (``k``: the power, where there is one)."""

    fn: str
    method: str
    num_probes: int
    probe: str
    chunk: int | None
    k: int | None = None


class Impl(NamedTuple):
    """One registered implementation and the largest ``d`` it accepts (``None``: any)."""

    fn: Callable
    limit: Callable[[Options], int | None]


_REGISTRY: dict[tuple[str, str], Impl] = {}


def register(quantity: str, method: str, *, limit: int | None | Callable = None) -> Callable:
    """Decorator: register ``impl`` as ``quantity`` computed by ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")  # a programming error, not a user's
    limit_fn = limit if callable(limit) else (lambda opts, _limit=limit: _limit)

    def deco(impl: Callable) -> Callable:
        _REGISTRY[(quantity, method)] = Impl(impl, limit_fn)
        return impl

    return deco


def registered() -> dict[tuple[str, str], Impl]:
    """A copy of the registry (for tests and documentation)."""
    return dict(_REGISTRY)


def check_options(fn: str, method: Any, num_probes: Any, probe: Any, chunk: Any) -> None:
    """Validate the options shared by every builder, naming the public function ``fn``."""
    check_choice(method, "method", METHODS, fn=fn)
    check_int(num_probes, "num_probes", fn=fn, minimum=1)
    check_choice(probe, "probe", PROBES, fn=fn)
    if chunk is not None:
        check_int(chunk, "chunk", fn=fn, minimum=1)


def flatten(f: Callable, x: Any, *, fn: str, limit: int | None = None,
            where: str = "method='exact'", fix: str = ""):
    """Check ``x`` and ``f(x)``; return ``(F, z)`` with ``F(z) = f(z.reshape(x.shape))``."""
    x = check_floating(x, "x", fn=fn)
    out = jax.eval_shape(f, x)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        fail_type(fn, "f", f, f"returns {shape}", "a function returning a scalar")
    if limit is not None and x.size > limit:
        fail(fn, "x", x, f"has d={x.size} entries", f"d <= {limit} for {where}",
             fix or "use method='forward' or method='hutchinson' for large inputs")
    shape = x.shape
    return (lambda z: f(z.reshape(shape))), x.reshape(-1)


def mc(sample: Callable, key: jax.Array, num_probes: int, chunk: int | None) -> Estimate:
    """Mean and standard error of ``sample(fold_in(key, i))`` over ``i < num_probes``."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_probes))
    if chunk is None:
        s = jax.vmap(sample)(keys)
    else:
        s = lax.map(cpu_loop_body(sample), keys, batch_size=min(chunk, num_probes))
    mean = jnp.mean(s, axis=0)
    if num_probes == 1:
        return Estimate(mean, jnp.full_like(mean, jnp.inf))
    sd = jnp.sqrt(jnp.sum((s - mean[None]) ** 2, axis=0) / (num_probes - 1))
    return Estimate(mean, sd / math.sqrt(num_probes))


def build(
    quantity: str,
    f: Callable,
    *,
    method: str,
    num_probes: int,
    probe: str,
    chunk: int | None,
    k: int | None = None,
    fn: str | None = None,
) -> Callable:
    """The transform computing ``quantity`` of ``f`` by ``method``, validated now.

    Returns ``x -> array`` (shaped like ``x``, or a scalar) for ``"exact"``/``"forward"`` and
    ``(x, key) -> Estimate`` for ``"hutchinson"``. ``fn`` names the public function in messages
    (default: ``quantity``).
    """
    fn = quantity if fn is None else fn
    check_callable(f, "f", fn=fn, expected="a scalar function of one array")
    check_options(fn, method, num_probes, probe, chunk)
    opts = Options(fn, method, int(num_probes), probe, None if chunk is None else int(chunk), k)
    impl = _REGISTRY[(quantity, method)]
    limit = impl.limit(opts)
    forward_limit = _REGISTRY[(quantity, "forward")].limit(opts)
    fix = ("use method='forward' or method='hutchinson' for large inputs"
           if forward_limit is None else "use method='hutchinson' for large inputs (any d)")

    where = f"method={method!r}" + ("" if k is None else f" and k={k}")

    def reshape(a: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.reshape(a, jnp.shape(x)) if a.ndim else a

    if method == "hutchinson":

        def estimate(x: jax.Array, key: jax.Array) -> Estimate:
            key = check_key(key, fn=fn)
            F, z = flatten(f, x, fn=fn)
            est = mc(lambda kk: impl.fn(F, z, kk, opts), key, opts.num_probes, opts.chunk)
            return Estimate(*(reshape(a, x) for a in est))

        return estimate

    def value(x: jax.Array) -> jax.Array:
        F, z = flatten(f, x, fn=fn, limit=limit, where=where, fix=fix)
        return reshape(impl.fn(F, z, opts), x)

    return value
