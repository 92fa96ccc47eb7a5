"""Path methods: Integrated Gradients with Riemann and Gauss-Legendre quadrature, chunked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from ._budget import auto_chunk, check_max_memory, vmap_batch
from ._calling import is_map_function, jit_with_static, mark_map, mark_transform
from ._checks import (
    check_bool,
    check_callable,
    check_choice,
    check_dtype,
    check_floating,
    check_int,
    fail,
    fail_type,
)
from .noise import _acc_dtype, _check_chunk, _fold_chunks

__all__ = ["integrated_gradients"]

_METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)


def _quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha_k`` in [0, 1] and weights ``w_k`` (summing to 1), float64.

    Node placement follows Captum's ``approximation_methods``; the trapezoid rule is the correct
    one (end weights ``1 / (2 (steps - 1))``), not Captum's, whose weights sum to ``1 - 1/steps``.
    """
    if method == "gausslegendre":
        t, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (t + 1.0), 0.5 * w
    if method == "riemann_trapezoid":
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), w
    w = np.full(steps, 1.0 / steps)
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / steps, steps), w
    if method == "riemann_right":
        return np.linspace(1.0 / steps, 1.0, steps), w
    if method == "riemann_middle":
        return np.linspace(0.5 / steps, 1.0 - 0.5 / steps, steps), w
    raise AssertionError(method)  # checked by the caller


def baseline_like(baseline: Any, x: jax.Array, fn: str) -> jax.Array:
    """The path's start ``x'`` shaped like ``x``: zeros (``None``), a scalar, or an array shaped
    like ``x``; any other shape is an error of ``fn``."""
    if baseline is None:
        return jnp.zeros_like(x)
    b = jnp.asarray(baseline)
    if b.shape not in ((), x.shape):
        fail(fn, "baseline", baseline, f"has shape {b.shape}",
             f"a scalar or an array shaped like x, {x.shape}")
    return jnp.broadcast_to(b.astype(x.dtype), x.shape)


@mark_transform
def integrated_gradients(
    f: Callable[[jax.Array], jax.Array],
    *,
    baseline: Any = None,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk: int | str | None = "auto",
    return_delta: bool = False,
    gradient: Callable[[Callable], Callable] | None = None,
    max_memory: int | None = None,
    dtype: Any = None,
) -> Callable[[jax.Array], Any]:
    """Integrated Gradients: the gradient averaged along the straight path from a baseline.

    ``IG_i(x) = (x_i - x'_i) * int_0^1 d_i f(x' + t (x - x')) dt``, with the integral replaced by
    a ``steps``-point quadrature ``sum_k w_k grad(x' + alpha_k (x - x'))``. Nodes follow Captum
    (``gausslegendre``: ``numpy.polynomial.legendre.leggauss`` mapped to [0, 1]; ``riemann_left``
    ``k/steps``; ``riemann_right`` ``(k+1)/steps``; ``riemann_middle`` ``(k+1/2)/steps``;
    ``riemann_trapezoid`` ``k/(steps-1)``), but the trapezoid weights are the correct ones (summing
    to 1) and nodes keep the input's precision. Completeness: ``sum_i IG_i = f(x) - f(x')`` up to
    the quadrature error ``delta``, which for a smooth ``f`` decreases as ``O(1/steps)`` (left,
    right), ``O(1/steps^2)`` (middle, trapezoid), and exponentially for ``gausslegendre`` (exact
    when the path integrand is a polynomial of degree <= ``2 steps - 1``). IG of a linear function
    is exact for every method. On ReLU networks the integrand is only piecewise smooth, so every
    method is typically ``O(1/steps)``.

    Calling convention: ``g(x, *args, **kwargs)`` integrates ``f(., *args, **kwargs)`` along the
    path; the extra arguments (a label...) are passed through as in ``jax.grad``. Batch with
    ``jax.vmap``; a per-example baseline:
    ``jax.vmap(lambda x, b: integrated_gradients(f, baseline=b)(x))(xs, bs)``.

    Args:
        f: scalar function ``x -> score`` of one example.
        baseline: the path's start ``x'``, an array shaped like ``x`` or a scalar; ``None`` is 0.
        steps: number of quadrature nodes, >= 1 (>= 2 for ``riemann_trapezoid``).
        method: one of ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"``, ``"riemann_trapezoid"``.
        chunk: gradients evaluated per pass (bounds memory; ``"auto"``, the default: as many as
            fit in ``max_memory`` or the device's free memory, see :func:`jaxattr.smoothgrad`;
            ``None`` = all ``steps`` at once; a chunk that does not divide ``steps`` is allowed,
            the last pass is smaller).
        return_delta: also return the completeness error ``f(x) - f(x') - sum(IG)``.
        gradient: a gradient transform ``f -> (x -> array shaped like x)`` used instead of
            ``jax.grad``, e.g. ``jaxattr.guided_backprop`` or ``jaxattr.rectgrad``.
        max_memory: budget in bytes for ``chunk="auto"``.
        dtype: compute dtype of the gradients (e.g. ``jnp.bfloat16``), passed to ``gradient``
            (a jaxattr transform; default :func:`jaxattr.saliency`); the path sum is float32 and
            the attribution is returned in ``x``'s dtype.

    Returns:
        ``g(x)`` returning the attribution shaped like ``x``, or ``(attribution, delta)`` with
        ``return_delta=True``.

    Raises:
        ArgumentError: ``steps`` < 1 (< 2 for the trapezoid rule), unknown ``method``, ``chunk`` < 1
            or > ``steps``, a baseline whose shape is neither ``()`` nor ``x.shape``.
        ArgumentTypeError: (also a TypeError) ``f`` or ``gradient`` not callable, ``gradient`` a
            map function (``ja.rectgrad(f)``) instead of a transform (``ja.rectgrad``), integer
            ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxattr as ja
        >>> f = lambda x: jnp.sum(x ** 3)
        >>> ig = ja.integrated_gradients(f, steps=4, return_delta=True)
        >>> attr, delta = ig(jnp.array([1.0, 2.0]))
        >>> print(jnp.round(attr, 4), bool(abs(delta) < 1e-5))  # Gauss-Legendre: exact for cubics
        [1. 8.] True

    References:
        Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", arXiv:1703.01365.
    """
    name = "integrated_gradients"
    f = check_callable(f, "f", fn=name, expected="a scalar score function f(x, *args)")
    method = check_choice(method, "method", _METHODS, fn=name)
    minimum = 2 if method == "riemann_trapezoid" else 1
    hint = " for method='riemann_trapezoid'" if minimum == 2 else ""
    steps = check_int(steps, "steps", fn=name, minimum=minimum, hint=hint)
    chunk = _check_chunk(chunk, steps, name, "steps")
    max_memory = check_max_memory(max_memory, name)
    return_delta = check_bool(return_delta, "return_delta", fn=name)
    dtype = check_dtype(dtype, "dtype", fn=name)
    if gradient is None and dtype is None:
        grad_fn = jax.grad(f)
    elif gradient is None:
        from .backprop import saliency

        grad_fn = saliency(f, dtype=dtype)
    else:
        expected = "a gradient transform f -> map function, such as ja.rectgrad"
        if is_map_function(gradient):
            fail_type(name, "gradient", gradient, "is a map function (a transform already "
                      "applied to a score function)", expected,
                      "pass the transform itself: gradient=ja.rectgrad, or "
                      "functools.partial(ja.rectgrad, q=95)")
        gradient = check_callable(gradient, "gradient", fn=name, expected=expected,
                                  fix="pass the transform itself, e.g. gradient=ja.rectgrad, "
                                  "not gradient=ja.rectgrad(f)(x)")
        # with dtype, gradient is a jaxattr transform: it takes dtype= (see Args)
        grad_fn = (cast(Callable[..., Callable], gradient)(f, dtype=dtype) if dtype is not None
                   else gradient(f))
    alphas_np, weights_np = _quadrature(method, steps)

    def compute(args: tuple, kwargs: dict) -> Any:
        batch, x, rest = args[0], args[1], args[2:]
        x0 = baseline_like(baseline, x, name)
        acc = _acc_dtype(x.dtype)
        alphas = jnp.asarray(alphas_np, x.dtype)
        weights = jnp.asarray(weights_np, acc)
        diff = x - x0
        grad_at = lambda p: grad_fn(p, *rest, **kwargs)
        grads_at = jax.vmap(grad_at)
        c = (auto_chunk(grad_at, x, steps, max_memory=max_memory, batch=batch, fn=name)
             if chunk == "auto" else chunk)

        def step(total, idx):
            points = x0[None] + alphas[idx].reshape((-1,) + (1,) * x.ndim) * diff[None]
            grads = grads_at(points)
            if grads.shape != points.shape:
                fail(name, "gradient", gradient, f"returns maps of shape {grads.shape[1:]}",
                     f"maps shaped like x, {x.shape}")
            return total + jnp.tensordot(weights[idx], grads.astype(acc), axes=1)

        mean_grad = _fold_chunks(step, jnp.zeros(x.shape, acc), steps, c)
        attr = (diff.astype(acc) * mean_grad).astype(x.dtype)
        if not return_delta:
            return attr
        score = lambda p: f(p, *rest, **kwargs)
        delta = score(x) - score(x0) - jnp.sum(attr, dtype=acc)
        return attr, delta

    run = jit_with_static(compute, fn=name, dynamic_argnums=(1,))

    def g(x: jax.Array, *args: Any, **kwargs: Any) -> Any:
        batch = vmap_batch(x) if chunk == "auto" else 1
        return run(batch, check_floating(x, "x", fn=name), *args, **kwargs)

    g.__name__ = f"integrated_gradients_{getattr(f, '__name__', 'f')}"
    return mark_map(g)
