"""Noise transforms: SmoothGrad, SmoothGrad-squared and VarGrad over any attribution function.

Each transform maps an attribution function ``a: x -> array`` (``jaxattr.saliency(f)``,
``jaxattr.rectgrad(f)``, ``jaxattr.times_input(...)``, a user's own) to ``g(x, key)``. Noise sample
``i`` is drawn from ``jax.random.fold_in(key, i)`` and the samples are folded into the statistic one
at a time in index order, so the result does not depend on ``chunk``: ``chunk`` only bounds memory
(``chunk`` evaluations of ``a`` are live at once; peak memory is flat in ``n``). The variance is
accumulated with Welford's update, which stays accurate in float32 when mean^2/var is large.

Calling convention: ``g(x, key, *args, **kwargs)`` evaluates ``a(x + eps_i, *args, **kwargs)``:
only ``x`` is perturbed; the other arguments (a label, a mask) are passed through as in
``jax.grad`` (arrays traced, hashable non-arrays static), so explaining each example for its own
class is ``jax.vmap(smoothgrad(saliency(f)))(xs, keys, ys)`` with ``f(x, y) = model(x)[y]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import lax

from ._budget import auto_chunk, check_max_memory, vmap_batch
from ._calling import is_transform, jit_with_static, mark_map, mark_transform
from ._checks import (
    check_bool,
    check_callable,
    check_dtype,
    check_floating,
    check_int,
    check_key,
    check_real,
    fail,
    fail_type,
)
from ._jaxpr import cpu_loop_body

__all__ = ["smoothgrad", "smoothgrad_sq", "vargrad"]

_UNROLL = 1  # in-chunk fold: a plain loop (unrolling costs compile time, saves ~nothing)


# ----------------------------------------------------------------------------------------------
# validation helpers (shared with jaxattr.path)


def _check_chunk(chunk: Any, n: int, fn: str, n_name: str = "n") -> int | Literal["auto"]:
    """``chunk=None`` means all ``n`` at once; ``"auto"`` is resolved at trace time from the
    memory budget (``jaxattr._budget``); a chunk that does not divide ``n`` is allowed (the last
    pass is smaller); a chunk larger than ``n`` is rejected as a likely mistake."""
    if chunk is None:
        return n
    if chunk == "auto":
        return chunk
    chunk = check_int(chunk, "chunk", fn=fn, minimum=1)
    if chunk > n:
        fail(fn, "chunk", chunk, f"is larger than {n_name}={n}",
             f"an int in [1, {n_name}], or None for all at once")
    return chunk


def _check_unroll(unroll: Any, fn: str) -> int | bool:
    if isinstance(unroll, bool):
        return unroll
    return check_int(unroll, "unroll", fn=fn, minimum=1, hint=" (or True / False)")


def _check_attribution_fn(a: Any, fn: str) -> Callable:
    expected = "an attribution function a(x, *args) -> map, such as ja.saliency(f)"
    if is_transform(a):
        fail_type(fn, "a", a, "is a transform, not an attribution function", expected,
                  f"apply it to your score function first: {fn}(ja.rectgrad(f))")
    return check_callable(a, "a", fn=fn, expected=expected)


def _check_sigma(sigma: Any, fn: str) -> Any:
    return check_real(sigma, "sigma", fn=fn, lo=0, lo_open=True, allow_traced=True,
                      expected="a finite noise level > 0")


# ----------------------------------------------------------------------------------------------
# chunked evaluation


def _fold_chunks(step: Callable, carry: Any, n: int, chunk: int, unroll: int | bool = 1) -> Any:
    """``carry = step(carry, idx)`` over consecutive index blocks ``idx`` of size ``chunk`` covering
    ``range(n)`` in order; the last block holds the remainder ``n % chunk`` if it is not zero.

    The loop counter generates the indices, so no array grows with ``n``.
    """
    q, r = divmod(n, chunk)
    block = jnp.arange(chunk)
    if q == 1:
        carry = step(carry, block)
    elif q > 1:
        body = step if unroll is True else cpu_loop_body(step)  # XLA:CPU's fast convolutions
        carry = lax.fori_loop(0, q, lambda c, acc: body(acc, c * chunk + block), carry,
                              unroll=unroll)
    if r:
        carry = step(carry, q * chunk + jnp.arange(r))
    return carry


def _gaussian_noise(key: jax.Array, x: jax.Array, scale: Any, antithetic: bool) -> Callable:
    """``idx -> eps[idx]``, shape ``(len(idx), *x.shape)``: ``eps_i = scale * z_i`` with
    ``z_i ~ N(0, I)`` from ``fold_in(key, i)``; antithetic: ``z_{2j} = -z_{2j+1}`` from
    ``fold_in(key, j)``."""

    def draw(i):
        return jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)

    def noise(idx):
        if antithetic:
            sign = (1 - 2 * (idx % 2)).astype(x.dtype).reshape((-1,) + (1,) * x.ndim)
            z = jax.vmap(draw)(idx // 2) * sign
        else:
            z = jax.vmap(draw)(idx)
        return z * jnp.asarray(scale, x.dtype)

    return noise


def _acc_dtype(dtype) -> Any:
    return jnp.promote_types(dtype, jnp.float32)


def _aggregate(
    a: Callable,
    x: jax.Array,
    noise: Callable,
    *,
    n: int,
    chunk: int,
    stat: str,
    ddof: int = 0,
    unroll: int | bool = 1,
) -> Any:
    """The statistic of ``a(x + noise(i))`` over samples ``i = 0 .. n-1``.

    ``noise(idx)`` returns the perturbations for an index block, shape ``(len(idx), *x.shape)``;
    the public transforms pass Gaussian noise, tests pass a fixed array (``lambda idx: eps[idx]``).
    ``stat``: ``"mean"``, ``"sq"`` (mean of squares) or ``"var"`` (Welford, divided by
    ``n - ddof``). Samples are folded in index order whatever ``chunk`` is; sums accumulate in
    at least float32 and the result has ``a``'s output dtype.
    """
    if stat not in ("mean", "sq", "var"):
        raise ValueError(f"stat={stat!r} must be 'mean', 'sq' or 'var'")
    out_leaves, treedef = jax.tree.flatten(jax.eval_shape(a, x))
    dtypes = [_acc_dtype(s.dtype) for s in out_leaves]
    a_vmapped = jax.vmap(lambda xi: jax.tree.leaves(a(xi)))

    def fold(carry, idx, values):  # sequential over the block: the order does not depend on chunk
        if stat == "var":

            def welford(c, iv):
                (mean, m2), (i, v) = c, iv
                delta = v - mean
                mean = mean + delta / (i + 1).astype(mean.dtype)
                return (mean, m2 + delta * (v - mean)), None

            return lax.scan(welford, carry, (idx, values), unroll=_UNROLL)[0]
        square = stat == "sq"
        add = lambda t, v: (t + v * v if square else t + v, None)
        return lax.scan(add, carry, values, unroll=_UNROLL)[0]

    def step(carries, idx):
        values = a_vmapped(x[None] + noise(idx))
        return [fold(c, idx, v.astype(d)) for c, v, d in zip(carries, values, dtypes, strict=True)]

    zeros = [jnp.zeros(s.shape, d) for s, d in zip(out_leaves, dtypes, strict=True)]
    init = [(z, z) for z in zeros] if stat == "var" else zeros
    carries = _fold_chunks(step, init, n, chunk, unroll)
    if stat == "var":
        results = [m2 / (n - ddof) for _, m2 in carries]
    else:
        results = [total / n for total in carries]
    return treedef.unflatten([r.astype(s.dtype) for r, s in zip(results, out_leaves, strict=True)])


# ----------------------------------------------------------------------------------------------
# public transforms


def _noise_transform(a, *, sigma, n, chunk, relative, antithetic, stat, ddof, name, unroll=1,
                     max_memory=None, dtype=None):
    a = _check_attribution_fn(a, name)
    dtype = check_dtype(dtype, "dtype", fn=name)
    max_memory = check_max_memory(max_memory, name)
    sigma = _check_sigma(sigma, name)
    min_n = ddof + 1 if stat == "var" else 1
    hint = (f" (the sample variance with ddof={ddof} needs n > ddof)" if stat == "var" else "")
    n = check_int(n, "n", fn=name, minimum=min_n, hint=hint)
    chunk = _check_chunk(chunk, n, name)
    unroll = _check_unroll(unroll, name)
    relative = check_bool(relative, "relative", fn=name)
    antithetic = check_bool(antithetic, "antithetic", fn=name)
    if antithetic and n % 2:
        fail(name, "n", n, "is odd but antithetic=True", "an even n",
             "antithetic samples come in pairs (z, -z)")

    def compute(args: tuple, kwargs: dict) -> Any:
        batch, x, key, rest = args[0], args[1], args[2], args[3:]
        if dtype is None:
            a_x = lambda xi: a(xi, *rest, **kwargs)
        else:  # samples in dtype; statistics in float32; the map in x's dtype
            a_x = lambda xi: jax.tree.map(lambda m: m.astype(x.dtype),
                                          a(xi.astype(dtype), *rest, **kwargs))
        c = (auto_chunk(a_x, x, n, max_memory=max_memory, batch=batch, fn=name)
             if chunk == "auto" else chunk)
        scale = sigma * (jnp.max(x) - jnp.min(x)) if relative else sigma
        noise = _gaussian_noise(key, x, scale, antithetic)
        return _aggregate(a_x, x, noise, n=n, chunk=c, stat=stat, ddof=ddof, unroll=unroll)

    # One compiled program whether or not the caller jits: eager calls do not dispatch op by op,
    # and the fold order (hence the bits) is the same as under the caller's jax.jit. The vmap
    # batch the call is made under (static) sizes chunk="auto".
    run = jit_with_static(compute, fn=name, dynamic_argnums=(1, 2))

    def g(x: jax.Array, key: jax.Array, *args: Any, **kwargs: Any) -> Any:
        batch = vmap_batch(x) if chunk == "auto" else 1
        return run(batch, check_floating(x, "x", fn=name), check_key(key, fn=name), *args,
                   **kwargs)

    g.__name__ = f"{name}_{getattr(a, '__name__', 'a')}"
    g.__doc__ = f"{name} of {getattr(a, '__name__', repr(a))}: g(x, key, *args, **kwargs)."
    return mark_map(g)


@mark_transform
def smoothgrad(
    a: Callable[[jax.Array], Any],
    *,
    sigma: float = 0.15,
    n: int = 50,
    chunk: int | str | None = "auto",
    relative: bool = True,
    antithetic: bool = False,
    unroll: int | bool = 1,
    max_memory: int | None = None,
    dtype: Any = None,
) -> Callable[[jax.Array, jax.Array], Any]:
    """SmoothGrad: the mean of an attribution over Gaussian perturbations of its input.

    ``g(x, key) = (1/n) sum_i a(x + eps_i)``, ``eps_i = s * z_i``, ``z_i ~ N(0, I)`` drawn from
    ``jax.random.fold_in(key, i)``, with ``s = sigma * (x.max() - x.min())`` if ``relative`` (the
    SmoothGrad paper's noise level; PAIR's ``stdev_spread``) else ``s = sigma`` (Captum's
    ``stdevs``). One example per call: batch with ``jax.vmap(g)(xs, jax.random.split(key, B))``.
    Extra arguments are passed through to ``a``: ``g(x, key, *args, **kwargs)``.

    Args:
        a: attribution function ``x -> array`` (or pytree of arrays), e.g. ``jaxattr.saliency(f)``.
        sigma: noise level, > 0: relative to the input's range, or absolute if ``relative=False``.
        n: number of noise samples, >= 1.
        chunk: evaluate ``a`` on ``chunk`` samples at a time (``lax.fori_loop`` over passes), which
            bounds peak memory independently of ``n``. ``"auto"`` (default): as many as fit in
            ``max_memory`` (or the device's free memory; see ``jaxattr._budget``), accounting for
            the ``jax.vmap`` batch the call is made under; on CPU also at most 32 MiB of
            intermediates per pass, which is where XLA:CPU is fastest. ``None``: all ``n`` in
            one pass. A chunk that does not divide ``n`` is allowed (the last pass is smaller).
            The result does not depend on ``chunk`` beyond how XLA evaluates ``a`` on batches of
            different sizes. On CPU the loop body's convolutions are put in XLA:CPU's canonical
            layout (``jaxattr._jaxpr.canonical_convs``), without which they ran ~3x slower than
            at top level; a chunked pass now costs what the same gradients cost as separate
            top-level calls (``benchmarks/noise.py``).
        max_memory: budget in bytes for ``chunk="auto"`` (an upper bound of one evaluation's
            intermediates times the vmap batch must fit; an error says how much one needs).
        dtype: evaluate ``a`` on samples cast to this dtype (e.g. ``jnp.bfloat16``); sums,
            means and variances stay in float32 and the map is returned in ``x``'s dtype. For
            the model itself to run in it, build ``a`` with the same dtype
            (``ja.saliency(f, dtype=jnp.bfloat16)``).
        relative: whether ``sigma`` is a fraction of ``x.max() - x.min()``.
        antithetic: use pairs ``(z, -z)`` (pair ``j`` from ``fold_in(key, j)``; ``n`` must be even).
            This cancels every odd term of the noise expansion (variance reduction).
        unroll: unrolling of the loop over chunks (``lax.fori_loop``'s ``unroll``): ``True``
            compiles straight-line code, whose memory is then up to XLA's scheduler (XLA:CPU
            overlapped the passes: 523 MB at n=40, chunk=5, vs 83 MB rolled) and whose compile
            time grows with ``n / chunk``. Results are identical.

    Returns:
        ``g(x, key)`` returning an array shaped like ``a(x)``, with ``a``'s output dtype (sums are
        accumulated in at least float32).

    Raises:
        ArgumentError: ``sigma`` not > 0 and finite, ``n < 1``, ``chunk`` < 1 or > ``n``, odd ``n``
            with ``antithetic``, or a batch of keys passed without ``jax.vmap``.
        ArgumentTypeError: (also a TypeError) integer ``x``; a key that is neither a typed nor a
            legacy uint32 PRNG key; ``a`` not an attribution function (e.g. ``ja.rectgrad``
            itself instead of ``ja.rectgrad(f)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxattr as ja
        >>> f = lambda x: 0.5 * jnp.sum(x ** 2)  # gradient x: SmoothGrad is x plus averaged noise
        >>> g = ja.smoothgrad(ja.saliency(f), sigma=0.1, n=16, chunk=4, antithetic=True)
        >>> print(jnp.round(g(jnp.array([1.0, 2.0, 3.0]), jax.random.key(0)), 6))
        [1. 2. 3.]

    References:
        Smilkov, Thorat, Kim, Viegas, Wattenberg, "SmoothGrad: removing noise by adding noise",
        arXiv:1706.03825.
    """
    return _noise_transform(
        a,
        sigma=sigma,
        n=n,
        chunk=chunk,
        relative=relative,
        antithetic=antithetic,
        stat="mean",
        ddof=0,
        name="smoothgrad",
        unroll=unroll,
        max_memory=max_memory,
        dtype=dtype,
    )


@mark_transform
def smoothgrad_sq(
    a: Callable[[jax.Array], Any],
    *,
    sigma: float = 0.15,
    n: int = 50,
    chunk: int | str | None = "auto",
    relative: bool = True,
    antithetic: bool = False,
    unroll: int | bool = 1,
    max_memory: int | None = None,
    dtype: Any = None,
) -> Callable[[jax.Array, jax.Array], Any]:
    """SmoothGrad-squared: the mean of the squared attribution over Gaussian perturbations.

    ``g(x, key) = (1/n) sum_i a(x + eps_i)**2`` with the noise of :func:`smoothgrad` (same key, same
    samples), so ``smoothgrad_sq = smoothgrad**2 + vargrad(ddof=0)``.

    Args:
        a: attribution function ``x -> array`` (or pytree of arrays).
        sigma: noise level, > 0 (relative to ``x.max() - x.min()`` unless ``relative=False``).
        n: number of noise samples, >= 1.
        chunk: samples per pass (bounds memory; ``"auto"`` from the memory budget, the default;
            ``None`` = all at once; remainder allowed).
        relative: whether ``sigma`` is a fraction of the input's range.
        antithetic: use pairs ``(z, -z)`` (``n`` even).
        unroll: loop unrolling over chunks, as in :func:`smoothgrad`.
        max_memory: budget in bytes for ``chunk="auto"``, as in :func:`smoothgrad`.
        dtype: samples' dtype, as in :func:`smoothgrad`.

    Returns:
        ``g(x, key)`` returning an array shaped like ``a(x)``.

    Raises:
        ArgumentError: as :func:`smoothgrad`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxattr as ja
        >>> g = ja.smoothgrad_sq(lambda x: 2 * x, sigma=1.0, n=4, relative=False, antithetic=True)
        >>> g(jnp.zeros(3), jax.random.key(1)).shape
        (3,)

    References:
        Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
        Networks", arXiv:1806.10758; Smilkov et al., arXiv:1706.03825.
    """
    return _noise_transform(
        a,
        sigma=sigma,
        n=n,
        chunk=chunk,
        relative=relative,
        antithetic=antithetic,
        stat="sq",
        ddof=0,
        name="smoothgrad_sq",
        unroll=unroll,
        max_memory=max_memory,
        dtype=dtype,
    )


@mark_transform
def vargrad(
    a: Callable[[jax.Array], Any],
    *,
    sigma: float = 0.15,
    n: int = 50,
    chunk: int | str | None = "auto",
    relative: bool = True,
    ddof: int = 1,
    unroll: int | bool = 1,
    max_memory: int | None = None,
    dtype: Any = None,
) -> Callable[[jax.Array, jax.Array], Any]:
    """VarGrad: the sample variance of an attribution over Gaussian perturbations of its input.

    ``g(x, key) = sum_i (a(x + eps_i) - m)**2 / (n - ddof)`` with ``m`` the sample mean and the
    noise of :func:`smoothgrad`. ``ddof=1`` (default) is unbiased; ``ddof=0`` matches Captum's
    NoiseTunnel. Accumulated with Welford's update in index order, so float32 keeps its accuracy
    when ``mean**2 / var`` is large (the one-pass ``mean(a**2) - mean(a)**2`` does not).

    Args:
        a: attribution function ``x -> array`` (or pytree of arrays).
        sigma: noise level, > 0 (relative to ``x.max() - x.min()`` unless ``relative=False``).
        n: number of noise samples, > ``ddof``.
        chunk: samples per pass (bounds memory; ``"auto"`` from the memory budget, the default;
            ``None`` = all at once; remainder allowed).
        relative: whether ``sigma`` is a fraction of the input's range.
        ddof: delta degrees of freedom, >= 0.
        unroll: loop unrolling over chunks, as in :func:`smoothgrad`.
        max_memory: budget in bytes for ``chunk="auto"``, as in :func:`smoothgrad`.
        dtype: samples' dtype, as in :func:`smoothgrad`.

    Returns:
        ``g(x, key)`` returning an array shaped like ``a(x)``.

    Raises:
        ArgumentError: as :func:`smoothgrad`, and ``n <= ddof`` or ``ddof < 0``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxattr as ja
        >>> f = lambda x: jnp.sum(x ** 3)  # gradient 3 x**2
        >>> g = ja.vargrad(ja.saliency(f), sigma=0.1, n=64, chunk=16)
        >>> g(jnp.ones((2, 2)), jax.random.key(0)).shape
        (2, 2)

    References:
        Adebayo, Gilmer, Goodfellow, Kim, "Local Explanation Methods for Deep Neural Networks Lack
        Sensitivity to Parameter Values", arXiv:1810.03307; Seo, Choe, Koo, Jeon, Kim, Jeon,
        "Noise-adding Methods of Saliency Map as Series of Higher Order Partial Derivative",
        arXiv:1806.03000.
    """
    ddof = check_int(ddof, "ddof", fn="vargrad", minimum=0)
    return _noise_transform(
        a,
        sigma=sigma,
        n=n,
        chunk=chunk,
        relative=relative,
        antithetic=False,
        stat="var",
        ddof=ddof,
        name="vargrad",
        unroll=unroll,
        max_memory=max_memory,
        dtype=dtype,
    )
