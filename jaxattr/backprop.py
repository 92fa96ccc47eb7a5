"""Gradient and modified-backprop attribution transforms: each maps ``f: x -> score`` to
``g: x -> attribution`` shaped like ``x``, like ``jax.grad``.

Modified backprop (Guided Backprop, DeconvNet, RectGrad) keeps the forward pass and swaps the
backward rule at every ReLU of ``f``, found by re-interpreting ``f``'s jaxpr (``jaxattr._jaxpr``):
the user's model is not changed. Transforms see ONE example; batch with ``jax.vmap`` (RectGrad's
threshold is per example and per layer, so an example's map never depends on the rest of the
batch). If your model needs a batch axis, call it on ``x[None]`` inside ``f``.

Calling convention (as ``jax.grad``): the map function ``g = transform(f)`` is called as
``g(*args, **kwargs)`` and calls ``f(*args, **kwargs)``; the ``argnums`` arguments are attributed
to, the others are passed through. Array arguments are traced (a new label does not recompile);
Python numbers, strings and other hashable non-arrays are static (``f`` may branch on them;
equal values reuse the compiled program). Explaining a class: ``f = lambda x, y: model(x)[y]``,
then ``jax.vmap(rectgrad(f))(xs, ys)`` compiles once for all labels.

Modified-backprop maps are backward-only: they are not derivatives of anything, so ``jax.jvp``,
``jax.jacfwd``, ``jax.hessian`` or ``jax.grad`` of a map raise
:class:`~jaxattr.errors.ForwardModeError`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._calling import is_transform, jit_with_static, mark_map, mark_transform, split
from ._checks import (
    check_bool,
    check_callable,
    check_choice,
    check_dtype,
    check_int,
    check_real,
    fail,
    fail_type,
)
from ._jaxpr import Rules, cpu_loop_body, rewrite
from ._select import METHODS as _SELECT_METHODS
from ._select import kth_largest, nearest_rank
from .errors import ForwardModeError, warn

__all__ = ["saliency", "guided_backprop", "deconvnet", "rectgrad", "times_input"]

Argnums = int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Validation shared by every transform.

def _check_score_fn(f: Any, fn: str) -> Callable:
    expected = "a function of one example returning a real scalar score (e.g. one logit)"
    if is_transform(f):
        fail_type(fn, "f", f, "is a jaxattr transform, not a score function", expected,
                  f"compose transforms by applying them to f: {fn}(f)")
    return check_callable(f, "f", fn=fn, expected=expected)


def _argnums_tuple(argnums: Argnums, fn: str) -> tuple[int, ...]:
    if isinstance(argnums, Sequence) and not isinstance(argnums, str) and argnums:
        return tuple(check_int(a, "argnums", fn=fn, minimum=0) for a in argnums)
    if isinstance(argnums, Sequence) and not isinstance(argnums, str):
        fail(fn, "argnums", argnums, "is empty", "an int or a non-empty sequence of ints")
    return (check_int(argnums, "argnums", fn=fn, minimum=0),)


def _check_inputs(args: tuple, argnums: tuple[int, ...], name: str) -> None:
    for i in argnums:
        if i >= len(args):
            fail(name, "argnums", argnums[0] if len(argnums) == 1 else argnums,
                 f"refers to argument {i} but the map was called with {len(args)} positional "
                 "argument(s)", "argnums < the number of positional arguments")
        for leaf in jax.tree_util.tree_leaves(args[i]):
            dtype = jnp.result_type(leaf)
            if not jnp.issubdtype(dtype, jnp.floating):
                fail_type(name, f"argument {i}", leaf, f"has dtype {dtype}",
                          "a real floating-point input to attribute to",
                          "cast it, e.g. x.astype(jnp.float32)")


def _check_score(out: Any, has_aux: bool, name: str, x: Any = None) -> None:
    """``out``: the ShapeDtypeStruct pytree of ``f``'s output; ``x`` the attributed input."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            fail_type(name, "has_aux", True, "but f does not return a pair",
                      "f to return (score, aux) with has_aux=True")
        out = out[0]
    shape = getattr(out, "shape", None)
    if shape == () and jnp.issubdtype(out.dtype, jnp.floating):
        return
    got = jax.tree_util.tree_map(lambda s: f"{s.dtype}{list(s.shape)}", out)
    fix = "Select a class (logits[label]) or reduce the output first."
    x_shape = tuple(np.shape(jax.tree_util.tree_leaves(x)[0])) if x is not None else ()
    if shape and x_shape and shape[0] == x_shape[0] and len(x_shape) > 1:
        fix = (f"It looks like a batch of {shape[0]}: {name} explains ONE example; batch with "
               f"jax.vmap({name}(f))(xs), with f scoring one example (call a batched model on "
               "x[None]).")
    fail_type(name, "f", got, "returns a non-scalar or non-floating score",
              "f to return a real floating-point scalar (e.g. one logit)", fix)


def _backward_only(fun: Callable, name: str,
                   why: str = "its backward rules are replaced (at each ReLU, or relevance "
                               "rules)") -> Callable:
    """Wrap ``fun`` so any forward-mode (or higher-order) differentiation raises clearly."""

    def wrapped(*args):
        inner = jax.custom_jvp(fun)

        def jvp(primals, tangents):
            raise ForwardModeError(
                f"{name} maps are backward-only: {why}, so "
                "the map is not the derivative of any function and cannot be differentiated "
                "(jax.jvp, jax.jacfwd, jax.hessian, jax.grad of the map). Differentiate "
                "jaxattr.saliency (the plain gradient) instead, or stop_gradient the map."
            )

        inner.defjvp(jvp)
        return inner(*args)

    return wrapped


def _seed_with_value(out):
    """``out`` unchanged; its cotangent is multiplied by its value (relevance = the score)."""

    @jax.custom_vjp
    def seed(v):
        return v

    seed.defvjp(lambda v: (v, v), lambda v, r: (r * v,))
    return seed(out)


def _modified_grad(f: Callable, rules: Rules, argnums: Argnums, has_aux: bool, name: str,
                   dtype: Any = None, raw_max: bool = False, seed_with_score: bool = False):
    f = _check_score_fn(f, name)
    rules = dataclasses.replace(rules, dtype=check_dtype(dtype, "dtype", fn=name),
                                raw_max=check_bool(raw_max, "raw_max", fn=name))
    argnums_t = _argnums_tuple(argnums, name)
    has_aux = check_bool(has_aux, "has_aux", fn=name)

    def compute(args: tuple, kwargs: dict):
        _check_inputs(args, argnums_t, name)
        diff = [args[i] for i in argnums_t]

        def score(*d):
            full = list(args)
            for i, v in zip(argnums_t, d, strict=True):
                full[i] = v
            return f(*full, **kwargs)

        check = functools.partial(_check_score, has_aux=has_aux, name=name, x=diff[0])
        rewritten = rewrite(score, rules, name=name, check_output=check)
        if seed_with_score:  # the backward pass starts from the score's value, not 1
            plain = rewritten

            def rewritten(*d):
                out = plain(*d)
                return (_seed_with_value(out[0]), out[1]) if has_aux else _seed_with_value(out)
        # Convolutions in XLA:CPU's fast layout, also when the map runs in a caller's loop body
        # (lax.map/scan): XLA:CPU only canonicalises them at a program's top level.
        grad = cpu_loop_body(jax.grad(rewritten, argnums=tuple(range(len(diff))),
                                      has_aux=has_aux))
        out = grad(*diff)
        grads, aux = out if has_aux else (out, None)
        grads = grads[0] if isinstance(argnums, int) else grads
        return (grads, aux) if has_aux else grads

    # Compiled inside: eager calls run one program instead of dispatching the interpreter's ops
    # one by one; under an outer jit it is inlined. Checks run once per trace.
    g = jit_with_static(compute, fn=name, dynamic_argnums=argnums_t,
                        wrap=functools.partial(_backward_only, name=name))
    g = functools.wraps(f)(g)
    return mark_map(g)


# ---------------------------------------------------------------------------------------------
# Backward rules at a ReLU: (a_out, g_out) -> g_in, a_out = relu(x_in), so x_in > 0 iff a_out > 0.
# Kim et al. 2019 (arXiv:1902.04893) eq. 4; Springenberg et al. 2014; Zeiler & Fergus 2014.


def _guided_rule(a, g):
    return jnp.where(a > 0, jnp.maximum(g, 0), 0)


def _deconv_rule(a, g):  # reads nothing of the forward pass
    return jnp.maximum(g, 0)


def _fixed_threshold_rule(tau: float):
    def rule(a, g):
        return jnp.where(a * g > tau, g, 0)

    return rule


def _percentile_rule(q: float, select: str):
    def rule(a, g):
        v = (a * g).astype(jnp.promote_types(g.dtype, jnp.float32))
        k = nearest_rank(v.size, q)
        if k == 0 and q < 100:
            warn(f"rectgrad: a rectified layer of shape {tuple(a.shape)} has only {a.size} "
                 f"units, so q={q} lets no unit pass there: no gradient flows back through "
                 "that layer (only around it, e.g. through a residual connection). Lower q or "
                 "use tau=.")
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

@mark_transform
def saliency(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False,
             dtype: Any = None) -> Callable:
    """The plain gradient of a scalar score: ``jax.grad`` with attribution-friendly checks.

    Args:
      f: function of one example returning a real scalar score (e.g. a logit).
      argnums: which positional argument(s) to attribute to, as in ``jax.grad``.
      has_aux: ``f`` returns ``(score, aux)``; the map is then returned as ``(map, aux)``.
      dtype: compute dtype, e.g. ``jnp.bfloat16``: ``f`` runs with every floating value (its
        weights included) in that dtype, re-interpreted from its jaxpr, so the model need not
        change; functions with their own derivative rule (``softplus``...) run as traced. The
        map is returned in the input's dtype. ``None`` (default): as traced.

    Returns:
      ``g`` with ``f``'s signature returning an array shaped like ``x``. Unlike the
      modified-backprop maps, saliency stays differentiable. It is not compiled internally
      (exactly like ``jax.grad``): jit it, or use it inside a jitted function.

    Raises:
      ArgumentError: ``f`` not callable, bad ``argnums``; at trace time, a non-scalar score or a
        non-floating input (an :class:`~jaxattr.errors.ArgumentTypeError`, also a TypeError).

    Example:
      >>> import jax.numpy as jnp, jaxattr as ja
      >>> ja.saliency(lambda x: jnp.sum(x ** 2))(jnp.array([1.0, -2.0])).tolist()
      [2.0, -4.0]
      >>> f = lambda x, c, scale=1.0: scale * x[c] ** 2     # extra arguments pass through
      >>> ja.saliency(f)(jnp.array([1.0, 3.0]), 1, scale=2.0).tolist()
      [0.0, 12.0]

    References:
      Simonyan, Vedaldi, Zisserman 2013, arXiv:1312.6034.
    """
    f = _check_score_fn(f, "saliency")
    argnums_t = _argnums_tuple(argnums, "saliency")
    has_aux = check_bool(has_aux, "has_aux", fn="saliency")
    dtype = check_dtype(dtype, "dtype", fn="saliency")

    def checked(*args, **kwargs):
        if dtype is None:
            out = f(*args, **kwargs)
        else:  # the same function, every floating value computed in dtype (jaxattr._jaxpr)
            dyn, static = split(args, kwargs, fn="saliency")
            def call(*d):
                a, kw = static.rebuild(d)
                return f(*a, **kw)

            run = rewrite(call, Rules(dtype=dtype), name="saliency")
            out = run(*dyn)
        shapes = jax.tree_util.tree_map(
            lambda o: jax.ShapeDtypeStruct(jnp.shape(o), jnp.result_type(o)), out)
        _check_score(shapes, has_aux, "saliency", x=args[argnums_t[0]])
        return out

    grad_fn = jax.grad(checked, argnums=argnums, has_aux=has_aux)

    @functools.wraps(f)
    def g(*args, **kwargs):
        _check_inputs(args, argnums_t, "saliency")
        return grad_fn(*args, **kwargs)

    return mark_map(g)


@mark_transform
def guided_backprop(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False,
                    dtype: Any = None, raw_max: bool = False) -> Callable:
    """Guided Backpropagation: at every ReLU, ``R_in = where(x_in > 0, relu(R_out), 0)``.

    Args and Returns as :func:`saliency`; the map is backward-only (see module docs) and the
    returned function is compiled once per static signature. Warns with
    :class:`~jaxattr.errors.AttributionWarning` if ``f`` has no ReLU (what counts as one:
    ``jaxattr._jaxpr``).

    A ReLU is the named ``jax.nn.relu`` (what Flax, Equinox and Haiku call). ``raw_max=True``
    also rewrites every ``max(x, 0)`` written in your own code (not inside Flax, Equinox, Haiku
    or JAX, whose ``max(x, 0)`` are clamps such as a normalisation layer's variance): use it only
    when each of them is an activation.

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> w = jnp.array([[1.0, -1.0], [2.0, 1.0]])
      >>> f = lambda x: jnp.sum(jnp.array([1.0, -3.0]) * jax.nn.relu(w @ x))
      >>> ja.guided_backprop(f)(jnp.array([1.0, 0.5])).tolist()  # relu(R) = [1, 0], then w.T
      [1.0, -1.0]

    References:
      Springenberg, Dosovitskiy, Brox, Riedmiller 2014, arXiv:1412.6806.
    """
    return _modified_grad(f, Rules(relu=_guided_rule), argnums, has_aux, "guided_backprop",
                          dtype, raw_max)


@mark_transform
def deconvnet(f: Callable, *, argnums: Argnums = 0, has_aux: bool = False,
              dtype: Any = None, raw_max: bool = False) -> Callable:
    """DeconvNet: at every ReLU, ``R_in = relu(R_out)`` (ignores the forward activation).

    Args and Returns as :func:`saliency`; the map is backward-only (see module docs). The rule
    reads nothing of the forward pass, so nothing is saved for it. ``raw_max`` as in
    :func:`guided_backprop`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> f = lambda x: jnp.sum(jnp.array([2.0, -1.0]) * jax.nn.relu(x))
      >>> ja.deconvnet(f)(jnp.array([-1.0, 3.0])).tolist()  # ignores that unit 0 is dead
      [2.0, 0.0]

    References:
      Zeiler, Fergus 2014, arXiv:1311.2901.
    """
    rules = Rules(relu=_deconv_rule, relu_reads_output=False)
    return _modified_grad(f, rules, argnums, has_aux, "deconvnet", dtype, raw_max)


@mark_transform
def rectgrad(
    f: Callable,
    *,
    q: float | None = None,
    tau: float | None = None,
    maxpool: str = "winner",
    padding_trick: bool = False,
    argnums: Argnums = 0,
    has_aux: bool = False,
    select: str = "auto",
    dtype: Any = None,
    raw_max: bool = False,
) -> Callable:
    """Rectified Gradient: at every ReLU, ``R_in = where(a * R_out > tau, R_out, 0)``.

    ``a`` is the ReLU's output and ``R_out`` the incoming gradient; the comparison is strict and
    signed. ``tau`` is the ``q``-th percentile of ``a * R_out`` over all units of that layer of
    ONE example, 'nearest' as TensorFlow computes it (the official code):
    ``sort_desc(v)[round_half_even((n - 1) * (1 - q / 100))]``, so with distinct values exactly
    that many units pass. This equals ``numpy.percentile(v, q, method="nearest")`` except when
    ``(n - 1) * q / 100`` is exactly half-way between two ranks, where the two conventions round
    to different neighbours. The threshold is found by an exact selection, not a sort.

    The paper's final attribution is gradient times input: ``times_input(rectgrad(f))``.

    Which call reproduces which method of the official code (1202kbs/Rectified-Gradient,
    ``deepexplain/tensorflow/methods.py``; its padding trick is always on):

    * ``rectgrad``: ``rectgrad(f, q=98, padding_trick=True)``;
    * ``rectgradprr``: ``rectgrad(f, q=98, maxpool="prr", padding_trick=True)``;
    * ``rectgradconst``: ``rectgrad(f, tau=t, padding_trick=True)``.

    Deliberate differences: jaxattr masks only convolutions that really pad (the official code
    also masks 1x1 SAME convolutions, which pad nothing); PRR divides by the exact window sum
    (0 where it is 0) where the official code adds 1e-10; the rule applies at ReLUs only (the
    official override also thresholds at Elu, Sigmoid, Tanh, Softplus, Relu6 and Softsign);
    the percentile of a 3-D activation is taken over all its units (the official code: axis 1).

    Args:
      f: function of one example returning a real scalar score (the max logit in the paper).
      q: percentile in [0, 100] (default 98 when ``tau`` is not given). ``q=100`` gives zeros;
        ``q=0`` is NOT the plain gradient (dead units pass when the threshold is negative).
        A ``q`` in (0, 1) warns (it is a percentile, not a fraction).
      tau: fixed threshold instead of a percentile (``tau=0`` equals Guided Backprop on ReLU nets).
      maxpool: ``"winner"`` (ordinary max-pool gradient) or ``"prr"`` (proportional
        redistribution ``R_i = x_i / sum_window(x) * R_out``, as in the official code).
      padding_trick: zero the outer one-pixel ring of the gradient at the output of each
        SAME-padded convolution (the official code's border-artefact fix). Default False.
      argnums, has_aux: as in ``jax.grad``.
      dtype: compute dtype (e.g. ``jnp.bfloat16``), as in :func:`saliency`; the threshold is
        selected in float32.
      raw_max: also rectify every ``max(x, 0)`` written in your own code (default: only the
        named ``jax.nn.relu``; a ``max(x, 0)`` in Flax, Equinox, Haiku or JAX is never
        rewritten). Use it only when each such ``max`` is an activation, not a clamp.
      select: percentile algorithm, one of ``jaxattr._select.METHODS`` (all exact; ``"auto"``
        picks the fastest measured on the backend; the others are for benchmarking).

    Returns:
      ``g`` with ``f``'s signature returning a backward-only map shaped like ``x``.

    Raises:
      ArgumentError: q outside [0, 100], both q and tau, non-finite tau, unknown maxpool or
        select (an ArgumentTypeError, also a TypeError, for a wrong type such as ``q=True``).
      ArgumentTypeError: at trace time, a non-scalar score or a non-floating input.
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
        fail("rectgrad", "tau", tau, f"was given together with q={q!r}",
             "either q (a percentile) or tau (a fixed threshold), not both")
    if tau is not None:
        rule = _fixed_threshold_rule(check_real(tau, "tau", fn="rectgrad"))
    else:
        q = 98.0 if q is None else check_real(
            q, "q", fn="rectgrad", lo=0, hi=100, expected="a percentile in [0, 100] (default 98)")
        if 0 < q < 1:
            warn(f"rectgrad: q={q} is a percentile in [0, 100], not a fraction: it keeps the "
                 f"units above the {q}th percentile (about {100 - q:.1f}% of each layer). Did "
                 f"you mean q={100 * q:g}?")
        select = check_choice(select, "select", _SELECT_METHODS, fn="rectgrad")
        rule = _percentile_rule(q, select)
    maxpool = check_choice(maxpool, "maxpool", ("winner", "prr"), fn="rectgrad")
    padding_trick = check_bool(padding_trick, "padding_trick", fn="rectgrad")
    rules = Rules(
        relu=rule,
        maxpool=_prr_maxpool if maxpool == "prr" else None,
        same_conv_output=_zero_border_gradient if padding_trick else None,
    )
    return _modified_grad(f, rules, argnums, has_aux, "rectgrad", dtype, raw_max)


@mark_transform
def times_input(a: Callable, *, argnums: int = 0, has_aux: bool = False) -> Callable:
    """``x -> a(x) * x``: gradient-times-input from any attribution function ``a``.

    Args:
      a: attribution function (e.g. ``saliency(f)``, ``rectgrad(f)``); the returned function
        takes ``a``'s arguments, ``g(*args, **kwargs) = a(*args, **kwargs) * args[argnums]``.
      argnums: which positional argument multiplies the map.
      has_aux: ``a`` returns ``(map, aux)``; then ``(map * x, aux)`` is returned.

    Example:
      >>> import jax.numpy as jnp, jaxattr as ja
      >>> ja.times_input(ja.saliency(lambda x: jnp.sum(x ** 2)))(jnp.array([1.0, -2.0])).tolist()
      [2.0, 8.0]
    """
    expected = "an attribution function such as ja.rectgrad(f)"
    if is_transform(a):
        fail_type("times_input", "a", a, "is a transform, not an attribution function", expected,
                  "apply it to your score function first: times_input(rectgrad(f))")
    a = check_callable(a, "a", fn="times_input", expected=expected)
    argnums = check_int(argnums, "argnums", fn="times_input", minimum=0)
    has_aux = check_bool(has_aux, "has_aux", fn="times_input")

    @functools.wraps(a)
    def g(*args: Any, **kwargs: Any):
        out = a(*args, **kwargs)
        m, aux = out if has_aux else (out, None)
        m = jax.tree_util.tree_map(lambda mi, xi: mi * xi, m, args[argnums])
        return (m, aux) if has_aux else m

    return mark_map(g)
