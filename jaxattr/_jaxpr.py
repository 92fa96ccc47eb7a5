"""The one jaxpr re-interpreter: re-evaluate a traced function with some backward rules swapped.

``rewrite(fun, rules)`` returns a function with ``fun``'s signature and forward values whose
reverse-mode derivative uses the given rules. It is also the library's one ReLU detector:
:func:`find_relus` runs the same interpreter without rules to report what it would rewrite.

**What is a ReLU** (the rule, stated once): what an operation *is*, never what its arithmetic
looks like.

1. ``jax.nn.relu`` -- which is also ``flax.linen.relu`` and ``flax.nnx.relu``, and what Equinox
   and Haiku layers call -- identified by what it is: the ``custom_jvp`` whose primal function is
   the one defined in ``jax.nn`` (compared by its source location, read from ``jax.nn.relu``
   itself), not by what its body contains. This is the default and only rule.
2. Only with the explicit opt-in ``raw_max=True`` (``Rules.raw_max``): also a raw ``max(x, 0)``
   or ``max(0, x)`` of floating dtype, against a literal, broadcast or constant zero, whose
   result is not clamped by a ``min`` against a constant (``jnp.clip(x, 0, c)`` is not a ReLU),
   written in the user's own code: never in the source of JAX, Flax, Equinox, Haiku, optax or
   penzai (their ReLUs call ``jax.nn.relu``; their ``max(x, 0)`` are clamps, such as the
   variance ``max(0, E[x^2] - E[x]^2)`` of every Flax and Equinox LayerNorm/GroupNorm), and
   never inside the definition of another function with its own derivative rule.

Without the opt-in a raw ``max(x, 0)`` is left as written, whatever it computes: a clamp of a
statistic is not an activation (the official RectGrad code overrides TensorFlow's ``Relu`` op
and leaves ``Maximum`` alone; Captum and Zennit modify ``nn.ReLU`` modules only). When ``f`` has
no named ReLU, the one warning names the source lines of the ``max(x, 0)`` written in the
user's code, so a hand-written ReLU is not missed silently.

Inside a ``custom_jvp`` or ``custom_vjp`` that is not ``jax.nn.relu`` (``softplus``'s
``logaddexp``, ``relu6``, a user's function) nothing is rewritten; that function keeps its own
rule. If such a function contains a ``jax.nn.relu``, jaxattr warns. Likewise the other
activations of ``jax.nn`` are opaque (``celu`` computes ``max(x, 0) + ...``).

Everything else is left alone: ``leaky_relu``, ``elu``, ``gelu``, ``softplus``, ``relu6``,
max-pooling (unless ``rules.maxpool``), the max of two non-constant tensors. ReLUs spelled
``where(x > 0, x, 0)`` or ``x * (x > 0)`` are not rewritten either: jaxattr warns and names the
source line (write ``jax.nn.relu(x)``).

**One walker, several rule sets.** This module is the walker: it evaluates a jaxpr equation by
equation, follows control flow, tracks what is statically known about each value (computed from
constants only, all zeros), and knows no rule. Rule sets are modules that register handlers with
it, per primitive (:func:`register`; a handler gets ``next_`` to evaluate the equation with the
handlers after it and finally the walker's own), per-jaxpr analyses (:func:`register_analysis`)
and end-of-walk reports (:func:`register_report`), as folx registers its rules:
``jaxattr._rules_relu`` (the ReLU detector and rules, RectGrad's max-pool and padding-trick
variants, the "no ReLU" warning) and ``jaxattr._rules_layout`` (the canonical-layout mode). A new
rule set touches no walker code.

What the ReLU rule set swaps:

* at every ReLU, ``rules.relu(a_out, g_out) -> g_in`` in a ``jax.custom_vjp`` that saves only
  the ReLU's output ``a_out`` (``x > 0`` iff ``a > 0``), or nothing if ``rules.relu_reads_output``
  is false;
* optionally at max-pooling (``reduce_window_max``), ``rules.maxpool`` builds the custom_vjp;
* optionally at SAME-padded convolutions, ``rules.same_conv_output`` wraps the conv output.

Control flow (the walker's own handlers): a higher-order primitive whose body
holds nothing to rewrite is bound unchanged. Otherwise: ``jit``/``pjit`` is re-bound with the
rewritten body and all its other parameters (shardings, donation, ``inline``, name);
``closed_call``/``core_call`` are inlined; ``remat`` becomes ``jax.checkpoint`` (same policy);
``scan``/``cond``/``while`` become ``lax.scan``/``lax.switch``/``lax.while_loop``; ``shard_map``
becomes ``jax.shard_map`` with the same mesh and specs. Any other higher-order primitive holding
something to rewrite raises :class:`~jaxattr.errors.UnsupportedPrimitiveError` naming the primitive
and source line: a ReLU never keeps its plain rule silently.

The same interpreter has one mode that changes no value and no derivative:
:func:`canonical_convs` (``Rules(canonical_conv=True)``) computes every convolution in XLA:CPU's
canonical layout, which XLA:CPU itself only does at a program's top level. It is applied to loop
bodies on CPU (:func:`cpu_loop_body`); it also rewrites ``custom_jvp``/``custom_vjp`` bodies,
keeping their rules, and binds primitives it does not know as traced (speed is all that is at
stake there).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from ._compat import DropVar, add_note, jaxprs_in_params
from ._compat import bind as _bind
from ._compat import closed as _closed
from ._compat import rebind as _rebind
from ._compat import shard_map as _shard_map
from ._compat import source_line as _source_line
from .errors import UnsupportedPrimitiveError

__all__ = ["ReluReport", "Rules", "canonical_convs", "cpu_loop_body", "find_relus", "register",
           "register_analysis", "register_prepass", "register_report", "rewrite"]

# Set on an exception once its note names the primitive (an outer interpreter adds none).
_NOTED = "_jaxattr_noted"

# Primitives that change only shape, dtype or variance annotations: a zero in is a zero out.
_ZERO_PRESERVING = frozenset(
    {"broadcast_in_dim", "convert_element_type", "reshape", "squeeze", "expand_dims", "copy",
     "copy_p", "transpose", "pvary", "device_put", "reduce_precision"}
)


@dataclasses.dataclass(frozen=True)
class Rules:
    """What to swap. ``relu(a_out, g_out) -> g_in`` is the ReLU's backward rule."""

    relu: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    relu_reads_output: bool = True
    maxpool: Callable[..., Callable[[jax.Array], jax.Array]] | None = None
    same_conv_output: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None
    raw_max: bool = False  # also rewrite a raw max(x, 0) written in the user's own code
    dtype: Any = None  # compute dtype: every floating value is cast to it (e.g. bfloat16)
    canonical_conv: bool = False  # convolutions in XLA:CPU's fast layout (see canonical_convs)
    # the options of other rule sets (relevance rules, DeepLIFT): each rule set looks for its own
    # options' class with ``Rules.option`` and is inactive when they are absent
    options: tuple = ()

    def option(self, cls: type) -> Any:
        """This walk's options of the rule set whose options class is ``cls``, or ``None``."""
        return next((o for o in self.options if isinstance(o, cls)), None)

    @property
    def changes_gradients(self) -> bool:
        """Whether a site left unrewritten would give a wrong map (not only a slower one)."""
        return (self.relu is not None or self.maxpool is not None
                or self.same_conv_output is not None or bool(self.options))


@dataclasses.dataclass
class _Stats:
    """What a walk rewrote (``sites``: every site of every rule set) and what rule sets noted:
    ``counts[kind]`` and ``notes[kind]`` (source lines, each once), merged up from bodies."""

    sites: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    out_facts: list[tuple[bool, bool, bool]] = dataclasses.field(default_factory=list)  # not merged

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def note(self, kind: str, where: str) -> None:
        seen = self.notes.setdefault(kind, [])
        if where not in seen:
            seen.append(where)

    def merge(self, other: _Stats) -> None:
        self.sites += other.sites
        for kind, n in other.counts.items():
            self.count(kind, n)
        for kind, wheres in other.notes.items():
            for where in wheres:
                self.note(kind, where)


@dataclasses.dataclass(eq=False)
class _Val:
    """A value in the interpreter's environment, with what is statically known about it."""

    value: Any
    const: bool = False  # computed from literals/constants only
    zero: bool | Callable[[], bool] = False  # all zeros; a thunk: a concrete constant, on demand
    positive_mask_of: _Val | None = None  # this is (x > 0) (as bool or 0/1) for that x
    # free of the walked function's arguments (constants, also traced ones: parameters closed
    # over, or passed through by the transform's calling convention); set by the walker
    free: bool = False
    # rule sets' marks, flowing forward: an equation's outputs carry every mark of its inputs
    tags: frozenset = frozenset()


def _is_zero(v: _Val) -> bool:
    # Constants (often large weights) are only inspected where a max reads them.
    if callable(v.zero):
        v.zero = bool(v.zero())
    return v.zero


# ---------------------------------------------------------------------------------------------
# Identity of jax.nn's functions and of custom rules' bodies (JAX-version differences: _compat).


def _func_src(closed) -> str | None:
    jaxpr = closed.jaxpr if isinstance(closed, jcore.ClosedJaxpr) else closed
    info = getattr(jaxpr, "debug_info", None)
    return getattr(info, "func_src_info", None)


@functools.cache
def _nn_relu_identity() -> str | None:
    """Source location of ``jax.nn.relu``'s primal function, as custom_jvp_call records it."""
    eqn = jax.make_jaxpr(jax.nn.relu)(jax.ShapeDtypeStruct((), jnp.float32)).jaxpr.eqns[0]
    return _func_src(eqn.params["call_jaxpr"])


def _nn_source_file() -> str | None:
    ident = _nn_relu_identity()
    return ident.split(" at ", 1)[1].rsplit(":", 1)[0] if ident and " at " in ident else None


def _is_nn_activation_body(eqn) -> bool:
    """A jit whose body is one of jax.nn's own activations (``celu`` computes ``max(x, 0) +
    ...``): its maxes are part of that activation's definition, not ReLUs."""
    src, path = _func_src(eqn.params["jaxpr"]), _nn_source_file()
    return bool(src and path and " at " in src and src.split(" at ", 1)[1].rsplit(":", 1)[0]
                == path)


def _is_nn_relu(eqn) -> bool:
    if eqn.primitive.name != "custom_jvp_call":
        return False
    ident = _nn_relu_identity()
    return ident is not None and _func_src(eqn.params["call_jaxpr"]) == ident


def _custom_name(eqn) -> str:
    for key in ("call_jaxpr", "fun_jaxpr"):
        src = _func_src(eqn.params[key]) if key in eqn.params else None
        if src:
            return src.split(" at ")[0]
    return eqn.params.get("name", eqn.primitive.name)


def _custom_body(eqn) -> jcore.ClosedJaxpr:
    for key in ("call_jaxpr", "fun_jaxpr"):
        if key in eqn.params:
            return _closed(eqn.params[key])
    raise UnsupportedPrimitiveError(  # pragma: no cover - a future JAX renamed the parameter
        f"jaxattr does not know where '{eqn.primitive.name}' keeps its body in this JAX version"
    )


def _value_avals(vals) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(np.shape(v.value), jnp.result_type(v.value)) for v in vals]


def _avals(vars_) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype,
                                 weak_type=getattr(v.aval, "weak_type", False)) for v in vars_]


# ---------------------------------------------------------------------------------------------
# The interpreter.


class _Interpreter:
    def __init__(self, rules: Rules, *, inside_custom: bool = False):
        self.rules = rules
        self.inside_custom = inside_custom
        self.site = ""  # the user's source line of the equation being interpreted
        self.read: Callable[[Any], _Val] | None = None  # the environment of the current jaxpr
        self.dtype = rules.dtype
        self.stats = _Stats()
        self.cache: dict[Any, Any] = {}  # rule sets' per-walk objects, shared with bodies

    def child(self) -> _Interpreter:
        sub = _Interpreter.__new__(_Interpreter)
        sub.rules, sub.inside_custom, sub.cache = self.rules, self.inside_custom, self.cache
        sub.dtype = self.dtype
        sub.site = self.site  # inside jax's own functions, point at the user's call
        sub.read = None
        sub.stats = _Stats()
        return sub

    # -- evaluation --------------------------------------------------------------------------

    def cast(self, v: _Val) -> _Val:
        """``v`` in the compute dtype (cast mode): floating values only; facts are kept."""
        value = v.value
        if self.dtype is None or not hasattr(value, "dtype") and not isinstance(value, float):
            return v
        dtype = jnp.result_type(value)
        if not jnp.issubdtype(dtype, jnp.floating) or dtype == self.dtype:
            return v
        return _Val(jnp.asarray(value).astype(self.dtype), const=v.const, zero=v.zero,
                    positive_mask_of=v.positive_mask_of, free=v.free, tags=v.tags)

    def casting(self, eqn, invals: list[_Val]) -> bool:
        """Whether some input's dtype differs from what ``eqn`` was traced with."""
        return self.dtype is not None and any(
            jnp.result_type(v.value) != var.aval.dtype for v, var in zip(invals, eqn.invars,
                                                                      strict=True)
            if hasattr(var.aval, "dtype"))

    def eval_closed(self, closed: jcore.ClosedJaxpr, args: list[_Val]) -> list[_Val]:
        consts = [_Val(c, const=not isinstance(c, jax.core.Tracer), free=True,
                       zero=functools.partial(_concrete_zero, c)) for c in closed.consts]
        return self.eval_jaxpr(closed.jaxpr, consts, args)

    def eval_jaxpr(self, jaxpr: jcore.Jaxpr, consts: list[_Val], args: list[_Val]) -> list[_Val]:
        env: dict[Any, _Val] = {}

        def read(v) -> _Val:
            if isinstance(v, jcore.Literal):
                return self.cast(_Val(v.val, const=True, zero=_is_zero_literal(v), free=True))
            return env[v]

        for var, val in zip(jaxpr.constvars, consts, strict=True):
            env[var] = self.cast(val)
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = self.cast(val)
        known_const = {v for v in [*jaxpr.constvars, *jaxpr.invars] if env[v].const}
        known_free = {v for v in [*jaxpr.constvars, *jaxpr.invars] if env[v].free}
        ctx = {name: analysis(jaxpr, known_const, known_free)
               for name, analysis in _ANALYSES.items()}
        outer_site, outer_read = self.site, self.read
        self.read = read  # handlers may read any value this jaxpr has computed so far
        for eqn in jaxpr.eqns:
            self.site = _source_line(eqn).strip() or outer_site
            invals = [read(v) for v in eqn.invars]
            try:
                outs = _dispatch(self, eqn, invals, ctx)
            except UnsupportedPrimitiveError:
                raise
            except Exception as e:  # name the primitive the interpreter was handling
                if not getattr(e, _NOTED, False):
                    add_note(e, f"jaxattr: while re-interpreting '{eqn.primitive.name}' at "
                                f"{_source_line(eqn)}")
                    setattr(e, _NOTED, True)
                raise
            free = all(v.free for v in invals)
            tags = frozenset().union(*(v.tags for v in invals))
            for var, out in zip(eqn.outvars, outs, strict=True):
                out.free = out.free or free
                out.tags = out.tags | tags
                if not isinstance(var, DropVar):
                    env[var] = self.cast(out)
        self.site, self.read = outer_site, outer_read
        return [read(v) for v in jaxpr.outvars]

    def sub_function(self, closed: jcore.ClosedJaxpr, facts: list[_Val | None],
                     stats: _Stats, *, inside_custom: bool = False) -> Callable[..., list]:
        """A function of raw values evaluating ``closed`` with the rules in a child interpreter.

        ``facts[i]`` (or ``None``: nothing known) is the outer value whose static facts argument
        ``i`` inherits: const- and zero-ness, and which other argument it is the positive mask of.
        The child's statistics are merged into ``stats`` each time the function is traced.
        """

        def fn(*args):
            sub = self.child()
            sub.inside_custom = sub.inside_custom or inside_custom
            vals = [_Val(a) if f is None else _Val(a, const=f.const, zero=f.zero, free=f.free,
                                                   tags=f.tags)
                    for a, f in zip(args, facts, strict=True)]
            outer_to_inner = {id(f): v for f, v in zip(facts, vals, strict=True) if f is not None}
            for f, v in zip(facts, vals, strict=True):
                if f is not None and f.positive_mask_of is not None:
                    v.positive_mask_of = outer_to_inner.get(id(f.positive_mask_of))
            outs = sub.eval_closed(closed, vals)
            stats.merge(sub.stats)
            stats.out_facts = [(o.const, _is_zero(o), o.free) for o in outs]
            return [o.value for o in outs]

        return fn

    def trace_rewritten(self, closed: jcore.ClosedJaxpr, facts: list[_Val | None],
                        avals: list, *, inside_custom: bool = False
                        ) -> tuple[jcore.ClosedJaxpr, _Stats]:
        """The rewritten body as a new ClosedJaxpr (one trace), with what was rewritten."""
        stats = _Stats()
        fn = self.sub_function(closed, facts, stats, inside_custom=inside_custom)
        new = jax.make_jaxpr(fn)(*avals)
        return new, stats


def _is_zero_literal(v) -> bool:
    if not isinstance(v, jcore.Literal):
        return False
    val = np.asarray(v.val)
    return val.size > 0 and bool(np.all(val == 0))


def _concrete_zero(c) -> bool:
    if isinstance(c, jax.core.Tracer):
        return False
    try:
        arr = np.asarray(c)
    except Exception:
        return False
    return arr.size > 0 and arr.dtype.kind in "fiub" and bool(np.all(arr == 0))


def _unchanged(interp: _Interpreter, eqn, invals: list[_Val]) -> list[_Val]:
    subjaxprs = list(jaxprs_in_params(eqn.params))
    const = bool(invals) and all(v.const for v in invals) and not subjaxprs
    values = [v.value for v in invals]
    if interp.casting(eqn, invals):
        if subjaxprs:  # typed bodies (custom rules, unknown primitives) run as traced
            values = [jnp.asarray(x).astype(var.aval.dtype) for x, var in zip(
                values, eqn.invars, strict=True)]
        else:  # a first-order primitive: its dtype parameters follow the compute dtype
            eqn = eqn.replace(params={
                k: (interp.dtype if k in ("new_dtype", "dtype") and v is not None
                    and jnp.issubdtype(v, jnp.floating) else v)
                for k, v in eqn.params.items()})
    outs = _bind(eqn, values)
    zero = eqn.primitive.name in _ZERO_PRESERVING and bool(invals) and invals[0].zero
    mask_of = (invals[0].positive_mask_of if eqn.primitive.name in _ZERO_PRESERVING and invals
               else None)
    return [_Val(o, const=const, zero=zero, positive_mask_of=mask_of) for o in outs]


def _default(interp: _Interpreter, eqn, invals: list[_Val], ctx) -> list[_Val]:
    subs = list(jaxprs_in_params(eqn.params))
    if subs and interp.rules.changes_gradients and _sites_in(interp, subs):
        raise UnsupportedPrimitiveError(
            f"jaxattr cannot rewrite the backward rules inside the higher-order primitive "
            f"'{eqn.primitive.name}' (at {_source_line(eqn)}), which contains a ReLU (or a layer "
            "the rules rewrite). Supported: jit/pjit, closed_call, remat/checkpoint, "
            "custom_jvp_call, custom_vjp_call, scan, cond, while, shard_map."
        )
    return _unchanged(interp, eqn, invals)


def _sites_in(interp: _Interpreter, subs) -> bool:
    """Whether the child interpreter would rewrite anything in these bodies (nothing known
    about their inputs). If a body cannot even be traced alone, assume it would."""
    for sub in subs:
        closed = _closed(sub)
        try:
            _, stats = interp.trace_rewritten(closed, [None] * len(closed.jaxpr.invars),
                                              _avals(closed.jaxpr.invars))
        except UnsupportedPrimitiveError:
            return True
        except Exception:
            return any(check(closed.jaxpr) for check in _MAY_REWRITE)
        if stats.sites:
            return True
    return False


def _custom_function(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    """A function with its own derivative rule keeps it.

    Canonical-layout mode (values only, no derivative changes) rewrites the body and re-binds
    it with the function's own derivative rule, traced from the original body, unchanged.
    """
    if interp.rules.canonical_conv and not interp.rules.changes_gradients and not interp.dtype:
        key = next(k for k in ("call_jaxpr", "fun_jaxpr") if k in eqn.params)
        body = _custom_body(eqn)
        new, stats = interp.trace_rewritten(body, invals, _avals(body.jaxpr.invars),
                                            inside_custom=True)
        interp.stats.merge(stats)
        if stats.sites:
            if not isinstance(eqn.params[key], jcore.ClosedJaxpr):  # pragma: no cover - old jax
                new = new.jaxpr if not new.consts else None
            if new is not None:
                return [_Val(o) for o in _rebind(eqn, [v.value for v in invals], **{key: new})]
    return _unchanged(interp, eqn, invals)


def _jit(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    closed = _closed(eqn.params["jaxpr"])
    casting = interp.casting(eqn, invals)
    new, stats = interp.trace_rewritten(
        closed, invals, _value_avals(invals) if casting else _avals(eqn.invars),
        inside_custom=_is_nn_activation_body(eqn))
    interp.stats.merge(stats)
    if stats.sites or casting:
        outs = _rebind(eqn, [v.value for v in invals], jaxpr=new)
    else:
        outs = _bind(eqn, [v.value for v in invals])
    # what the body computes from constants stays known (e.g. a zero made inside a jit)
    return [_Val(o, const=c, zero=z, free=f)
            for o, (c, z, f) in zip(outs, stats.out_facts, strict=True)]


def _inline_call(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    return interp.eval_closed(_closed(eqn.params["call_jaxpr"]), invals)


def _remat(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    casting = interp.casting(eqn, invals)
    new, stats = interp.trace_rewritten(_closed(eqn.params["jaxpr"]), invals,
                                        _value_avals(invals) if casting else _avals(eqn.invars))
    interp.stats.merge(stats)
    if not (stats.sites or casting):
        return _unchanged(interp, eqn, invals)
    fn = jax.checkpoint(jcore.jaxpr_as_fun(new), prevent_cse=eqn.params.get("prevent_cse", True),
                        policy=eqn.params.get("policy"))
    return [_Val(o) for o in fn(*[v.value for v in invals])]


def _scan(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    p = eqn.params
    nc, nk = p["num_consts"], p["num_carry"]
    body = _closed(p["jaxpr"])
    facts = [*invals[:nc], *[None] * nk, *invals[nc + nk:]]  # a carry changes: nothing known
    casting = interp.casting(eqn, invals)
    avals = (_value_avals(invals[:nc + nk]) + [
        jax.ShapeDtypeStruct(np.shape(v.value)[1:], jnp.result_type(v.value))
        for v in invals[nc + nk:]]) if casting else _avals(body.jaxpr.invars)
    new, stats = interp.trace_rewritten(body, facts, avals)
    interp.stats.merge(stats)
    if not (stats.sites or casting):
        return _unchanged(interp, eqn, invals)
    body_fn = jcore.jaxpr_as_fun(new)
    vals = [v.value for v in invals]
    consts, init, xs = vals[:nc], vals[nc:nc + nk], vals[nc + nk:]

    def step(carry, x):
        outs = body_fn(*consts, *carry, *x)
        return outs[:nk], outs[nk:]

    carry, ys = lax.scan(step, init, xs, length=p["length"], reverse=p["reverse"],
                         unroll=p.get("unroll", 1))
    return [_Val(o) for o in [*carry, *ys]]


def _cond(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    index, *ops = invals
    casting = interp.casting(eqn, invals)
    rewritten, any_sites = [], casting
    for br in eqn.params["branches"]:
        new, stats = interp.trace_rewritten(
            _closed(br), ops, _value_avals(ops) if casting else _avals(eqn.invars[1:]))
        interp.stats.merge(stats)
        any_sites |= bool(stats.sites)
        rewritten.append(jcore.jaxpr_as_fun(new))
    if not any_sites:
        return _unchanged(interp, eqn, invals)
    outs = lax.switch(index.value, rewritten, *[v.value for v in ops])
    return [_Val(o) for o in outs]


def _while(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, init = invals[:cn], invals[cn:cn + bn], invals[cn + bn:]
    casting = interp.casting(eqn, invals)
    avals = _value_avals(invals) if casting else _avals(eqn.invars)
    carry_avals = avals[cn + bn:]
    cond_new, cstats = interp.trace_rewritten(
        _closed(p["cond_jaxpr"]), [*cconsts, *[None] * len(init)], avals[:cn] + carry_avals)
    body_new, bstats = interp.trace_rewritten(
        _closed(p["body_jaxpr"]), [*bconsts, *[None] * len(init)],
        avals[cn:cn + bn] + carry_avals)
    interp.stats.merge(cstats)
    interp.stats.merge(bstats)
    if not (cstats.sites or bstats.sites or casting):
        return _unchanged(interp, eqn, invals)
    cond_fn, body_fn = jcore.jaxpr_as_fun(cond_new), jcore.jaxpr_as_fun(body_new)
    cc, bc = [v.value for v in cconsts], [v.value for v in bconsts]
    outs = lax.while_loop(lambda c: cond_fn(*cc, *c)[0], lambda c: body_fn(*bc, *c),
                          [v.value for v in init])
    return [_Val(o) for o in outs]


def _shard_map_handler(interp: _Interpreter, eqn, invals, ctx) -> list[_Val]:
    body = _closed(eqn.params["jaxpr"])
    stats = _Stats()
    try:
        outs = _shard_map(eqn, interp.sub_function(body, list(invals), stats),
                          [v.value for v in invals])
    except UnsupportedPrimitiveError:
        raise
    except Exception as e:
        if _sites_in(interp, [body]):
            raise UnsupportedPrimitiveError(
                f"jaxattr could not rebuild 'shard_map' (at {_source_line(eqn)}) around its "
                f"rewritten body ({type(e).__name__}: {e}), and the body contains a ReLU."
            ) from e
        return _unchanged(interp, eqn, invals)
    interp.stats.merge(stats)
    return [_Val(o) for o in outs]


# ---------------------------------------------------------------------------------------------
# The registry: the walker's own handlers (control flow), and what rule sets register.
#
# A rule set (``_rules_relu``, ``_rules_layout``) registers, per primitive name, a handler
# ``(interp, eqn, invals, ctx, next_) -> outvals``; ``next_()`` evaluates the equation with the
# handlers registered after it, and finally with the walker's own (control flow, or ``_default``:
# bind as traced). ``ctx`` holds, per jaxpr, what each registered analysis found
# (``register_analysis``). ``register_report`` adds what runs once a whole function was walked.

_BASE: dict[str, Callable] = {
    "custom_jvp_call": _custom_function,
    "custom_vjp_call": _custom_function,
    "custom_vjp_call_jaxpr": _custom_function,
    "pjit": _jit,  # renamed "jit" in jax 0.7
    "jit": _jit,
    "closed_call": _inline_call,
    "core_call": _inline_call,
    "call": _inline_call,
    "checkpoint": _remat,
    "remat2": _remat,
    "remat": _remat,
    "scan": _scan,
    "cond": _cond,
    "while": _while,
    "shard_map": _shard_map_handler,
}
_RULES: dict[str, list[Callable]] = {}
_ANALYSES: dict[str, Callable] = {}
_REPORTS: list[Callable] = []
_MAY_REWRITE: list[Callable] = []
_PREPASSES: list[Callable] = []


def register(*primitives: str) -> Callable:
    """Decorator: a rule set's handler for these primitives (outermost first, in import order).

    ``"*"`` registers a handler for every primitive; it runs after the handlers registered for
    the primitive by name and before the walker's own.
    """

    def deco(handler: Callable) -> Callable:
        for name in primitives:
            _RULES.setdefault(name, []).append(handler)
        return handler

    return deco


def register_analysis(name: str, analysis: Callable) -> None:
    """``analysis(jaxpr, known_const_vars, known_free_vars)`` runs once per jaxpr walked (the
    invariables and constvariables known constant, and known free of the walked function's
    arguments); handlers read its result as ``ctx[name]``."""
    _ANALYSES[name] = analysis


def register_report(report: Callable, may_rewrite: Callable | None = None) -> None:
    """``report(stats, rules, name)`` runs after a whole function was walked (warnings);
    ``may_rewrite(jaxpr)``, if given, says conservatively whether a body that cannot be traced
    alone holds a site of this rule set (then an unknown primitive around it raises)."""
    _REPORTS.append(report)
    if may_rewrite is not None:
        _MAY_REWRITE.append(may_rewrite)


def register_prepass(wants: Callable) -> None:
    """``wants(rules)``: whether a walk with these rules needs a first walk (traced, discarded;
    ``cache["prepass"]`` is set in it) whose ``cache`` the real walk reads as
    ``cache["prepass_cache"]``."""
    _PREPASSES.append(wants)


def _dispatch(interp: _Interpreter, eqn, invals: list[_Val], ctx: dict) -> list[_Val]:
    chain = [*_RULES.get(eqn.primitive.name, ()), *_RULES.get("*", ())]
    base = _BASE.get(eqn.primitive.name, _default)

    def call(i: int) -> list[_Val]:
        if i == len(chain):
            return base(interp, eqn, invals, ctx)
        return chain[i](interp, eqn, invals, ctx, lambda: call(i + 1))

    return call(0)


# ---------------------------------------------------------------------------------------------
# Public entry points.


def rewrite(
    fun: Callable,
    rules: Rules,
    *,
    name: str = "rewrite",
    check_output: Callable[[Any], None] | None = None,
) -> Callable:
    """``fun`` with the same forward pass, re-interpreted so its backward rules are swapped.

    ``fun`` takes JAX arrays only (close over static arguments). Tracing happens at call time,
    inside whatever transformation the caller applies (jit, vmap, grad). ``check_output`` sees
    the output's ``ShapeDtypeStruct`` pytree before anything is evaluated.
    """

    def rewritten(*args):
        closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*args)
        if check_output is not None:
            check_output(out_shape)
        flat_args = jax.tree_util.tree_leaves(args)
        interp = _Interpreter(rules)
        if any(wants(rules) for wants in _PREPASSES):
            # a first walk, traced and discarded, whose per-walk cache the real walk sees (what
            # lies downstream of what: e.g. which layer is the last)
            pre = _Interpreter(rules)
            pre.cache["prepass"] = True
            jax.make_jaxpr(lambda *a: [o.value for o in pre.eval_closed(
                closed, [_Val(x) for x in a])])(*_value_avals([_Val(a) for a in flat_args]))
            interp.cache["prepass_cache"] = pre.cache
        outs = interp.eval_closed(closed, [_Val(a) for a in flat_args])
        for report in _REPORTS:
            report(interp.stats, rules, name)
        leaves, treedef = jax.tree_util.tree_flatten(out_shape)
        return jax.tree_util.tree_unflatten(  # outputs in the dtypes f returns
            treedef, [jnp.asarray(o.value).astype(s.dtype) for o, s in zip(outs, leaves,
                                                                           strict=True)])

    return rewritten


# The rule sets register their handlers on import (ReLU rules outermost, then the layout rule;
# the relevance and DeepLIFT rule sets register "*" handlers, each active only with its options).
from . import _rules_relu, _rules_layout, _rules_lrp, _rules_deeplift, _rules_at  # noqa: E402, F401, I001, E501
from ._rules_layout import canonical_convs, cpu_loop_body  # noqa: E402
from ._rules_relu import ReluReport, find_relus  # noqa: E402
