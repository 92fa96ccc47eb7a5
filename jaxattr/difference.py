"""Difference-from-reference attributions: DeepLIFT (rescale rule) and DeepLIFT-SHAP.

DeepLIFT explains ``f(x) - f(x0)`` for a baseline ``x0``: it back-propagates *multipliers*
``m = (y - y0) / (z - z0)`` (output difference over input difference) through each elementwise
nonlinearity instead of its derivative, keeps the gradient of operations linear in the input,
and returns ``(x - x0) * m``. Summation-to-delta holds: the attribution sums to
``f(x) - f(x0)`` (where every rule is exact: up to the ``eps`` gradient fallback).

Both transforms evaluate ``f`` once on stacked rows -- the input repeated ``K`` times and the
``K`` baselines -- by re-interpreting ``f``'s jaxpr (the rule set ``jaxattr._rules_deeplift``;
which operations have a rule, and which raise
:class:`~jaxattr.errors.UnsupportedPrimitiveError`, is documented there). The model is not
changed; its parameters are closed over (or passed as extra arguments), and only the attributed
argument is stacked.

Calling convention (as ``jax.grad``): ``g(*args, **kwargs)`` calls ``f(*args, **kwargs)``; the
``argnums`` argument(s) are attributed to, the others are passed through (array leaves traced,
hashable non-arrays static). ``g`` explains ONE example: batch with ``jax.vmap``. The maps are
backward-only (custom rules): differentiating them raises :class:`~jaxattr.errors.ForwardModeError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._calling import jit_with_static, mark_map, mark_transform
from ._checks import check_bool, check_choice, check_dtype, check_real, fail, fail_type
from ._jaxpr import _REPORTS, Rules, _Interpreter, _Val, cpu_loop_body
from ._rules_deeplift import MAXPOOL_RULES, DeepLiftOptions
from .backprop import (
    _argnums_tuple,
    _backward_only,
    _check_inputs,
    _check_score,
    _check_score_fn,
)

__all__ = ["deeplift", "deeplift_shap"]

Argnums = int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Baselines.


def _is_arraylike(leaf: Any) -> bool:
    try:
        dtype = jnp.result_type(leaf)
    except TypeError:
        return False
    return jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)


def _check_reference(value: Any, name: str, fn: str, expected: str) -> Any:
    """``value``'s leaves as JAX arrays (checked numeric); its structure kept."""
    leaves, treedef = jax.tree_util.tree_flatten(value)
    if not leaves:
        fail(fn, name, value, "holds no array", expected)
    for leaf in leaves:
        if not _is_arraylike(leaf):
            fail_type(fn, name, leaf, f"has type {type(leaf).__name__}", expected)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(leaf) for leaf in leaves])


def _match(ref: Any, diff: tuple, single: bool, name: str, fn: str, expected: str) -> list:
    """The leaves of ``ref`` in the order of ``diff``'s leaves (``ref`` is for one argument if
    ``single``, else a sequence with one entry per attributed argument)."""
    target = diff[0] if single else diff
    if not single and isinstance(ref, list):
        ref = tuple(ref)
    try:
        return jax.tree_util.tree_structure(target).flatten_up_to(ref)
    except (ValueError, TypeError):
        what = "x" if single else f"the {len(diff)} attributed arguments"
        fail(fn, name, ref, f"does not have the structure of {what}", expected)
        raise AssertionError from None  # unreachable


def _broadcast(b: jax.Array, x: jax.Array, lead: tuple, value: Any, name: str, fn: str,
               expected: str) -> jax.Array:
    """``b`` (shape ``lead + s``, ``s`` broadcastable to ``x.shape``) as ``lead + x.shape`` in
    ``x``'s dtype."""
    shape = tuple(jnp.shape(b))[len(lead):]
    try:
        ok = jnp.broadcast_shapes(shape, jnp.shape(x)) == tuple(jnp.shape(x))
    except ValueError:
        ok = False
    if not ok:
        fail(fn, name, value, f"has shape {tuple(jnp.shape(b))}",
             f"{expected} (x has shape {tuple(jnp.shape(x))})")
    return jnp.broadcast_to(jnp.asarray(b).astype(jnp.result_type(x)), (*lead, *jnp.shape(x)))


def _difference(f: Callable, name: str, *, refs: Callable[[tuple], list], pairs: int,
                argnums: Argnums, has_aux: bool, eps: float, maxpool: str,
                dtype: Any) -> Callable:
    f = _check_score_fn(f, name)
    argnums_t = _argnums_tuple(argnums, name)
    has_aux = check_bool(has_aux, "has_aux", fn=name)
    eps = check_real(eps, "eps", fn=name, lo=0.0)
    maxpool = check_choice(maxpool, "maxpool", MAXPOOL_RULES, fn=name)
    rules = Rules(dtype=check_dtype(dtype, "dtype", fn=name),
                  options=(DeepLiftOptions(pairs=pairs, eps=eps, maxpool=maxpool, name=name),))
    k = pairs

    def compute(args: tuple, kwargs: dict) -> Any:
        _check_inputs(args, argnums_t, name)
        diff = tuple(args[i] for i in argnums_t)
        x_leaves, treedef = jax.tree_util.tree_flatten(diff)
        b_leaves = refs(diff)  # each (K, *x.shape), x's dtype

        def score(*leaves):
            full = list(args)
            for i, v in zip(argnums_t, jax.tree_util.tree_unflatten(treedef, leaves),
                            strict=True):
                full[i] = v
            return f(*full, **kwargs)

        closed, out_shape = jax.make_jaxpr(score, return_shape=True)(*x_leaves)
        _check_score(out_shape, has_aux, name, x=diff[0])
        out_leaves = jax.tree_util.tree_leaves(out_shape)

        def stacked_score(*stacked):
            interp = _Interpreter(rules)
            outs = interp.eval_closed(closed, [_Val(s) for s in stacked])
            for report in _REPORTS:
                report(interp.stats, rules, name)
            s0 = jnp.asarray(outs[0].value).astype(out_leaves[0].dtype)
            total = s0 * k if outs[0].free else jnp.sum(s0[:k])
            if not has_aux:
                return total
            aux = [jnp.asarray(o.value if o.free else o.value[0]).astype(s.dtype)
                   for o, s in zip(outs[1:], out_leaves[1:], strict=True)]
            return total, jax.tree_util.tree_unflatten(
                jax.tree_util.tree_structure(out_shape[1]), aux)

        stacked = [jnp.concatenate([jnp.broadcast_to(x[None], (k, *jnp.shape(x))), b])
                   for x, b in zip(x_leaves, b_leaves, strict=True)]
        grad = cpu_loop_body(jax.grad(stacked_score, argnums=tuple(range(len(stacked))),
                                      has_aux=has_aux))
        out = grad(*stacked)
        grads, aux = out if has_aux else (out, None)
        maps = []
        for x, b, m in zip(x_leaves, b_leaves, grads, strict=True):
            acc = jnp.promote_types(jnp.result_type(x), jnp.float32)
            contrib = (x[None].astype(acc) - b.astype(acc)) * m[:k].astype(acc)
            maps.append(jnp.mean(contrib, axis=0).astype(jnp.result_type(x)))
        result = jax.tree_util.tree_unflatten(treedef, maps)
        result = result[0] if isinstance(argnums, int) else result
        return (result, aux) if has_aux else result

    g = jit_with_static(compute, fn=name, dynamic_argnums=argnums_t,
                        wrap=functools.partial(
                            _backward_only, name=name, why="DeepLIFT replaces the derivative of "
                            "every nonlinearity by a multiplier"))
    g = functools.wraps(f)(g)
    return mark_map(g)


# ---------------------------------------------------------------------------------------------
# Public transforms.


@mark_transform
def deeplift(
    f: Callable,
    baseline: Any = None,
    *,
    argnums: Argnums = 0,
    has_aux: bool = False,
    eps: float = 1e-10,
    maxpool: str = "deeplift",
    dtype: Any = None,
) -> Callable:
    """DeepLIFT with the rescale rule: ``(x - x0) * m``, ``m`` the DeepLIFT multipliers.

    At every elementwise nonlinearity ``y = h(z)`` of ``f`` (``jax.nn.relu`` and the other
    ``jax.nn`` activations, ``tanh``, ``exp``, ``max(z, c)``...) the derivative is replaced by
    ``(h(z) - h(z0)) / (z - z0)``, ``z0`` the same value when ``f`` runs on the baseline
    (``h'(z)`` where ``|z - z0| < eps``, as Captum); max-pooling uses Captum's max-pool rule;
    operations linear in the input keep their gradient. The attribution satisfies
    summation-to-delta: ``sum(deeplift(f, x0)(x)) = f(x) - f(x0)``. This is Captum's
    ``DeepLift(model).attribute(x, baselines=x0, target=t)`` (``multiply_by_inputs=True``)
    with ``f = lambda x: model(x)[t]``.

    What has a rule and what raises is listed in ``jaxattr._rules_deeplift``: a product of two
    values that depend on the input (``x * x``, attention), a softmax or normalisation layer
    over input-dependent values, ``reduce_max``, a step function of the input, a loop holding a
    nonlinearity raise :class:`~jaxattr.errors.UnsupportedPrimitiveError` naming the primitive
    and your source line.

    Args:
      f: function of one example returning a real scalar score (e.g. one logit).
      baseline: the reference ``x0``: ``None`` (zeros, the default), an array broadcastable to
        ``x`` (a scalar included), or a function ``x -> x0`` (called on the attributed
        argument, or on all of them with a sequence ``argnums``). With a sequence ``argnums``,
        an array baseline is a sequence with one entry per attributed argument.
      argnums: which positional argument(s) to attribute to, as in ``jax.grad``.
      has_aux: ``f`` returns ``(score, aux)``; the map is returned as ``(map, aux)``, ``aux``
        evaluated at ``x``.
      eps: where ``|z - z0| < eps`` the gradient replaces the multiplier (Captum's 1e-10).
      maxpool: ``"deeplift"`` (default): Captum's max-pool rule (the argmax of ``x``'s window
        gets ``g (max(y, y0) - y0)``, the argmax of ``x0``'s window ``g (y - max(y, y0))``,
        divided by ``x - x0``); ``"gradient"``: the ordinary max-pool gradient (what Captum
        0.9.0 applies when a ``MaxPool`` module directly consumes a ``ReLU`` module's output).
      dtype: compute dtype (e.g. ``jnp.bfloat16``), as in :func:`jaxattr.saliency`.

    Returns:
      ``g`` with ``f``'s signature returning the attribution shaped like ``x`` (a tuple for a
      sequence ``argnums``), in ``x``'s dtype, or ``(attribution, aux)``. Compiled once per
      static signature; backward-only (see module docs).

    Raises:
      ArgumentError: bad ``argnums``, ``eps`` < 0, unknown ``maxpool``; at call time, a baseline
        not broadcastable to ``x``.
      ArgumentTypeError: (also a TypeError) ``f`` not callable, a non-numeric baseline; at call
        time a non-scalar score or a non-floating input.
      UnsupportedPrimitiveError: at trace time, an operation with no DeepLIFT rule.

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> f = lambda x: jax.nn.relu(x[0] + x[1] - 1.0)
      >>> ja.deeplift(f)(jnp.array([1.0, 1.0])).tolist()  # sums to f(x) - f(0) = 1
      [0.5, 0.5]
      >>> ja.deeplift(f, baseline=0.5)(jnp.array([1.0, 1.0])).tolist()  # f(x0) = 0 again
      [0.5, 0.5]

    References:
      Shrikumar, Greenside, Kundaje 2017, arXiv:1704.02685; Ancona et al. 2018,
      arXiv:1711.06104 (the rescale rule as a modified gradient).
    """
    name = "deeplift"
    expected = ("None (zeros), an array broadcastable to x, or a function x -> baseline")
    single = isinstance(argnums, int)
    if baseline is not None and not callable(baseline):
        baseline = _check_reference(baseline, "baseline", name, expected)

    def refs(diff: tuple) -> list:
        x_leaves = jax.tree_util.tree_leaves(diff)
        if baseline is None:
            return [jnp.zeros((1, *jnp.shape(x)), jnp.result_type(x)) for x in x_leaves]
        value = baseline(*diff) if callable(baseline) else baseline
        if callable(baseline):
            value = _check_reference(value, "baseline(x)", name, expected)
        b_leaves = _match(value, diff, single, "baseline", name, expected)
        return [_broadcast(b, x, (), value, "baseline", name, expected)[None]
                for b, x in zip(b_leaves, x_leaves, strict=True)]

    return _difference(f, name, refs=refs, pairs=1, argnums=argnums, has_aux=has_aux, eps=eps,
                       maxpool=maxpool, dtype=dtype)


@mark_transform
def deeplift_shap(
    f: Callable,
    baselines: Any,
    *,
    argnums: Argnums = 0,
    has_aux: bool = False,
    eps: float = 1e-10,
    maxpool: str = "deeplift",
    dtype: Any = None,
) -> Callable:
    """DeepLIFT-SHAP: the mean of the DeepLIFT attributions over ``K`` baselines.

    ``DLS(x) = 1/K sum_k (x - b_k) * m(x, b_k)``, with the multipliers of :func:`deeplift` for
    each (input, baseline) pair; all ``2K`` rows are evaluated in one pass. It sums to
    ``f(x) - mean_k f(b_k)``. This is Captum's ``DeepLiftShap(model).attribute(x,
    baselines=B, target=t)`` (which needs ``K > 1``; here ``K = 1`` is :func:`deeplift`).
    Memory grows with ``K``: for many baselines, average several calls over chunks of them.

    Args:
      f: function of one example returning a real scalar score.
      baselines: an array of shape ``(K, *s)``, ``K >= 1`` baselines each broadcastable to
        ``x`` (typically ``K`` samples from the data); with a sequence ``argnums`` a sequence
        of such arrays, one per attributed argument, with the same ``K``.
      argnums, has_aux, eps, maxpool, dtype: as in :func:`deeplift`.

    Returns:
      ``g`` with ``f``'s signature returning the attribution shaped like ``x``.

    Raises:
      ArgumentError: ``baselines`` without a leading axis of ``K >= 1``, leaves with different
        ``K``; at call time, baselines whose trailing shape does not broadcast to ``x``. Others
        as :func:`deeplift`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> f = lambda x: jax.nn.relu(x[0] + x[1] - 1.0)
      >>> bs = jnp.array([[0.0, 0.0], [1.0, 0.5]])  # f(b) = 0 and 0.5
      >>> a = ja.deeplift_shap(f, bs)(jnp.array([1.0, 1.0]))
      >>> a.tolist(), float(a.sum())  # f(x) - mean_k f(b_k) = 1 - 0.25
      ([0.25, 0.5], 0.75)

    References:
      Lundberg, Lee 2017, arXiv:1705.07874 (DeepSHAP); Shrikumar et al. 2017, arXiv:1704.02685.
    """
    name = "deeplift_shap"
    expected = "an array of K >= 1 baselines, shaped (K, *x.shape)"
    single = isinstance(argnums, int)
    if baselines is None:
        fail_type(name, "baselines", baselines, "is missing", expected,
                  "for a zero baseline use deeplift(f)")
    if callable(baselines) and not hasattr(baselines, "shape"):
        fail_type(name, "baselines", baselines, "is a function", expected)
    baselines = _check_reference(baselines, "baselines", name, expected)
    leaves = jax.tree_util.tree_leaves(baselines)
    for leaf in leaves:
        if jnp.ndim(leaf) == 0:
            fail(name, "baselines", leaf, "is a scalar (no leading axis of baselines)", expected,
                 "for one baseline use deeplift(f, baseline) or baselines[None]")
    ks = {int(jnp.shape(leaf)[0]) for leaf in leaves}
    if len(ks) > 1:
        fail(name, "baselines", baselines, f"hold different numbers of baselines {sorted(ks)}",
             expected)
    (k,) = ks
    if k < 1:
        fail(name, "baselines", leaves[0], "holds 0 baselines (a leading axis of size 0)",
             expected)

    def refs(diff: tuple) -> list:
        x_leaves = jax.tree_util.tree_leaves(diff)
        b_leaves = _match(baselines, diff, single, "baselines", name, expected)
        out = []
        for b, x in zip(b_leaves, x_leaves, strict=True):
            if jnp.ndim(b) != jnp.ndim(x) + 1:
                fail(name, "baselines", b, f"has shape {tuple(jnp.shape(b))}",
                     f"{expected} (x has shape {tuple(jnp.shape(x))})",
                     "for one baseline use baselines[None]")
            out.append(_broadcast(b, x, (k,), b, "baselines", name, expected))
        return out

    return _difference(f, name, refs=refs, pairs=k, argnums=argnums, has_aux=has_aux, eps=eps,
                       maxpool=maxpool, dtype=dtype)
