"""The DeepLIFT rule set of the engine: the function at the input and at baselines in one pass.

Active only when the walk's :class:`~jaxattr._jaxpr.Rules` carry :class:`DeepLiftOptions`
(``Rules(options=(DeepLiftOptions(pairs=K),))``); otherwise every handler here only calls
``next_()``. The public transforms are :func:`jaxattr.deeplift` and :func:`jaxattr.deeplift_shap`
(``jaxattr.difference``).

**One interpreted pass.** The walked function is traced on one example; it is then evaluated on
*stacked* values with a leading axis of size ``2K``: rows ``[0:K]`` are the input (repeated),
rows ``[K:2K]`` the ``K`` baselines, row ``i`` paired with row ``i + K``. Every value that
depends on the attributed input carries that axis; values free of it (the walker's ``free``
fact: constants, parameters closed over, arguments passed through) do not. The handler
registered for every primitive (``"*"``) evaluates, for an equation reading a stacked value:

* ``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``/``custom_vjp_call`` (other than the
  activations below) and ``remat``: the body, inlined and walked (a function's own derivative
  rule is replaced by DeepLIFT's anyway);
* operations **linear** in the stacked values (a dense or convolution layer whose kernel is
  free, ``add``/``sub``, ``mul``/``div`` by a free value, shape changes, slices, padding, sums,
  sum-pooling, float casts, ``select_n`` with a free predicate...): ``jax.vmap`` over the rows,
  keeping their gradient (DeepLIFT's linear rule);
* **elementwise nonlinearities** -- ``jax.nn.relu`` (:func:`~jaxattr._jaxpr._is_nn_relu`), the
  other activations of ``jax.nn`` (a ``jit`` or ``custom_jvp`` whose body is defined there, or a
  group of equations that :func:`jaxattr._units.find_units` calls an activation unit, such as
  ``gelu``: the whole group is one elementwise function), unary elementwise primitives
  (``tanh``, ``logistic``, ``exp``, ``log``, ``erf``, ``integer_pow``...) and elementwise
  primitives whose other operands are free (``max(x, 0)``, ``clamp``, ``c / x``, ``pow``): the
  **rescale rule**, a ``jax.custom_vjp`` over the stacked value whose forward is ``y = f(x)``
  rowwise and whose backward multiplies the incoming gradient ``g`` of the input rows by
  ``m = (y - y_ref) / (x - x_ref)``, or by ``f'(x)`` where ``|x - x_ref| < eps`` (Captum's
  fallback); the baseline rows get the same value, as in Captum;
* **max-pooling** (``reduce_window_max``): Captum's max-pool rule
  (``DeepLiftOptions.maxpool="deeplift"``): with ``y``, ``y0`` the pooled input and baseline
  and ``ymax = max(y, y0)``, the argmax of ``x``'s window gets ``g (ymax - y0)``, the argmax of
  ``x0``'s window gets ``g (y - ymax)``, each divided by ``x - x0`` (gradient where
  ``|x - x0| < eps``); or the ordinary max-pool gradient (``maxpool="gradient"``, what Captum
  0.9.0 does when a ``MaxPool`` module directly consumes a ``ReLU`` module's output);
* ``scan``/``while``/``cond`` whose bodies are linear in the stacked values: ``jax.vmap``.

Everything else that depends on the input raises :class:`~jaxattr.errors.UnsupportedPrimitiveError`
naming the primitive (or the ``jax.nn`` function) and the user's source line, never a silent
gradient: a product (``mul``, ``dot_general``...) of two values that depend on the input, a
``softmax``/normalisation unit, a reduction such as ``reduce_max``, a floating value computed
from an integer or boolean one that depends on the input (``where(x > 0, ...)``, an index), a
loop or ``cond`` whose body holds a nonlinearity, an unknown higher-order primitive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from ._compat import bind as _bind
from ._compat import closed as _closed
from ._compat import jaxprs_in_params
from ._compat import source_line as _source_line
from ._jaxpr import (
    _custom_body,
    _func_src,
    _Interpreter,
    _is_nn_relu,
    _nn_source_file,
    _unchanged,
    _Val,
    register,
    register_analysis,
)
from ._units import _ACTIVATIONS, Unit, find_units
from .errors import UnsupportedPrimitiveError

__all__ = ["MAXPOOL_RULES", "DeepLiftOptions"]

MAXPOOL_RULES = ("deeplift", "gradient")


@dataclasses.dataclass(frozen=True)
class DeepLiftOptions:
    """The DeepLIFT rule set's options (``Rules(options=(DeepLiftOptions(...),))``).

    ``pairs``: ``K``, the number of (input, baseline) pairs: stacked values have a leading axis
    of ``2K``. ``eps``: where ``|x - x_ref| < eps`` the gradient replaces the rescale multiplier
    (Captum's default 1e-10). ``maxpool``: ``"deeplift"`` (Captum's max-pool rule) or
    ``"gradient"`` (the ordinary max-pool gradient). ``name``: the public transform, for
    messages.
    """

    pairs: int
    eps: float = 1e-10
    maxpool: str = "deeplift"
    name: str = "deeplift"


# ---------------------------------------------------------------------------------------------
# What the operations are, for stacked operands.

# Linear in all their (floating) operands jointly: the gradient is DeepLIFT's multiplier.
_LINEAR = frozenset({
    "add", "add_any", "sub", "neg", "reshape", "broadcast_in_dim", "squeeze", "expand_dims",
    "transpose", "slice", "dynamic_slice", "dynamic_update_slice", "concatenate", "pad",
    "reduce_sum", "reduce_window_sum", "convert_element_type", "copy", "copy_p", "rev",
    "gather", "scatter", "scatter-add", "scatter_add", "select_n", "cumsum", "reduce_precision",
    "pvary", "sharding_constraint", "device_put", "split", "optimization_barrier",
    "stop_gradient",  # written by the user: the multiplier is 0 there, as the gradient
    "name", "tile",  # checkpoint_name is the identity
})
# Linear in each operand: linear when exactly one operand depends on the input.
_BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated", "ragged_dot"})
# Elementwise: nonlinear in the one operand that depends on the input (the others free).
_ELEMENTWISE = frozenset({
    "tanh", "logistic", "exp", "exp2", "expm1", "log", "log1p", "erf", "erfc", "erf_inv",
    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
    "sqrt", "rsqrt", "cbrt", "abs", "sign", "floor", "ceil", "round", "integer_pow", "square",
    "pow", "max", "min", "clamp", "atan2", "rem", "lgamma", "digamma", "bessel_i0e",
    "bessel_i1e", "div",
})
_INLINE = frozenset({"jit", "pjit", "closed_call", "core_call", "call", "checkpoint", "remat",
                     "remat2", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
_LOOPS = frozenset({"scan", "while", "cond"})

_HELP = ("DeepLIFT has rules for elementwise nonlinearities (jax.nn activations, tanh, exp, "
         "max(x, c)...), max-pooling, and operations linear in the input (dense and convolution "
         "layers with constant weights, sums, reshapes, average pooling)")


def _has_body(eqn) -> bool:
    return next(iter(jaxprs_in_params(eqn.params)), None) is not None


def _is_float(aval) -> bool:
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def _classify(eqn, stacked: list[bool]) -> tuple[str, str]:
    """``(kind, why)`` of a first-order equation with stacked operands ``stacked``: kind is
    ``"rowwise"`` (no floating output: no gradient flows), ``"linear"``, ``"elementwise"``
    (the rescale rule applies to operand ``why``), ``"maxpool"`` or ``"bad"`` (``why`` says
    what is wrong)."""
    name = eqn.primitive.name
    ins = eqn.invars
    if not any(_is_float(v.aval) for v in eqn.outvars):
        return "rowwise", ""
    for v, s in zip(ins, stacked, strict=True):
        if s and not _is_float(v.aval):
            return "bad", (f"computes a floating value from a {v.aval.dtype} value that "
                           "depends on the input (a step function of the input, such as "
                           "where(x > 0, ...) or an index computed from x)")
    n = sum(stacked)
    if name in _LINEAR:
        return "linear", ""
    if name in _BILINEAR:
        if n == 1:
            return "linear", ""
        return "bad", "multiplies two values that both depend on the input"
    if name == "div" and stacked[0] and not stacked[1]:
        return "linear", ""
    if name == "reduce_window_max":
        return "maxpool", ""
    if name in _ELEMENTWISE:
        i = stacked.index(True)
        if (n == 1 and len(eqn.outvars) == 1
                and tuple(eqn.outvars[0].aval.shape) == tuple(ins[i].aval.shape)):
            return "elementwise", str(i)
        if n > 1:
            return "bad", "combines two values that both depend on the input nonlinearly"
        return "bad", "broadcasts the value that depends on the input"
    return "bad", "is neither linear in the input nor an elementwise nonlinearity"


def _nn_activation(eqn) -> str | None:
    """The name of the ``jax.nn`` activation that ``eqn`` is (a ``jit`` or ``custom_jvp_call``
    whose body is defined in ``jax.nn``'s source), or ``None``."""
    if _is_nn_relu(eqn):
        return "relu"
    key = {"jit": "jaxpr", "pjit": "jaxpr", "custom_jvp_call": "call_jaxpr"}.get(
        eqn.primitive.name)
    if key is None or key not in eqn.params:
        return None
    src, path = _func_src(eqn.params[key]), _nn_source_file()
    if not (src and path and " at " in src):
        return None
    name, where = src.split(" at ", 1)
    if where.rsplit(":", 1)[0] != path:
        return None
    name = name.rsplit(".", 1)[-1]
    return name if name in _ACTIVATIONS else None


# ---------------------------------------------------------------------------------------------
# Linearity of loop bodies (static: which variables depend on the input).


def _body_check(jaxpr, dep_in: list[bool]) -> tuple[Any, list[bool]]:
    """``(offending equation or None, which outputs depend on the input)`` for a body whose
    inputs ``dep_in`` depend on the input: an equation offends if DeepLIFT would apply a
    nonlinear rule (or has none) there."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    dep = {v for v, d in zip(jaxpr.invars, dep_in, strict=True) if d}
    bad = _eqns_check(jaxpr.eqns, dep)
    if bad is not None:
        return bad, []
    return None, [not isinstance(v, jcore.Literal) and v in dep for v in jaxpr.outvars]


def _eqns_check(eqns, dep: set) -> Any:
    """The first of ``eqns`` where DeepLIFT would apply a nonlinear rule (or has none), given
    the variables ``dep`` that depend on the input (updated in place), or ``None``."""
    for e in eqns:
        d = [not isinstance(v, jcore.Literal) and v in dep for v in e.invars]
        if not any(d):
            continue
        bad, outs_dep = _eqn_check(e, d)
        if bad is not None:
            return bad
        dep.update(v for v, o in zip(e.outvars, outs_dep, strict=True) if o)
    return None


def _eqn_check(e, d: list[bool]) -> tuple[Any, list[bool]]:
    """:func:`_body_check` for one equation with operands ``d`` depending on the input."""
    name = e.primitive.name
    if _nn_activation(e) is not None:
        return e, []
    if name in _INLINE:
        return _body_check(e.params["jaxpr"] if "jaxpr" in e.params else _custom_body(e), d)
    if name == "cond":
        if d[0]:  # the branch taken depends on the input
            return e, []
        outs_dep = [False] * len(e.outvars)
        for br in e.params["branches"]:
            bad, o = _body_check(br, d[1:])
            if bad is not None:
                return bad, []
            outs_dep = [a or b for a, b in zip(outs_dep, o, strict=True)]
        return None, outs_dep
    if name in ("scan", "while"):
        return _loop_check(e, d)
    if _has_body(e):
        return e, []
    kind, _ = _classify(e, d)
    return (None, [True] * len(e.outvars)) if kind in ("linear", "rowwise") else (e, [])


def _loop_check(eqn, d: list[bool]) -> tuple[Any, list[bool]]:
    p = eqn.params
    if eqn.primitive.name == "scan":
        nc, nk = p["num_consts"], p["num_carry"]
        consts, carry, xs = d[:nc], list(d[nc:nc + nk]), d[nc + nk:]
        while True:  # the carries that depend on the input: a fixpoint
            bad, outs = _body_check(p["jaxpr"], [*consts, *carry, *xs])
            if bad is not None:
                return bad, []
            new = [a or b for a, b in zip(carry, outs[:nk], strict=True)]
            if new == carry:
                return None, [*carry, *outs[nk:]]
            carry = new
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, carry = d[:cn], d[cn:cn + bn], list(d[cn + bn:])
    while True:
        bad, outs = _body_check(p["body_jaxpr"], [*bconsts, *carry])
        if bad is not None:
            return bad, []
        new = [a or b for a, b in zip(carry, outs, strict=True)]
        if new == carry:
            break
        carry = new
    bad, outs = _body_check(p["cond_jaxpr"], [*cconsts, *carry])
    if bad is not None:
        return bad, []
    if outs[0]:  # the number of iterations depends on the input
        return eqn, []
    return None, carry


# ---------------------------------------------------------------------------------------------
# The rules as custom_vjp over stacked values.


def _halves(v, k: int):
    return v[:k], v[k:]


def _rowwise_fn(fn, n_free: int):
    """``fn(row, *free)`` over the stacked axis."""
    return jax.vmap(fn, in_axes=(0,) + (None,) * n_free)


def _rescale(row_fn, opts: DeepLiftOptions):
    """The rescale rule for the elementwise ``row_fn(x_row, *free)``, as a custom_vjp."""
    k, eps = opts.pairs, opts.eps

    def apply(s, free):
        return _rowwise_fn(row_fn, len(free))(s, *free)

    @jax.custom_vjp
    def op(s, *free):
        return apply(s, free)

    def fwd(s, *free):
        y = apply(s, free)
        return y, (s, y, free)

    def bwd(res, g):
        s, y, free = res
        (x, x0), (y1, y0) = _halves(s, k), _halves(y, k)
        g1 = g[:k]
        dx = x - x0
        _, vjp = jax.vjp(lambda t: apply(t, free), x)
        (grad,) = vjp(g1)
        small = jnp.abs(dx) < eps
        m = jnp.where(small, grad, g1 * (y1 - y0) / jnp.where(small, jnp.ones_like(dx), dx))
        m = m.astype(s.dtype)
        return (jnp.concatenate([m, m]), *[None] * len(free))

    op.defvjp(fwd, bwd)
    return op


def _maxpool_rule(eqn, opts: DeepLiftOptions):
    """Captum's DeepLIFT max-pool rule for the ``reduce_window_max`` equation ``eqn``."""
    k, eps = opts.pairs, opts.eps

    def pool(s):
        return jax.vmap(lambda r: _bind(eqn, [r])[0])(s)

    @jax.custom_vjp
    def op(s):
        return pool(s)

    def fwd(s):
        y = pool(s)
        return y, (s, y)

    def bwd(res, g):
        s, y = res
        (x, x0), (y1, y0) = _halves(s, k), _halves(y, k)
        g1 = g[:k]
        _, to_x = jax.vjp(pool, x)  # scatters a pooled value to the argmax of x's window
        _, to_x0 = jax.vjp(pool, x0)
        ymax = jnp.maximum(y1, y0)
        num = to_x(g1 * (ymax - y0))[0] + to_x0(g1 * (y1 - ymax))[0]
        (grad,) = to_x(g1)
        dx = x - x0
        small = jnp.abs(dx) < eps
        m = jnp.where(small, grad, num / jnp.where(small, jnp.ones_like(dx), dx))
        m = m.astype(s.dtype)
        return (jnp.concatenate([m, m]),)

    op.defvjp(fwd, bwd)
    return op


# ---------------------------------------------------------------------------------------------
# The handler.


class _LazyUnits:
    """Per walked jaxpr: its units (found on first use) and the outputs of those computed."""

    def __init__(self, jaxpr):
        self.jaxpr = jaxpr
        self._units = None
        self.done: dict[int, dict] = {}  # id(unit) -> {var: _Val}

    def member(self, eqn) -> Unit | None:
        if self._units is None:
            self._units = find_units(self.jaxpr)
        return self._units.member.get(id(eqn))


register_analysis("deeplift_units", lambda jaxpr, *known: _LazyUnits(jaxpr))


def _fail(opts: DeepLiftOptions, what: str, where: str, why: str) -> None:
    raise UnsupportedPrimitiveError(
        f"{opts.name}: {what} at {where} {why}. {_HELP}; rewrite that part of f, hold the "
        "value constant (a parameter), or attribute with integrated_gradients instead."
    )


def _site(interp: _Interpreter, kind: str) -> None:
    interp.stats.sites += 1
    interp.stats.count(kind)


def _rowwise(interp: _Interpreter, eqn, invals: list[_Val]) -> list[_Val]:
    """``eqn`` evaluated row by row (``jax.vmap``; free operands not mapped): its gradient."""
    axes = tuple(None if v.free else 0 for v in invals)

    def row(*vals):
        return [o.value for o in _unchanged(interp, eqn, [_Val(v) for v in vals])]

    outs = jax.vmap(row, in_axes=axes)(*[v.value for v in invals])
    return [_Val(o) for o in outs]


def _elementwise(interp: _Interpreter, opts: DeepLiftOptions, row_fn, x: _Val,
                 free: list[Any]) -> _Val:
    op = _rescale(row_fn, opts)
    _site(interp, "rescale")
    return _Val(op(x.value, *free))


def _apply_elementwise_eqn(interp, opts, eqn, invals, i: int) -> list[_Val]:
    """The rescale rule at the elementwise equation ``eqn``, nonlinear in operand ``i``."""
    free = [v.value for j, v in enumerate(invals) if j != i]

    def row_fn(xr, *fr):
        vals = list(fr)
        vals.insert(i, xr)
        return _unchanged(interp, eqn, [_Val(v) for v in vals])[0].value

    return [_elementwise(interp, opts, row_fn, invals[i], free)]


def _unit(interp: _Interpreter, opts: DeepLiftOptions, unit: Unit, units: _LazyUnits,
          eqn) -> list[_Val] | None:
    """At the first equation of a unit reading a stacked value: evaluate the whole unit (an
    activation: the rescale rule on each elementwise part); ``None`` if nothing is stacked."""
    read = cast(Callable[[Any], _Val], interp.read)  # set while a jaxpr is interpreted
    inputs = {v: read(v) for v in unit.inputs}
    if all(v.free for v in inputs.values()):
        return None
    if unit.kind != "activation":
        if _eqns_check(unit.eqns, {v for v, val in inputs.items() if not val.free}) is None:
            return None  # affine in the input (BatchNorm in inference mode): op by op
        what = {"softmax": "softmax", "norm": "the normalisation layer"}.get(unit.kind,
                                                                               "the function")
        _fail(opts, f"{what} '{unit.name}'", unit.line,
              "depends on the input, and is not elementwise (its outputs mix its inputs)")
    outs: dict = {}
    for part in [unit] if unit.outputs else []:  # units are connected: one part
        stacked = [v for v in part.inputs if not inputs[v].free]
        if not stacked:  # a part on free values only (another call on the same line)
            value = _run_part(interp, part, {v: inputs[v].value for v in part.inputs})
            outs[part.outputs[0]] = _Val(value, free=True)
            continue
        if len(stacked) != 1 or len(part.outputs) != 1 or (
                tuple(part.outputs[0].aval.shape) != tuple(stacked[0].aval.shape)):
            _fail(opts, f"the activation '{unit.name}'", unit.line,
                  "does not map one value that depends on the input elementwise to one output")
        xvar = stacked[0]
        others = [v for v in part.inputs if v is not xvar]

        def row_fn(xr, *fr, part=part, xvar=xvar, others=others):
            return _run_part(interp, part, {xvar: xr, **dict(zip(others, fr, strict=True))})

        outs[part.outputs[0]] = _elementwise(interp, opts, row_fn, inputs[xvar],
                                             [inputs[v].value for v in others])
    units.done[id(unit)] = outs
    return _member_outputs(eqn, outs)


def _run_part(interp: _Interpreter, part: Unit, values: dict) -> Any:
    """The output of ``part`` on ``values`` (by variable), evaluated as the walker evaluates an
    equation (literals and dtype parameters follow the compute dtype)."""
    env = dict(values)

    def read(v) -> _Val:
        if isinstance(v, jcore.Literal):
            return interp.cast(_Val(v.val, const=True, free=True))
        return interp.cast(_Val(env[v]))

    for e in part.eqns:
        outs = _unchanged(interp, e, [read(v) for v in e.invars])
        env.update((v, o.value) for v, o in zip(e.outvars, outs, strict=True))
    return env[part.outputs[0]]


def _member_outputs(eqn, outs: dict) -> list[_Val]:
    # Values of the unit read after it are the unit's; the others are read by no one.
    return [outs.get(v, _Val(None)) for v in eqn.outvars]


@register("*")
def _deeplift(interp: _Interpreter, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    opts = interp.rules.option(DeepLiftOptions)
    if opts is None:
        return next_()
    units: _LazyUnits = ctx["deeplift_units"]
    unit = units.member(eqn)
    if unit is not None and id(unit) in units.done:
        return _member_outputs(eqn, units.done[id(unit)])
    if unit is not None and unit.eqns[0] is eqn:
        outs = _unit(interp, opts, unit, units, eqn)
        if outs is not None:
            return outs
    stacked = [not v.free for v in invals]
    if not any(stacked):  # nothing depends on the input: evaluated as traced
        if _has_body(eqn):
            return _unchanged(interp, eqn, invals)
        return next_()
    name = eqn.primitive.name
    where = _source_line(eqn)
    activation = _nn_activation(eqn)
    if activation is not None:
        if sum(stacked) != 1 or len(eqn.outvars) != 1:
            _fail(opts, f"'{activation}'", where, "reads several values that depend on the input")
        i = stacked.index(True)
        if tuple(eqn.outvars[0].aval.shape) != tuple(eqn.invars[i].aval.shape):
            _fail(opts, f"'{activation}'", where, "broadcasts the value that depends on the input")
        return _apply_elementwise_eqn(interp, opts, eqn, invals, i)
    if name in _INLINE:
        body = _closed(eqn.params["jaxpr"]) if "jaxpr" in eqn.params else _custom_body(eqn)
        return interp.eval_closed(body, list(invals))
    if name in _LOOPS:
        bad, _ = _eqn_check(eqn, stacked)
        if bad is not None:
            inner = ("" if bad is eqn else
                     f" (its body holds '{bad.primitive.name}' at {_source_line(bad)})")
            _fail(opts, f"'{name}'", where,
                  f"depends on the input through a nonlinearity{inner}: DeepLIFT's rules are "
                  "not applied inside loops and conditionals")
        return _rowwise(interp, eqn, invals)
    if _has_body(eqn):
        _fail(opts, f"the higher-order primitive '{name}'", where,
              "reads a value that depends on the input; supported: jit, closed_call, "
              "custom_jvp/custom_vjp functions, remat, and scan/while/cond with linear bodies")
    kind, why = _classify(eqn, stacked)
    if kind in ("rowwise", "linear"):
        return _rowwise(interp, eqn, invals)
    if kind == "elementwise":
        return _apply_elementwise_eqn(interp, opts, eqn, invals, int(why))
    if kind == "maxpool":
        if opts.maxpool == "gradient":
            return _rowwise(interp, eqn, invals)
        _site(interp, "maxpool")
        return [_Val(_maxpool_rule(eqn, opts)(invals[0].value))]
    _fail(opts, f"'{name}'", where, why)
    raise AssertionError  # unreachable
