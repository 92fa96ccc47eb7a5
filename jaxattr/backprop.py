"""Gradient and modified-backprop attribution transforms: each maps ``f: x -> score`` to
``g: x -> attribution`` shaped like ``x``, like ``jax.grad``.

Modified backprop (Guided Backprop, DeconvNet, RectGrad) keeps the forward pass and swaps the
backward rule at every ReLU of ``f``, found by re-interpreting ``f``'s jaxpr (``jaxattr._jaxpr``):
the user's model is not changed. Transforms see ONE example; batch with ``jax.vmap`` (RectGrad's
threshold is per example and per layer, so an example's map never depends on the rest of the
batch). If your model needs a batch axis, call it on ``x[None]`` inside ``f``.

Modified-backprop maps are backward-only: they are not derivatives of anything, so ``jax.jvp``,
``jax.jacfwd``, ``jax.hessian`` or ``jax.grad`` of a map raise :class:`ForwardModeError`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._jaxpr import Rules, rewrite
from ._select import kth_largest, nearest_rank
from .errors import ArgumentError, AttributionWarning, ForwardModeError

__all__ = ["saliency", "guided_backprop", "deconvnet", "rectgrad", "times_input"]

Argnums = int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Validation shared by every transform.


def _argnums_tuple(argnums: Argnums) -> tuple[int, ...]:
    if isinstance(argnums, int):
        return (argnums,)
    if isinstance(argnums, Sequence) and argnums and all(isinstance(a, int) for a in argnums):
        return tuple(argnums)
    raise ArgumentError(f"argnums={argnums!r} must be an int or a non-empty sequence of ints")


def _check_inputs(args: tuple, argnums: Argnums, name: str) -> None:
    for i in _argnums_tuple(argnums):
        if i >= len(args):
            raise ArgumentError(f"{name}: argnums={argnums!r} but only {len(args)} arguments given")
        for leaf in jax.tree_util.tree_leaves(args[i]):
            dtype = jnp.result_type(leaf)
            if not jnp.issubdtype(dtype, jnp.floating):
                raise TypeError(
                    f"{name}: argument {i} has dtype {dtype}; attributions need real "
                    f"floating-point inputs (cast it, e.g. x.astype(jnp.float32))"
                )


def _check_score(out: Any, has_aux: bool, name: str) -> None:
    """``out``: the ShapeDtypeStruct pytree of ``f``'s output."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{name}: has_aux=True needs f to return a pair (score, aux)")
        out = out[0]
    shape = getattr(out, "shape", None)
    if shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"{name}: f must return a real floating-point scalar score (e.g. one logit); got "
            f"{jax.tree_util.tree_map(lambda s: f'{s.dtype}{list(s.shape)}', out)}. "
            "Select a class (logits[label]) or reduce the output first."
        )


def _backward_only(fun: Callable, name: str) -> Callable:
    """Wrap ``fun`` so any forward-mode (or higher-order) differentiation raises clearly."""

    @functools.wraps(fun)
    def wrapped(*args):
        inner = jax.custom_jvp(fun)

        def jvp(primals, tangents):
            raise ForwardModeError(
                f"{name} maps are backward-only: the backward rule at each ReLU is replaced, so "
                "the map is not the derivative of any function and cannot be differentiated "
                "(jax.jvp, jax.jacfwd, jax.hessian, jax.grad of the map). Differentiate "
                "jaxattr.saliency (the plain gradient) instead, or stop_gradient the map."
            )

        inner.defjvp(jvp)
        return inner(*args)

    return wrapped


def _modified_grad(f: Callable, rules: Rules, argnums: Argnums, has_aux: bool, name: str):
    argnums_t = _argnums_tuple(argnums)
    rewritten = rewrite(f, rules, name=name,
                        check_output=functools.partial(_check_score, has_aux=has_aux, name=name))
    grad_fn = jax.grad(rewritten, argnums=argnums, has_aux=has_aux)

    # jit inside: eager calls run one compiled program instead of dispatching the interpreter's
    # ops one by one; under an outer jit it is inlined. Checks run once per trace.
    @jax.jit
    def g(*args):
        _check_inputs(args, argnums_t, name)
        return grad_fn(*args)

    return functools.wraps(f)(_backward_only(g, name))


# ---------------------------------------------------------------------------------------------
# Backward rules at a ReLU: (x_in, a_out, g_out) -> g_in.  REFERENCE.md section 1.


def _guided_rule(x, a, g):
    return jnp.where(x > 0, jnp.maximum(g, 0), 0)


def _deconv_rule(x, a, g):
    return jnp.maximum(g, 0)


def _fixed_threshold_rule(tau: float):
    def rule(x, a, g):
        return jnp.where(a * g > tau, g, 0)

    return rule


def _percentile_rule(q: float, select: str):
    def rule(x, a, g):
        v = (a * g).astype(jnp.promote_types(g.dtype, jnp.float32))
        k = nearest_rank(v.size, q)
        if k == 0 and q < 100:
            warnings.warn(
                f"rectgrad: a rectified layer of shape {tuple(a.shape)} has only {a.size} units, "
                f"so q={q} lets no unit pass there (the map will be zero). Lower q or use tau=.",
                AttributionWarning,
                stacklevel=2,
            )
        tau = kth_largest(v, k, method=select)
        return jnp.where(v > tau, g, 0)

    return rule


# ---------------------------------------------------------------------------------------------
# Max-pool (proportional redistribution) and the padding trick.


def _prr_maxpool(*, window_dimensions, window_strides, padding, base_dilation, window_dilation,
                 **_unused):
    win = dict(window_dimensions=window_dimensions, window_strides=window_strides,
               padding=tuple(padding), base_dilation=base_dilation,
               window_dilation=window_dilation)

    def window_sum(x):
        return lax.reduce_window(x, np.zeros((), x.dtype), lax.add, **win)

    @jax.custom_vjp
    def pool(x):
        return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, **win)

    def fwd(x):
        return pool(x), x

    def bwd(x, g):
        s, spread = jax.vjp(window_sum, x)
        nonzero = s != 0
        ratio = jnp.where(nonzero, g / jnp.where(nonzero, s, 1), 0)
        return (x * spread(ratio)[0],)

    pool.defvjp(fwd, bwd)
    return pool


def _zero_border_gradient(y, spatial_dims: tuple[int, ...]):
    mask = jnp.ones((), y.dtype)
    for d in spatial_dims:
        size = y.shape[d]
        m = jnp.ones(size, y.dtype).at[0].set(0).at[size - 1].set(0)
        shape = [1] * y.ndim
        shape[d] = size
        mask = mask * m.reshape(shape)

    @jax.custom_vjp
    def ident(t):
        return t

    ident.defvjp(lambda t: (t, None), lambda _, g: (g * mask,))
    return ident(y)


# ---------------------------------------------------------------------------------------------
# Public transforms.


def saliency(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False) -> Callable:
    """The plain gradient of a scalar score: ``jax.grad`` with attribution-friendly checks.

    Args:
      f: function of one example returning a real scalar score (e.g. a logit).
      argnums: which positional argument(s) to attribute to, as in ``jax.grad``.
      has_aux: ``f`` returns ``(score, aux)``; the map is then returned as ``(map, aux)``.

    Returns:
      ``g`` with ``f``'s signature returning an array shaped like ``x``. Unlike the
      modified-backprop maps, saliency stays differentiable.

    Raises:
      TypeError: at trace time if the score is not a real scalar or the input is not floating.

    Example:
      >>> import jax.numpy as jnp, jaxattr as ja
      >>> ja.saliency(lambda x: jnp.sum(x ** 2))(jnp.array([1.0, -2.0])).tolist()
      [2.0, -4.0]

    References:
      Simonyan, Vedaldi, Zisserman 2013, arXiv:1312.6034.
    """
    argnums_t = _argnums_tuple(argnums)
    grad_fn = jax.grad(f, argnums=argnums, has_aux=has_aux)

    @functools.wraps(f)
    def g(*args):
        _check_inputs(args, argnums_t, "saliency")
        _check_score(jax.eval_shape(f, *args), has_aux, "saliency")
        return grad_fn(*args)

    return g


def guided_backprop(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False) -> Callable:
    """Guided Backpropagation: at every ReLU, ``R_in = where(x_in > 0, relu(R_out), 0)``.

    Args and Returns as :func:`saliency`; the map is backward-only (see module docs). Warns with
    :class:`AttributionWarning` if ``f`` has no ReLU.

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> w = jnp.array([[1.0, -1.0], [2.0, 1.0]])
      >>> f = lambda x: jnp.sum(jnp.array([1.0, -3.0]) * jax.nn.relu(w @ x))
      >>> ja.guided_backprop(f)(jnp.array([1.0, 0.5])).tolist()  # relu(R) = [1, 0], then w.T
      [1.0, -1.0]

    References:
      Springenberg, Dosovitskiy, Brox, Riedmiller 2014, arXiv:1412.6806.
    """
    return _modified_grad(f, Rules(relu=_guided_rule), argnums, has_aux, "guided_backprop")


def deconvnet(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False) -> Callable:
    """DeconvNet: at every ReLU, ``R_in = relu(R_out)`` (ignores the forward activation).

    Args and Returns as :func:`saliency`; the map is backward-only (see module docs).

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> f = lambda x: jnp.sum(jnp.array([2.0, -1.0]) * jax.nn.relu(x))
      >>> ja.deconvnet(f)(jnp.array([-1.0, 3.0])).tolist()  # ignores that unit 0 is dead
      [2.0, 0.0]

    References:
      Zeiler, Fergus 2014, arXiv:1311.2901.
    """
    return _modified_grad(f, Rules(relu=_deconv_rule), argnums, has_aux, "deconvnet")


def rectgrad(
    f: Callable,
    *,
    q: float | None = None,
    tau: float | None = None,
    maxpool: str = "winner",
    padding_trick: bool = False,
    argnums: Argnums = 0,
    has_aux: bool = False,
    select: str = "radix",
) -> Callable:
    """Rectified Gradient: at every ReLU, ``R_in = where(a * R_out > tau, R_out, 0)``.

    ``a`` is the ReLU's output and ``R_out`` the incoming gradient; the comparison is strict and
    signed. ``tau`` is the ``q``-th percentile of ``a * R_out`` over all units of that layer of
    ONE example, 'nearest' as TensorFlow computes it (the official code):
    ``sort_desc(v)[round_half_even((n - 1) * (1 - q / 100))]``, so with distinct values exactly
    that many units pass. This equals ``numpy.percentile(v, q, method="nearest")`` except when
    ``(n - 1) * q / 100`` is exactly half-way between two ranks, where the two conventions round
    to different neighbours. The threshold is found by an exact radix selection, not a sort.

    The paper's final attribution is gradient times input: ``times_input(rectgrad(f))``.

    Args:
      f: function of one example returning a real scalar score (the max logit in the paper).
      q: percentile in [0, 100] (default 98 when ``tau`` is not given). ``q=100`` gives zeros;
        ``q=0`` is NOT the plain gradient (dead units pass when the threshold is negative).
      tau: fixed threshold instead of a percentile (``tau=0`` equals Guided Backprop on ReLU nets).
      maxpool: ``"winner"`` (ordinary max-pool gradient) or ``"prr"`` (proportional
        redistribution ``R_i = x_i / sum_window(x) * R_out``, as in the official code).
      padding_trick: zero the outer one-pixel ring of the gradient at the output of each
        SAME-padded convolution (the official code's border-artefact fix). Default False.
      argnums, has_aux: as in ``jax.grad``.
      select: percentile algorithm, ``"radix"`` (exact, default), ``"top_k"`` or ``"sort"``
        (also exact; for benchmarking).

    Returns:
      ``g`` with ``f``'s signature returning a backward-only map shaped like ``x``.

    Raises:
      ArgumentError: q outside [0, 100], both q and tau, unknown maxpool.
      TypeError: non-scalar score or non-floating input (trace time).
      ForwardModeError: if the map is differentiated (jvp, jacfwd, hessian, grad).

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> w = jnp.linspace(-1.0, 1.0, 120).reshape(40, 3)
      >>> f = lambda x: jnp.sum(jax.nn.relu(w @ x) * jnp.linspace(-1.0, 2.0, 40))
      >>> m = ja.rectgrad(f, q=90.0)(jnp.array([0.3, -0.2, 0.9]))
      >>> m.shape
      (3,)
      >>> x = jnp.ones((4, 3))
      >>> jax.jit(jax.vmap(ja.times_input(ja.rectgrad(f))))(x).shape
      (4, 3)

    References:
      Kim, Seo, Jeon, Koo, Choe, Jeon 2019, "Why are Saliency Maps Noisy? Cause of and Solution
      to Noisy Saliency Maps", arXiv:1902.04893.
    """
    if q is not None and tau is not None:
        raise ArgumentError(f"rectgrad: give q or tau, not both (got q={q}, tau={tau})")
    if tau is not None:
        if not (isinstance(tau, int | float) and math.isfinite(tau)):
            raise ArgumentError(f"rectgrad: tau={tau!r} must be a finite number")
        rule = _fixed_threshold_rule(float(tau))
    else:
        q = 98.0 if q is None else q
        if not (isinstance(q, int | float) and 0.0 <= q <= 100.0):
            raise ArgumentError(f"rectgrad: q={q!r} must be a number in [0, 100]")
        if select not in ("radix", "top_k", "sort"):
            raise ArgumentError(f"rectgrad: select={select!r} must be 'radix', 'top_k' or 'sort'")
        rule = _percentile_rule(float(q), select)
    if maxpool not in ("winner", "prr"):
        raise ArgumentError(f"rectgrad: maxpool={maxpool!r} must be 'winner' or 'prr'")
    rules = Rules(
        relu=rule,
        maxpool=_prr_maxpool if maxpool == "prr" else None,
        same_conv_output=_zero_border_gradient if padding_trick else None,
    )
    return _modified_grad(f, rules, argnums, has_aux, "rectgrad")


def times_input(a: Callable, *, argnums: int = 0, has_aux: bool = False) -> Callable:
    """``x -> a(x) * x``: gradient-times-input from any attribution function ``a``.

    Args:
      a: attribution function (e.g. ``saliency(f)``, ``rectgrad(f)``).
      argnums: which positional argument multiplies the map.
      has_aux: ``a`` returns ``(map, aux)``; then ``(map * x, aux)`` is returned.

    Example:
      >>> import jax.numpy as jnp, jaxattr as ja
      >>> ja.times_input(ja.saliency(lambda x: jnp.sum(x ** 2)))(jnp.array([1.0, -2.0])).tolist()
      [2.0, 8.0]
    """

    @functools.wraps(a)
    def g(*args: Any):
        out = a(*args)
        if has_aux:
            m, aux = out
            return m * args[argnums], aux
        return out * args[argnums]

    return g
