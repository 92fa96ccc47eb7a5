"""The ReLU rule set of the engine: the one ReLU detector, and the swapped backward rules.

What counts as a ReLU is stated once, in :mod:`jaxattr._jaxpr`'s docstring: the named
``jax.nn.relu``; a raw ``max(x, 0)`` written in the user's own code only with ``raw_max=True``.
This module registers, with the walker (:func:`jaxattr._jaxpr.register`):

* ``custom_jvp_call``: ``jax.nn.relu`` becomes a ``jax.custom_vjp`` whose backward is
  ``Rules.relu(a_out, g_out)``; any other function with its own rule keeps it (noted, for the
  warning, when it holds a ``jax.nn.relu``);
* ``max``: a raw ``max(x, 0)`` (rewritten by opt-in; otherwise its line is noted);
* ``gt``/``lt``/``select_n``/``mul``: ReLUs spelled ``where(x > 0, x, 0)`` or ``x * (x > 0)``
  are noted (not rewritten);
* ``reduce_window_max`` (``Rules.maxpool``) and SAME-padded ``conv_general_dilated``
  (``Rules.same_conv_output``): RectGrad's max-pool and padding-trick variants;
* one report per walked function: the warning that says what was not rewritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from ._compat import in_library, jaxprs_in_params
from ._compat import source_file as _source_file
from ._compat import source_line as _source_line
from ._jaxpr import (
    Rules,
    _avals,
    _custom_body,
    _custom_name,
    _Interpreter,
    _is_nn_relu,
    _is_zero,
    _Stats,
    _Val,
    register,
    register_analysis,
    register_report,
)
from .errors import warn

__all__ = ["ReluReport", "find_relus"]

_COUNT_ONLY = Rules(relu=lambda a, g: g, relu_reads_output=False)


# ---------------------------------------------------------------------------------------------
# What a ReLU is.


def _clamped_maxes(jaxpr, known_const: set, known_free: set | frozenset = frozenset()) -> set:
    """Outputs of ``max`` that a ``min`` against a constant clamps (``clip``): not ReLUs."""
    consts = set(known_const)
    for eqn in jaxpr.eqns:  # vars computed from constants only
        if eqn.invars and all(isinstance(v, jcore.Literal) or v in consts for v in eqn.invars):
            consts.update(eqn.outvars)
    clamped = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "min":
            a, b = eqn.invars
            for x, y in ((a, b), (b, a)):
                y_const = isinstance(y, jcore.Literal) or y in consts
                if not isinstance(x, jcore.Literal) and y_const:
                    clamped.add(x)
    return clamped


register_analysis("clamped_maxes", _clamped_maxes)


def _contains_max_or_relu(jaxpr) -> bool:
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    return any(eqn.primitive.name in ("max", "reduce_window_max") or _is_nn_relu(eqn)
               or any(_contains_max_or_relu(s) for s in jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def _contains_nn_relu(jaxpr) -> bool:
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    return any(_is_nn_relu(eqn) or any(_contains_nn_relu(s)
                                        for s in jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def _in_library(eqn) -> bool:
    return in_library(_source_file(eqn))


# ---------------------------------------------------------------------------------------------
# ReLU as custom_vjp with a swapped backward.


def _make_relu(rule, reads_output: bool):
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, jnp.zeros((), x.dtype))

    def fwd(x):
        a = jnp.maximum(x, jnp.zeros((), x.dtype))
        return a, (a if reads_output else None)

    def bwd(a, g):
        return (rule(a, g).astype(g.dtype),)

    relu.defvjp(fwd, bwd)
    return relu


def _apply_relu(interp: _Interpreter, x, dtype, shape) -> list[_Val]:
    rules = interp.rules
    relu = interp.cache.get("relu")
    if relu is None:  # one custom_vjp per walk, shared by the bodies
        relu = interp.cache["relu"] = _make_relu(rules.relu, rules.relu_reads_output)
    x = jnp.broadcast_to(x, shape).astype(interp.dtype or dtype)
    interp.stats.count("relu")
    interp.stats.sites += 1
    return [_Val(relu(x))]


def _active(interp: _Interpreter) -> bool:
    return interp.rules.relu is not None and not interp.inside_custom


# ---------------------------------------------------------------------------------------------
# Handlers: (interp, eqn, invals, ctx, next_) -> outvals.


@register("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")
def _custom_rule(interp: _Interpreter, eqn, invals, ctx, next_) -> list[_Val]:
    """``jax.nn.relu`` is rewritten; another function with its own rule keeps it (the walker),
    noted when a ``jax.nn.relu`` is inside (its rule is kept: the user is warned)."""
    if _active(interp) and _is_nn_relu(eqn):
        out = eqn.outvars[0].aval
        return _apply_relu(interp, invals[0].value, out.dtype, out.shape)
    if _active(interp) and _contains_nn_relu(_custom_body(eqn)):
        interp.stats.note("in_custom",
                          f"{_custom_name(eqn)} ({eqn.primitive.name}) at {_source_line(eqn)}")
    return next_()


@register("max")
def _max(interp: _Interpreter, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    """A raw ``max(x, 0)``: rewritten only with ``Rules.raw_max`` and in the user's own code;
    otherwise a user-code site is noted, so that a function with no named ReLU warns."""
    (a, b), out = invals, eqn.outvars[0]
    raw_relu = (
        _active(interp)
        and jnp.issubdtype(out.aval.dtype, jnp.floating)
        and out not in ctx["clamped_maxes"]
        and not (a.const and b.const)
        and _is_zero(a) != _is_zero(b)
        and not _in_library(eqn)
    )
    if not raw_relu:
        return next_()
    if not interp.rules.raw_max:
        interp.stats.note("raw_max", interp.site or "<unknown source>")
        return next_()
    x = b.value if _is_zero(a) else a.value
    return _apply_relu(interp, x, out.aval.dtype, out.aval.shape)


@register("gt", "lt")
def _positive_mask(interp: _Interpreter, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    """``gt(x, 0)`` / ``lt(0, x)``: remember that the result is x's positive mask."""
    outs = next_()
    a, b = invals
    x, zero = (a, b) if eqn.primitive.name == "gt" else (b, a)
    if not x.const and _is_zero(zero) and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.floating):
        outs[0].positive_mask_of = x
    return outs


def _note_relu_like(interp: _Interpreter) -> None:
    if not interp.inside_custom:
        interp.stats.note("relu_like", interp.site or "<unknown source>")


@register("select_n")
def _select_n(interp: _Interpreter, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    if len(invals) == 3 and interp.rules.relu is not None:  # select_n(x > 0, 0, x) is a ReLU
        pred, on_false, on_true = invals
        if pred.positive_mask_of is on_true and _is_zero(on_false):
            _note_relu_like(interp)
    return next_()


@register("mul")
def _mul(interp: _Interpreter, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    a, b = invals
    if interp.rules.relu is not None and (b.positive_mask_of is a or a.positive_mask_of is b):
        _note_relu_like(interp)  # x * (x > 0) is a ReLU
    return next_()


@register("reduce_window_max")
def _reduce_window_max(interp: _Interpreter, eqn, invals, ctx, next_) -> list[_Val]:
    if interp.rules.maxpool is None or interp.inside_custom:
        return next_()
    interp.stats.sites += 1
    pool = interp.rules.maxpool(**eqn.params)
    return [_Val(pool(invals[0].value))]


@register("conv_general_dilated")
def _same_conv(interp: _Interpreter, eqn, invals, ctx, next_) -> list[_Val]:
    outs = next_()
    if (interp.rules.same_conv_output is None or interp.inside_custom
            or not _is_same_padded(eqn)):
        return outs
    interp.stats.sites += 1
    spatial = tuple(eqn.params["dimension_numbers"].out_spec[2:])
    return [_Val(interp.rules.same_conv_output(outs[0].value, spatial))]


def _is_same_padded(eqn) -> bool:
    """Padded convolution whose output keeps ceil(input / stride) positions (SAME)."""
    p = eqn.params
    if not any(lo > 0 or hi > 0 for lo, hi in p["padding"]):
        return False
    dn = p["dimension_numbers"]
    in_shape, out_shape = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    dil = p.get("lhs_dilation") or (1,) * len(p["window_strides"])
    for d_in, d_out, s, ld in zip(dn.lhs_spec[2:], dn.out_spec[2:], p["window_strides"], dil,
                                  strict=True):
        if ld != 1 or out_shape[d_out] != -(-in_shape[d_in] // s):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# What the detector found: the public report and the one warning per traced function.


@dataclasses.dataclass(frozen=True)
class ReluReport:
    """What the engine finds in a function: ReLUs it would rewrite, and ReLUs it would not."""

    relus: int
    in_custom: tuple[str, ...]  # custom_jvp/custom_vjp functions holding a jax.nn.relu
    relu_like: tuple[str, ...]  # where(x > 0, x, 0) / x * (x > 0), by source line
    raw_max: tuple[str, ...] = ()  # max(x, 0) in the user's code, kept (no raw_max=True)


def find_relus(fun: Callable, *args: Any, raw_max: bool = False) -> ReluReport:
    """Run the ReLU detector on ``fun(*args)`` (arrays or ShapeDtypeStructs); nothing is computed.

    >>> import jax, jax.numpy as jnp
    >>> find_relus(lambda x: jnp.sum(jax.nn.relu(x) + jax.nn.softplus(x)), jnp.ones(3)).relus
    1
    >>> find_relus(lambda x: jnp.sum(jnp.maximum(x, 0.0)), jnp.ones(3)).relus
    0
    >>> find_relus(lambda x: jnp.sum(jnp.maximum(x, 0.0)), jnp.ones(3), raw_max=True).relus
    1
    """
    closed = jax.make_jaxpr(fun)(*args)
    interp = _Interpreter(dataclasses.replace(_COUNT_ONLY, raw_max=raw_max))
    stats = _Stats()
    jax.make_jaxpr(interp.sub_function(closed, [None] * len(closed.jaxpr.invars), stats))(
        *_avals(closed.jaxpr.invars))
    notes = stats.notes
    return ReluReport(stats.counts.get("relu", 0), tuple(notes.get("in_custom", ())),
                      tuple(notes.get("relu_like", ())), tuple(notes.get("raw_max", ())))


def _report(stats: _Stats, rules: Rules, name: str) -> None:
    """At most one warning per trace, saying everything the user needs at once."""
    if rules.relu is None:
        return
    relus = stats.counts.get("relu", 0)
    in_custom, relu_like, raw_max_sites = (stats.notes.get(k, []) for k in (
        "in_custom", "relu_like", "raw_max"))
    parts = []
    if in_custom:
        parts.append(
            "the jax.nn.relu calls inside the user-defined function(s) "
            + "; ".join(in_custom)
            + " keep that function's own backward rule (jaxattr never rewrites inside a "
            "custom_jvp/custom_vjp other than jax.nn.relu)"
        )
    if relu_like:
        parts.append(
            "the ReLUs written as where(x > 0, x, 0) or x * (x > 0) at "
            + "; ".join(relu_like)
            + " are not rewritten (write jax.nn.relu(x) to have them rectified)"
        )
    if relus == 0 and raw_max_sites:
        parts.append(
            "the max(x, 0) at " + "; ".join(raw_max_sites) + " are kept as written: jaxattr "
            "rewrites the named jax.nn.relu only, since a raw max(x, 0) is as often a clamp "
            "(e.g. of a variance) as an activation. If they are ReLUs, write jax.nn.relu(x) "
            f"or pass {name}(f, raw_max=True)"
        )
    if relus == 0:
        also = ", or max(x, 0) in your own code" if rules.raw_max else ""
        msg = (f"{name}: f contains no ReLU that jaxattr rewrites (jax.nn.relu{also}, outside "
               "functions with their own derivative rule), so the map equals the plain gradient")
        msg += "; " + "; and ".join(parts) if parts else ""
    elif parts:
        msg = f"{name}: {relus} ReLU(s) rewritten, but " + "; and ".join(parts)
    else:
        return
    warn(msg + ".")


register_report(_report, may_rewrite=_contains_max_or_relu)
