"""The relevance rule set of the engine: Layer-wise Relevance Propagation on any jaxpr.

Relevance flows backwards as the cotangent (Zennit's convention): every equation that depends
on the attributed input gets a backward rule mapping the relevance of its output to the
relevance of its input(s). What an equation *is* decides its rule (``jaxattr.relevance`` holds
the rules and composites; their table is in docs/methods/relevance.md):

* **a layer**: ``dot_general`` or ``conv_general_dilated`` with one operand free of the input
  (the weights), together with the chain of elementwise operations with free operands after it
  (bias add, inference BatchNorm, a scale): canonization, found in the graph. The chain
  ``z = s * lin(W, x) + c`` is kept symbolically (``s`` and ``c`` exactly, as products and sums
  of the chain's operands), so a rule's modified weights are those of the merged layer
  (``(s W)^+ = s^+ W^+ + s^- W^-`` elementwise, for any ``s`` of the output's shape);
* **a sum**: ``add``/``sub`` of two values that depend on the input (residual connections), and
  ``reduce_sum``/``reduce_window_sum`` (average pooling, a mean), with their chains: the
  proportional rule (``Norm``) by default;
* **an elementwise activation** (``jax.nn.relu`` and the other ``jax.nn`` activations, each a
  unit of :mod:`jaxattr._units`; a unary elementwise primitive; ``max``/``min`` against a free
  value): the identity ("pass") rule;
* **an elementwise affine map with a free operand not attached to a layer** (``x * c``,
  ``x + b``): pass (LRP-0 of a diagonal map passes relevance unchanged);
* **structure** (reshape, transpose, broadcast, slice, gather, concatenate, pad, dtype changes,
  and max-pooling/``reduce_max``, winner-take-all): the gradient;
* **transformers** (AttnLRP, Achtibat et al. 2024): ``jax.nn.softmax`` (Prop. 3.1,
  ``R_x = x * (R - s * sum(R))``); a product of two values that depend on the input
  (``mul``, ``dot_general``: ``q k^T``, ``A v``): epsilon rule on the product and the uniform
  split (Prop. 3.3); a normalisation unit (LayerNorm, RMSNorm, GroupNorm, ``standardize``): its
  normalisation factors held constant, epsilon rule through the resulting linear map (Prop. 3.4).

Anything else that depends on the input raises :class:`~jaxattr.errors.UnsupportedPrimitiveError`
naming the primitive and the user's source line: there is no silent fallback to the gradient.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from ._compat import bind as _bind
from ._compat import source_line as _source_line
from ._jaxpr import (
    _is_nn_relu,
    _is_zero,
    _Val,
    register,
    register_analysis,
    register_prepass,
)
from ._units import find_units, run_unit, statistics
from .errors import UnsupportedPrimitiveError

if TYPE_CHECKING:
    from jax.core import ShapedArray

__all__ = ["Layer", "LrpOptions"]

_LAYER_TAG = "lrp:after_layer"

# Linear maps whose gradient is the relevance rule (structure; winner-take-all at maxima).
_STRUCTURAL = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice",
    "dynamic_slice", "gather", "concatenate", "pad", "rev", "convert_element_type", "copy",
    "copy_p", "reduce_precision", "pvary", "device_put", "split", "reduce_max", "reduce_min",
    "reduce_window_max", "reduce_window_min", "select_n", "dynamic_update_slice", "sort",
    "optimization_barrier", "stop_gradient", "real", "imag", "tile", "broadcast",
    "name",  # jax.ad_checkpoint.checkpoint_name: the identity
})
# Unary elementwise functions: activations, identity rule.
_UNARY = frozenset({
    "tanh", "logistic", "exp", "exp2", "expm1", "log", "log1p", "erf", "erfc", "erf_inv",
    "sqrt", "rsqrt", "cbrt", "integer_pow", "sin", "cos", "tan", "atan", "asinh", "acosh",
    "atanh", "sinh", "cosh", "abs", "sign", "floor", "ceil", "round", "square", "neg",
    "is_finite", "lgamma", "digamma", "asin", "acos",
})
_CHAIN = frozenset({"add", "sub", "mul", "div", "neg", "convert_element_type"})
_SUMS = frozenset({"reduce_sum", "reduce_window_sum"})


@dataclasses.dataclass(frozen=True)
class Layer:
    """What a composite's selector sees of a layer.

    ``kind``: ``"dense"`` (``dot_general``), ``"conv"``, ``"sum"`` (a sum of input-dependent
    terms, ``reduce_sum``), ``"avgpool"`` (``reduce_window_sum``); ``path``: the module path in
    the jaxpr's name stack (Flax: ``"Model/Dense_0"``); ``first``: no other dense or conv layer
    lies between the attributed input and this layer; ``line``: the user's source line;
    ``last``: no other dense or conv layer lies between this layer and the score.
    """

    kind: str
    path: str
    first: bool
    line: str
    last: bool = False

    def matches(self, selector: Any) -> bool:
        if callable(selector):
            return bool(selector(self))
        if selector == "first":
            return self.first and self.kind in ("dense", "conv")
        if selector == "last":
            return self.last and self.kind in ("dense", "conv")
        if selector in ("dense", "conv", "sum", "avgpool"):
            return self.kind == selector
        if selector == "linear":
            return self.kind in ("dense", "conv")
        if selector in ("*", "any"):
            return True
        path = self.path
        return fnmatch.fnmatchcase(path, selector) or fnmatch.fnmatchcase(path, "*/" + selector)


@dataclasses.dataclass(frozen=True)
class LrpOptions:
    """The rule set's options (``Rules.options``): ``rule_for(layer) -> rule`` and the rules at
    the transformer parts (``softmax``: ``"taylor"`` or ``"gradient"``; ``bilinear_epsilon``,
    ``norm_epsilon``: the stabilisers of AttnLRP's product and normalisation rules)."""

    rule_for: Callable[[Layer], Any]
    activation: Any
    needs_last: bool = False  # a selector reads Layer.last: a first walk finds the last layers
    bilinear_epsilon: float = 1e-6
    norm_epsilon: float = 1e-6
    softmax: str = "taylor"


# ---------------------------------------------------------------------------------------------
# Static analysis of one jaxpr: which variables are free of the input, the chains, the units.


@dataclasses.dataclass
class _Layout:
    free: set
    # id(last eqn of a chain) -> (layer eqn, chain eqns)
    layer_of_last: dict[int, tuple[jcore.JaxprEqn, tuple[jcore.JaxprEqn, ...]]]
    members: set  # ids of eqns that are inside a chain (the layer eqn and all but the last)
    units: Any
    uses: dict


def _analysis(jaxpr: jcore.Jaxpr, known_const: set, known_free: set) -> _LazyLayout:
    return _LazyLayout(jaxpr, known_free)


class _LazyLayout:
    """Computed on first use: the ReLU rules never pay for it."""

    def __init__(self, jaxpr, known_free):
        self._jaxpr, self._known_free, self._layout = jaxpr, known_free, None

    def get(self) -> _Layout:
        if self._layout is None:
            self._layout = _layout(self._jaxpr, self._known_free)
        return self._layout


def _is_free(v, free: set) -> bool:
    return isinstance(v, jcore.Literal) or v in free


def _layout(jaxpr: jcore.Jaxpr, known_free: set) -> _Layout:
    free = set(known_free)
    uses: dict[Any, list] = {}
    for e in jaxpr.eqns:
        if all(_is_free(v, free) for v in e.invars):
            free.update(e.outvars)
        for v in e.invars:
            if not isinstance(v, jcore.Literal):
                uses.setdefault(v, []).append(e)
    outvars = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
    units = find_units(jaxpr)
    for unit in list(units.first.values()):  # a norm with free statistics is an affine map
        dep = [v for v in unit.inputs if not _is_free(v, free)]
        if unit.kind == "norm" and not statistics(unit, dep)[0]:
            del units.first[id(unit.eqns[0])]
            for e in unit.eqns:
                del units.member[id(e)]
    layer_of_last, members = {}, set()
    for e in jaxpr.eqns:
        if id(e) in units.member or _layer_kind(e, free) is None:
            continue
        chain, out = [], e.outvars[0]
        while out not in outvars and len(uses.get(out, ())) == 1:
            nxt = uses[out][0]
            if nxt.primitive.name not in _CHAIN or id(nxt) in units.member:
                break
            others = [v for v in nxt.invars if v is not out]
            if not all(_is_free(v, free) for v in others) or len(nxt.invars) - len(others) != 1:
                break
            if nxt.primitive.name == "div" and nxt.invars[0] is not out:
                break  # c / z is not affine in z
            if nxt.outvars[0].aval.shape != cast("ShapedArray", e.outvars[0].aval).shape:
                break  # a chain keeps the layer's output shape
            if (nxt.primitive.name == "convert_element_type"
                    and not jnp.issubdtype(nxt.outvars[0].aval.dtype, jnp.floating)):
                break
            chain.append(nxt)
            out = nxt.outvars[0]
        last = chain[-1] if chain else e
        layer_of_last[id(last)] = (e, tuple(chain))
        members.update(id(x) for x in [e, *chain] if x is not last)
    return _Layout(free, layer_of_last, members, units, uses)


def _layer_kind(e, free: set) -> str | None:
    name = e.primitive.name
    dep = [not _is_free(v, free) for v in e.invars]
    if not any(dep):
        return None
    if name in ("dot_general", "conv_general_dilated") and sum(dep) == 1:
        if name == "conv_general_dilated" and not dep[0]:
            return None  # a kernel that depends on the input: not a layer
        return "dense" if name == "dot_general" else "conv"
    if name in ("add", "sub") and all(dep):
        return "sum"
    if name == "reduce_sum":
        return "sum"
    if name == "reduce_window_sum":
        return "avgpool"
    return None


register_analysis("lrp", _analysis)
register_prepass(lambda rules: bool(getattr(rules.option(LrpOptions), "needs_last", False)))


# ---------------------------------------------------------------------------------------------
# Helpers.


def _stab(z, eps):
    """z + eps * sign(z), with sign(0) = +1 (Zennit's stabilizer)."""
    if eps == 0:
        return z
    return z + jnp.where(z >= 0, eps, -eps).astype(z.dtype)


def _div(r, z, eps):
    """``r / stab(z)``; with ``eps = 0``, 0 where ``z = 0`` (LRP-0's convention: 0 / 0 = 0)."""
    if eps != 0:
        return r / _stab(z, eps)
    zero = z == 0
    return jnp.where(zero, jnp.zeros_like(r), r / jnp.where(zero, jnp.ones_like(z), z))


def _with_rule(value, xs: tuple, ops: tuple, backward: Callable):
    """``value`` (computed as written from ``xs`` and the free ``ops``) with the backward rule
    ``backward(xs, ops, value, R) -> (R_x, ...)``; the operands and ``value``'s own path get no
    cotangent."""

    @jax.custom_vjp
    def f(xs, ops, value):
        return value

    def fwd(xs, ops, value):
        return value, (xs, ops, value)

    def bwd(res, r):
        xs, ops, value = res
        rxs = backward(xs, ops, value, r)
        return (tuple(jnp.asarray(rx).astype(x.dtype) for rx, x in zip(rxs, xs, strict=True)),
                jax.tree_util.tree_map(jnp.zeros_like, ops), jnp.zeros_like(value))

    f.defvjp(fwd, bwd)
    return f(tuple(xs), tuple(ops), value)


def _identity(xs: tuple, ops: tuple, out: jax.Array, r: jax.Array) -> tuple:
    (x,) = xs
    if jnp.shape(x) == jnp.shape(r):
        return (r,)
    return tuple(jax.vjp(lambda v: jnp.broadcast_to(v, r.shape), x)[1](r))


# Values known to be >= 0 (a ReLU's output, and what max-pooling and reshaping make of it), by
# id within one walk, the values kept alive with their ids: rules skip the terms of x^- = 0.
_NONNEG_ACTIVATIONS = frozenset({"relu", "relu6", "sigmoid", "softplus", "hard_sigmoid",
                                 "squareplus", "sparse_plus", "sparse_sigmoid"})
_KEEPS_SIGN = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice",
    "dynamic_slice", "gather", "rev", "convert_element_type", "copy", "copy_p", "reduce_max",
    "reduce_window_max", "reduce_precision", "pvary", "device_put", "tile", "name",
})


def _mark_nonneg(interp, value) -> None:
    interp.cache.setdefault("lrp_nonneg", {})[id(value)] = value


def _is_nonneg(interp, value) -> bool:
    return interp.cache.get("lrp_nonneg", {}).get(id(value)) is value


def _unsupported(eqn, why: str, site: str = "") -> UnsupportedPrimitiveError:
    where = _source_line(eqn).strip() or site or "<unknown source>"
    return UnsupportedPrimitiveError(
        f"lrp: no relevance rule for '{eqn.primitive.name}' at {where}: {why}. "
        "Rules exist for dense and convolution layers with their affine chains, sums, "
        "elementwise activations, pooling, shape operations, jax.nn.softmax, products of two "
        "input-dependent values and normalisation layers (see jaxattr.relevance)."
    )


# ---------------------------------------------------------------------------------------------
# The handler.


@register("*")
def _lrp(interp, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    opts = interp.rules.option(LrpOptions)
    if opts is None or all(v.free for v in invals):
        return next_()
    layout = cast(_LazyLayout, ctx["lrp"]).get()  # what _analysis gave
    unit = layout.units.member.get(id(eqn))
    if unit is not None:
        outs = next_()
        return _apply_unit(interp, unit, opts, outs) if eqn is unit.eqns[-1] else outs
    if id(eqn) in layout.layer_of_last:
        return _apply_layer(interp, eqn, *layout.layer_of_last[id(eqn)], opts, next_())
    if id(eqn) in layout.members:
        return next_()
    return _per_primitive(interp, eqn, invals, opts, next_)


_CONTROL = frozenset({"pjit", "jit", "closed_call", "core_call", "call", "checkpoint", "remat2",
                      "remat", "scan", "cond", "while", "shard_map"})


def _per_primitive(interp, eqn, invals, opts, next_) -> list[_Val]:
    name = eqn.primitive.name
    dep = [not v.free for v in invals]
    if name in _CONTROL:
        return next_()  # the walker interprets the body with these rules
    if not any(jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars
               if hasattr(v.aval, "dtype")):
        return next_()  # comparisons, argmax, integer results: no relevance flows
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        if _is_nn_relu(eqn):
            outs = _pass(eqn, invals, next_(), "an activation")
            _mark_nonneg(interp, outs[0].value)
            return outs
        raise _unsupported(eqn, "a function with its own derivative rule that is not a known "
                                "activation", interp.site)
    if name in _STRUCTURAL:
        if name == "select_n" and dep[0]:
            raise _unsupported(eqn, "a selection whose predicate depends on the input",
                               interp.site)
        outs = next_()
        if name in _KEEPS_SIGN and len(outs) == 1 and all(
                _is_nonneg(interp, v.value) for v in invals if not v.free):
            _mark_nonneg(interp, outs[0].value)
        return outs
    if name in ("max", "min") and sum(dep) == 2:
        return next_()  # winner-take-all
    if name in _UNARY or name in ("max", "min") or name == "pow" and dep == [True, False]:
        outs = _pass(eqn, invals, next_(), "an activation")
        if name == "max" and any(v.free and _is_zero(v) for v in invals):
            _mark_nonneg(interp, outs[0].value)  # max(x, 0)
        return outs
    if name in ("mul", "add", "sub") and sum(dep) == 1 or name == "div" and dep == [True, False]:
        return _pass(eqn, invals, next_(), "an elementwise map with a free operand")
    if name in ("mul", "dot_general"):
        return _bilinear(eqn, invals, next_(), opts)
    raise _unsupported(eqn, "its relevance would be the plain gradient, which no rule says",
                       interp.site)


def _pass(eqn, invals, outs, what: str) -> list[_Val]:
    """Identity rule: relevance passes unchanged (summed back over broadcast dimensions)."""
    xs = [v for v in invals if not v.free]
    if len(xs) != 1 or len(outs) != 1:
        raise _unsupported(eqn, f"{what} must read one input-dependent value and give one output")
    return [_Val(_with_rule(outs[0].value, (xs[0].value,), (), _identity))]


def _bilinear(eqn, invals, outs, opts) -> list[_Val]:
    """AttnLRP Prop. 3.3: epsilon rule on the product, relevance split 50/50 (uniform)."""
    eps = opts.bilinear_epsilon

    def backward(xs, ops, out, r):
        g = _div(r, 2 * out, eps) if eps == 0 else r / (2 * _stab(out, eps))
        _, vjp = jax.vjp(lambda p, q: _bind(eqn, [p, q])[0], *xs)
        ga, gb = vjp(g)
        return xs[0] * ga, xs[1] * gb

    a, b = invals[0].value, invals[1].value
    return [_Val(_with_rule(outs[0].value, (a, b), (), backward))]


# ---------------------------------------------------------------------------------------------
# Layers.


def _one(s):
    return 1.0 if s is None else s


def _chain_affine(chain, out_var, read) -> tuple[Any, Any]:
    """(s, c) with chain(z) = s * z + c, built from the chain's operands exactly; ``s`` is
    ``None`` when the chain only adds (no scale)."""
    s, c, cur = None, 0.0, out_var
    for e in chain:
        name = e.primitive.name
        vals = [read(v).value if not isinstance(v, jcore.Literal) else v.val for v in e.invars]
        pos = next(i for i, v in enumerate(e.invars) if v is cur)
        if len(vals) == 2:  # add, sub, mul, div: k is the other operand
            k = vals[1 - pos]
            if name == "add":
                c = c + k
            elif name == "sub":
                s, c = (s, c - k) if pos == 0 else (-_one(s), k - c)
            elif name == "mul":
                s, c = _one(s) * k, c * k
            elif name == "div":
                s, c = _one(s) / k, c / k
        elif name == "neg":
            s, c = -_one(s), -c
        elif name == "convert_element_type":
            dt = e.params["new_dtype"]
            s = None if s is None else jnp.asarray(s).astype(dt)
            c = jnp.asarray(c).astype(dt)
        cur = e.outvars[0]
    return s, c


def _apply_layer(interp, last_eqn, layer_eqn, chain, opts, outs) -> list[_Val]:
    read = interp.read
    invals = [read(v) if not isinstance(v, jcore.Literal) else _Val(v.val, free=True)
              for v in layer_eqn.invars]
    kind = _layer_kind(layer_eqn, {v for v, val in zip(layer_eqn.invars, invals, strict=True)
                                   if val.free})
    dep = [not v.free for v in invals]
    in_tags = frozenset().union(*(v.tags for v in invals if not v.free))
    first = _LAYER_TAG not in in_tags
    path = str(getattr(layer_eqn.source_info, "name_stack", ""))
    own_tag = f"lrp:layer:{id(layer_eqn)}"
    if kind in ("dense", "conv"):
        interp.cache.setdefault("lrp_layers", {})[own_tag] = in_tags
    seen = interp.cache.get("prepass_cache", {}).get("lrp_layers")
    last = seen is not None and kind in ("dense", "conv") and not any(
        own_tag in tags for tags in seen.values())
    layer = Layer(cast(str, kind), path, first, _source_line(layer_eqn), last)  # a layer: not None
    rule = opts.rule_for(layer)
    interp.stats.count("lrp_layer")
    interp.stats.sites += 1
    s, c = _chain_affine(chain, layer_eqn.outvars[0], read)
    z = outs[0].value
    scaled = s is not None
    s = jnp.broadcast_to(jnp.asarray(_one(s), z.dtype), z.shape) if scaled else jnp.ones((),
                                                                                    z.dtype)
    c = jnp.broadcast_to(jnp.asarray(c, z.dtype), z.shape)
    x_nonneg = _is_nonneg(interp, invals[dep.index(True)].value)
    xs = tuple(v.value for v in invals if not v.free)
    frees = tuple(v.value for v in invals if v.free)

    def op(xs_, frees_):
        it, jt = iter(xs_), iter(frees_)
        return _bind(layer_eqn, [next(it) if d else next(jt) for d in dep])[0]

    if kind in ("dense", "conv"):
        def backward(xs_: tuple, ops: tuple, out: jax.Array, r: jax.Array) -> tuple:
            s_, c_, w = ops

            def lin(wt, v):
                return op((v,), (wt,))

            return (_linear_rule(rule, lin, xs_[0], w, s_, c_, out, r, layer, scaled=scaled,
                                 x_nonneg=x_nonneg),)
    else:
        def backward(xs_: tuple, ops: tuple, out: jax.Array, r: jax.Array) -> tuple:
            s_, c_, *fr = ops
            return _sum_rule(rule, lambda *a: s_ * op(a, fr) if scaled else op(a, fr), xs_, out,
                             r, layer)

    out = _with_rule(z, xs, (s, c, *frees), backward)
    tags = frozenset({_LAYER_TAG, own_tag}) if kind in ("dense", "conv") else frozenset()
    return [_Val(out, tags=tags)]


def _sum_rule(rule, fn, xs, out, r, layer):
    name = type(rule).__name__
    if name in ("Norm", "Epsilon"):
        eps = rule.stabilizer if name == "Norm" else rule.epsilon
        g = _div(r, out, eps)
        _, vjp = jax.vjp(fn, *xs)
        return tuple(x * gx for x, gx in zip(xs, vjp(g), strict=True))
    if name == "Gradient":
        _, vjp = jax.vjp(fn, *xs)
        return tuple(vjp(r))
    raise UnsupportedPrimitiveError(
        f"lrp: rule {rule!r} chosen for the {layer.kind} at {layer.line} does not apply to a "
        "sum or pooling (use Norm, Epsilon or Gradient)")


def _linear_rule(rule, lin, x, w, s, c, out, r, layer, *, scaled: bool, x_nonneg: bool):
    """R_in of ``z = s * lin(w, x) + c`` for one rule (Zennit 0.5.1's definitions).

    ``scaled``: the chain multiplies (else ``s = 1`` and its terms are skipped); ``x_nonneg``:
    ``x >= 0`` is known (a ReLU's output), so the terms of ``x^- = 0`` are skipped (exactly).
    """
    name = type(rule).__name__
    wp, wn = jnp.maximum(w, 0), jnp.minimum(w, 0)
    zero = jnp.zeros((), c.dtype)
    cp, cn = jnp.maximum(c, zero), jnp.minimum(c, zero)
    if scaled:
        sp, sn = jnp.maximum(s, zero), jnp.minimum(s, zero)

        def full(v):
            return s * lin(w, v)

        def pos(v):  # lin of (s W)^+ = s^+ W^+ + s^- W^-, elementwise in the output
            return sp * lin(wp, v) + sn * lin(wn, v)

        def neg(v):  # lin of (s W)^-
            return sp * lin(wn, v) + sn * lin(wp, v)
    else:
        def full(v):
            return lin(w, v)

        def pos(v):
            return lin(wp, v)

        def neg(v):
            return lin(wn, v)

    def vt(fn, v, g):  # the transpose of a linear map (at any point)
        return jax.vjp(fn, v)[1](g)[0]

    if name in ("Epsilon", "Norm"):
        eps = rule.epsilon if name == "Epsilon" else rule.stabilizer
        return x * vt(full, x, _div(r, out, eps))
    if name == "Gradient":
        return vt(full, x, r)
    xp = x if x_nonneg else jnp.maximum(x, 0)
    xn = None if x_nonneg else jnp.minimum(x, 0)

    def split(g, fn_p, fn_n):  # x^+ fn_p^T g + x^- fn_n^T g
        out_ = xp * vt(fn_p, xp, g)
        return out_ if xn is None else out_ + xn * vt(fn_n, xn, g)

    def z_of(fn_p, fn_n, bias):  # fn_p(x^+) + bias + fn_n(x^-)
        z = fn_p(xp) + bias
        return z if xn is None else z + fn_n(xn)

    if name == "ZPlus":
        g = _div(r, z_of(pos, neg, cp), rule.stabilizer)
        return split(g, pos, neg)
    if name == "AlphaBeta":
        gp = _div(r, z_of(pos, neg, cp), rule.stabilizer)
        gn = _div(r, z_of(neg, pos, cn), rule.stabilizer)
        return rule.alpha * split(gp, pos, neg) - rule.beta * split(gn, neg, pos)
    if name == "Gamma":
        gam = rule.gamma

        def up(v):
            return full(v) + gam * pos(v)

        def down(v):
            return full(v) + gam * neg(v)

        g1 = _div(jnp.where(out > 0, r, 0), z_of(up, down, c + gam * cp), rule.stabilizer)
        g2 = _div(jnp.where(out < 0, r, 0), z_of(down, up, c + gam * cn), rule.stabilizer)
        return split(g1, up, down) + split(g2, down, up)
    if name == "ZBox":
        low = jnp.broadcast_to(jnp.asarray(rule.low, x.dtype), x.shape)
        high = jnp.broadcast_to(jnp.asarray(rule.high, x.dtype), x.shape)
        g = _div(r, full(x) + c - (pos(low) + cp) - (neg(high) + cn), rule.stabilizer)
        return x * vt(full, x, g) - low * vt(pos, low, g) - high * vt(neg, high, g)
    if name == "Flat":
        ones_w, ones_x = jnp.ones_like(w), jnp.ones_like(x)

        def flat(v):
            return lin(ones_w, v)

        return vt(flat, ones_x, _div(r, flat(ones_x), rule.stabilizer))
    if name == "WSquare":
        w2, ones_x = w * w, jnp.ones_like(x)

        def sq(v):
            return s * s * lin(w2, v) if scaled else lin(w2, v)

        return vt(sq, ones_x, _div(r, sq(ones_x) + c * c, rule.stabilizer))
    if name == "Pass":
        if r.shape != x.shape:
            raise UnsupportedPrimitiveError(
                f"lrp: Pass chosen for the {layer.kind} at {layer.line}, which changes shape")
        return r
    raise UnsupportedPrimitiveError(f"lrp: unknown rule {rule!r} for the {layer.kind} at "
                                    f"{layer.line}")


# ---------------------------------------------------------------------------------------------
# Units: named activations, softmax, normalisation layers.


def _apply_unit(interp, unit, opts, outs) -> list[_Val]:
    vals = [interp.read(v) for v in unit.inputs]
    dep_idx = [i for i, v in enumerate(vals) if not v.free]
    last = unit.eqns[-1]
    if len(dep_idx) != 1 or len(unit.outputs) != 1 or unit.outputs != tuple(last.outvars):
        raise _unsupported(last, f"the {unit.kind} {unit.name} (called at {unit.line}) must "
                                 "read one input-dependent value and give one output")
    if unit.kind == "other":
        raise _unsupported(last, f"jax.nn.{unit.name} (called at {unit.line or interp.site}) "
                                 "has no relevance rule", interp.site)
    i = dep_idx[0]
    x, z = vals[i].value, outs[0].value
    frees = tuple(v.value for j, v in enumerate(vals) if j != i)
    in_var = unit.inputs[i]
    free_vars = [v for j, v in enumerate(unit.inputs) if j != i]

    def run(xv, fr, frozen=None):
        env = {in_var: xv, **dict(zip(free_vars, fr, strict=True))}
        return run_unit(unit, env, frozen=frozen)[0]

    interp.stats.count(f"lrp_{unit.kind}")
    interp.stats.sites += 1
    if unit.kind == "activation":
        if jnp.shape(x) != jnp.shape(z):
            raise _unsupported(last, f"{unit.name} (called at {unit.line}) is not elementwise")
        backward = _identity
    elif unit.kind == "softmax":
        def backward(xs: tuple, ops: tuple, out: jax.Array, r: jax.Array) -> tuple:
            _, vjp = jax.vjp(lambda v: run(v, ops), xs[0])
            if opts.softmax == "gradient":
                return vjp(r)
            return (xs[0] * vjp(r / out)[0],)
    else:  # norm: the normalisation factors held constant (AttnLRP Prop. 3.4)
        factors, affine = statistics(unit, [in_var])
        if unit.outputs[0] not in affine:
            raise _unsupported(last, f"the normalisation {unit.name} (called at {unit.line}) is "
                                     "not linear in its input once its statistics are held "
                                     "constant")
        eps = opts.norm_epsilon

        def backward(xs: tuple, ops: tuple, out: jax.Array, r: jax.Array) -> tuple:
            _, vjp = jax.vjp(lambda v: run(v, ops, lambda var: var in factors), xs[0])
            return (xs[0] * vjp(_div(r, out, eps))[0],)

    out = _with_rule(z, (x,), frees, backward)
    if unit.kind == "activation" and unit.name in _NONNEG_ACTIVATIONS:
        _mark_nonneg(interp, out)
    return [_Val(out)]
