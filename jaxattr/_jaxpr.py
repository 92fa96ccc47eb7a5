"""The one jaxpr re-interpreter: re-evaluate a traced function with some backward rules swapped.

``rewrite(fun, rules)`` returns a function with ``fun``'s signature and forward values whose
reverse-mode derivative uses the given rules:

* at every ReLU, ``rules.relu(x_in, a_out, g_out) -> g_in`` (a ``jax.custom_vjp``), where a ReLU
  is ``jax.nn.relu`` / ``flax.linen.relu`` / ``flax.nnx.relu`` (a ``custom_jvp_call`` around
  ``max(x, 0)``) or a raw ``max(x, 0)`` / ``max(0, x)`` against a literal, broadcast or constant
  zero. ``max(x, 0)`` whose result is clamped by ``min`` against a constant (``relu6``, ``clip``)
  is not a ReLU; neither are ``leaky_relu``, max-pooling or the max of two non-constant tensors;
* optionally at max-pooling (``reduce_window_max``), ``rules.maxpool`` builds the custom_vjp;
* optionally at SAME-padded convolutions, ``rules.same_conv_output`` wraps the conv output.

Dispatch goes through a registry keyed by primitive name. Control flow is rebuilt with the public
API around the re-interpreted bodies: ``jit``/``pjit`` and ``closed_call`` are inlined,
``remat`` becomes ``jax.checkpoint`` (same policy), ``scan``/``cond``/``while`` become
``lax.scan``/``lax.switch``/``lax.while_loop``. A ``custom_jvp_call`` is re-interpreted (dropping
the user's JVP rule) only if its body holds a ReLU; otherwise it is bound unchanged. A user's
``custom_vjp`` is bound unchanged: its backward rule is the user's explicit choice, so ReLUs inside
it keep it (we warn). Any other higher-order primitive that holds a ReLU raises
:class:`~jaxattr.errors.UnsupportedPrimitiveError` naming the primitive and source line; one
without a ReLU is bound unchanged.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from .errors import AttributionWarning, UnsupportedPrimitiveError

__all__ = ["Rules", "rewrite"]

# Primitives that change only shape or dtype: a zero in is a zero out.
_ZERO_PRESERVING = frozenset(
    {"broadcast_in_dim", "convert_element_type", "reshape", "squeeze", "expand_dims", "copy",
     "copy_p", "transpose"}
)
_JIT_NAMES = frozenset({"pjit", "jit", "closed_call", "core_call"})  # pjit renamed jit in 0.7


@dataclasses.dataclass(frozen=True)
class Rules:
    """What to swap. ``relu`` builds the ReLU's backward from ``(x_in, a_out, g_out)``."""

    relu: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None = None
    maxpool: Callable[..., Callable[[jax.Array], jax.Array]] | None = None
    same_conv_output: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None


@dataclasses.dataclass
class _Stats:
    relus: int = 0
    custom_vjp_with_relu: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Val:
    """A value in the interpreter's environment, with what is statically known about it."""

    value: Any
    const: bool = False  # computed from literals/constants only
    zero: bool | None = False  # known to be all zeros; None: a concrete constant, check on demand


def _is_zero(v: _Val) -> bool:
    # Constants (often large weights) are only inspected where a max or a reshape reads them.
    return _concrete_zero(v.value) if v.zero is None else v.zero


# ---------------------------------------------------------------------------------------------
# JAX-version compatibility lives here.


def _closed(jaxpr) -> jcore.ClosedJaxpr:
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        return jaxpr
    return jcore.ClosedJaxpr(jaxpr, ())


def _source_line(eqn) -> str:
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - internal API moved
        return "<unknown source>"


def _bind(eqn, invals):
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bind_params, tuple):  # jax < 0.7: (subfuns, params)
        subfuns, params = bind_params
    else:
        subfuns, params = (), bind_params
    ctx = getattr(eqn, "ctx", None)
    if ctx is not None:
        with ctx.manager:
            out = eqn.primitive.bind(*subfuns, *invals, **params)
    else:  # pragma: no cover - old jax
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return out if eqn.primitive.multiple_results else [out]


# ---------------------------------------------------------------------------------------------
# Static analysis: is there a ReLU-like max anywhere inside?


def _is_zero_literal(v) -> bool:
    if not isinstance(v, jcore.Literal):
        return False
    val = np.asarray(v.val)
    return val.size > 0 and bool(np.all(val == 0))


def contains_relu(jaxpr) -> bool:
    """Conservative check used for primitives we cannot re-interpret."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "max" and any(_is_zero_literal(v) for v in eqn.invars):
            return True
        if eqn.primitive.name == "custom_jvp_call" and eqn.params.get("name") == "relu":
            return True
        if any(contains_relu(sub) for sub in jcore.jaxprs_in_params(eqn.params)):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# The interpreter.


class _Interpreter:
    def __init__(self, rules: Rules):
        self.rules = rules
        self.stats = _Stats()
        self._relu = _make_relu(rules.relu) if rules.relu is not None else None

    # -- evaluation --------------------------------------------------------------------------

    def eval_closed(self, closed: jcore.ClosedJaxpr, args: list[_Val]) -> list[_Val]:
        consts = [_Val(c, const=True, zero=None) for c in closed.consts]
        return self.eval_jaxpr(closed.jaxpr, consts, args)

    def eval_jaxpr(self, jaxpr: jcore.Jaxpr, consts: list[_Val], args: list[_Val]) -> list[_Val]:
        env: dict[Any, _Val] = {}

        def read(v) -> _Val:
            if isinstance(v, jcore.Literal):
                return _Val(v.val, const=True, zero=_is_zero_literal(v))
            return env[v]

        for var, val in zip(jaxpr.constvars, consts, strict=True):
            env[var] = val
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = val
        known_const = {v for v in [*jaxpr.constvars, *jaxpr.invars] if env[v].const}
        clamped = _clamped_maxes(jaxpr, known_const)
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            handler = _HANDLERS.get(eqn.primitive.name, _default)
            outs = handler(self, eqn, invals, clamped)
            for var, out in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jcore.DropVar):
                    env[var] = out
        return [read(v) for v in jaxpr.outvars]

    def as_function(self, closed: jcore.ClosedJaxpr) -> Callable[..., list]:
        """A Python function of raw values evaluating ``closed`` with the rules."""

        def fn(*args):
            outs = self.eval_closed(closed, [_Val(a) for a in args])
            return [o.value for o in outs]

        return fn


def _concrete_zero(c) -> bool:
    if isinstance(c, jax.core.Tracer):
        return False
    try:
        arr = np.asarray(c)
    except Exception:
        return False
    return arr.size > 0 and arr.dtype.kind in "fiub" and bool(np.all(arr == 0))


def _clamped_maxes(jaxpr, known_const: set) -> set:
    """Outputs of ``max`` that a ``min`` against a constant clamps (relu6, clip): not ReLUs."""
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


def _default(interp: _Interpreter, eqn, invals: list[_Val], clamped) -> list[_Val]:
    if any(contains_relu(s) for s in jcore.jaxprs_in_params(eqn.params)):
        raise UnsupportedPrimitiveError(
            f"jaxattr cannot rewrite the backward rules inside the higher-order primitive "
            f"'{eqn.primitive.name}' (at {_source_line(eqn)}), which contains a ReLU. Supported: "
            "jit/pjit, remat/checkpoint, custom_jvp_call, custom_vjp_call, scan, cond, while."
        )
    return _unchanged(eqn, invals)


def _unchanged(eqn, invals: list[_Val]) -> list[_Val]:
    subjaxprs = list(jcore.jaxprs_in_params(eqn.params))
    const = bool(invals) and all(v.const for v in invals) and not subjaxprs
    outs = _bind(eqn, [v.value for v in invals])
    zero = eqn.primitive.name in _ZERO_PRESERVING and bool(invals) and _is_zero(invals[0])
    return [_Val(o, const=const, zero=zero) for o in outs]


def _max(interp: _Interpreter, eqn, invals: list[_Val], clamped) -> list[_Val]:
    (a, b), out = invals, eqn.outvars[0]
    dtype = out.aval.dtype
    a_zero, b_zero = _is_zero(a), _is_zero(b)
    is_relu = (
        interp._relu is not None
        and jnp.issubdtype(dtype, jnp.floating)
        and out not in clamped
        and (a_zero != b_zero)
        and not (a.const and b.const)
    )
    if not is_relu:
        return _default(interp, eqn, invals, clamped)
    x = b.value if a_zero else a.value
    x = jnp.broadcast_to(x, out.aval.shape).astype(dtype)
    interp.stats.relus += 1
    return [_Val(interp._relu(x))]


def _inline(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    return interp.eval_closed(_closed(eqn.params["jaxpr"]), invals)


def _custom_jvp(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    before = interp.stats.relus
    outs = interp.eval_closed(_closed(eqn.params["call_jaxpr"]), invals)
    if interp.stats.relus > before:
        return outs  # the body held a ReLU: its rewritten body replaces the user's JVP rule
    return _unchanged(eqn, invals)  # keep the original (and its rule) untouched


def _custom_vjp(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    if contains_relu(eqn.params["call_jaxpr"]):
        interp.stats.custom_vjp_with_relu.append(
            f"{eqn.params.get('name', 'custom_vjp')} at {_source_line(eqn)}"
        )
    return _unchanged(eqn, invals)


def _remat(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    closed = _closed(eqn.params["jaxpr"])
    fn = jax.checkpoint(
        interp.as_function(closed),
        prevent_cse=eqn.params.get("prevent_cse", True),
        policy=eqn.params.get("policy"),
    )
    return [_Val(o) for o in fn(*[v.value for v in invals])]


def _scan(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    p = eqn.params
    body = interp.as_function(p["jaxpr"])
    nc, nk = p["num_consts"], p["num_carry"]
    consts = [v.value for v in invals[:nc]]
    init = [v.value for v in invals[nc : nc + nk]]
    xs = [v.value for v in invals[nc + nk :]]

    def step(carry, x):
        outs = body(*consts, *carry, *x)
        return outs[:nk], outs[nk:]

    carry, ys = lax.scan(step, init, xs, length=p["length"], reverse=p["reverse"],
                         unroll=p.get("unroll", 1))
    return [_Val(o) for o in [*carry, *ys]]


def _cond(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    index, *ops = [v.value for v in invals]
    branches = [interp.as_function(br) for br in eqn.params["branches"]]
    outs = lax.switch(index, branches, *ops)
    return [_Val(o) for o in outs]


def _while(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    vals = [v.value for v in invals]
    cconsts, bconsts, init = vals[:cn], vals[cn : cn + bn], vals[cn + bn :]
    cond_fn, body_fn = interp.as_function(p["cond_jaxpr"]), interp.as_function(p["body_jaxpr"])
    outs = lax.while_loop(
        lambda c: cond_fn(*cconsts, *c)[0], lambda c: body_fn(*bconsts, *c), init
    )
    return [_Val(o) for o in outs]


def _reduce_window_max(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    if interp.rules.maxpool is None:
        return _default(interp, eqn, invals, clamped)
    pool = interp.rules.maxpool(**eqn.params)
    return [_Val(pool(invals[0].value))]


def _conv(interp: _Interpreter, eqn, invals, clamped) -> list[_Val]:
    outs = _default(interp, eqn, invals, clamped)
    if interp.rules.same_conv_output is None or not _is_same_padded(eqn):
        return outs
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


_HANDLERS: dict[str, Callable] = {
    "max": _max,
    "custom_jvp_call": _custom_jvp,
    "custom_vjp_call": _custom_vjp,
    "custom_vjp_call_jaxpr": _custom_vjp,
    "checkpoint": _remat,
    "remat2": _remat,
    "remat": _remat,
    "scan": _scan,
    "cond": _cond,
    "while": _while,
    "reduce_window_max": _reduce_window_max,
    "conv_general_dilated": _conv,
    **{name: _inline for name in _JIT_NAMES},
}


# ---------------------------------------------------------------------------------------------
# ReLU as custom_vjp with a swapped backward.


def _make_relu(rule):
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, jnp.zeros((), x.dtype))

    def fwd(x):
        a = relu(x)
        return a, (x, a)

    def bwd(res, g):
        x, a = res
        return (rule(x, a, g).astype(g.dtype),)

    relu.defvjp(fwd, bwd)
    return relu


# ---------------------------------------------------------------------------------------------
# Public entry point.


def rewrite(
    fun: Callable,
    rules: Rules,
    *,
    name: str = "rewrite",
    check_output: Callable[[Any], None] | None = None,
) -> Callable:
    """``fun`` with the same forward pass, re-interpreted so its backward rules are swapped.

    Tracing happens at call time, inside whatever transformation the caller applies (jit, vmap,
    grad), so ``jax.jit`` caches on shapes as usual. ``check_output`` sees the output's
    ``ShapeDtypeStruct`` pytree before anything is evaluated (to reject bad scores early).
    """

    def rewritten(*args):
        closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*args)
        if check_output is not None:
            check_output(out_shape)
        interp = _Interpreter(rules)
        flat_args = jax.tree_util.tree_leaves(args)
        outs = interp.eval_closed(closed, [_Val(a) for a in flat_args])
        _report(interp.stats, rules, name)
        treedef = jax.tree_util.tree_structure(out_shape)
        return jax.tree_util.tree_unflatten(treedef, [o.value for o in outs])

    return rewritten


def _report(stats: _Stats, rules: Rules, name: str) -> None:
    for where in stats.custom_vjp_with_relu:
        warnings.warn(
            f"{name}: the ReLUs inside the user-defined custom_vjp function {where} keep that "
            "function's own backward rule (jaxattr does not rewrite a user's custom_vjp).",
            AttributionWarning,
            stacklevel=4,
        )
    if rules.relu is not None and stats.relus == 0:
        warnings.warn(
            f"{name}: the function contains no ReLU (jax.nn.relu or max(x, 0)); the result "
            "equals the plain gradient.",
            AttributionWarning,
            stacklevel=4,
        )
