"""The intermediate rule set of the engine: find a named value inside ``f`` and attribute to it.

A value is named, without changing the model, by

* a **module path** as it appears in the jaxpr's name stack: Flax linen pushes every module's
  path (``"CifarCNN/Conv_3"``), Equinox its layers' (``"eqx.nn.Sequential/eqx.nn.Conv2d"``); a
  suffix (``"Conv_3"``) names the one module whose path ends with it. The value taken is the
  module's **output**: what its equations compute and what is read after them. A module called
  more than once is taken at its **last** call (as a forward hook that keeps the latest output
  would see it); name another call with a ``checkpoint_name``.
* a ``jax.ad_checkpoint.checkpoint_name(x, "name")`` the model already carries (Equinox, NNX,
  plain JAX: NNX pushes no module names to the name stack).

The walk inlines ``jit``/``remat``/``closed_call`` bodies (the value must live in the caller's
trace to be returned; a ``remat`` then computes without rematerialisation) and joins the module
paths of nested bodies to their callers'. A value inside a ``scan``, ``while`` or ``cond`` body
raises :class:`~jaxattr.errors.UnsupportedPrimitiveError` (it is one value per iteration); name
one outside the loop.

With ``AtOptions.state["delta"]`` set, the walk returns ``value + delta`` in place of the value:
the gradient of the score with respect to ``delta`` at 0 is its gradient with respect to the
value, and ``delta = a - value`` replaces the value by ``a`` (layer integrated gradients).
"""

from __future__ import annotations

import dataclasses

from jax.extend import core as jcore

from ._compat import DropVar, jaxprs_in_params
from ._compat import closed as _closed
from ._compat import source_line as _source_line
from ._jaxpr import _Val, register, register_analysis, register_prepass
from ._units import clean_stack, last_uses
from .errors import ArgumentError, UnsupportedPrimitiveError

__all__ = ["AtOptions", "names_in", "occurrences", "resolve"]

_INLINE = frozenset({"pjit", "jit", "closed_call", "core_call", "call", "checkpoint", "remat2",
                     "remat"})
_LOOPS = frozenset({"scan", "while", "cond"})


@dataclasses.dataclass(eq=False)
class AtOptions:
    """``at``: the module path (or suffix) or checkpoint name; ``state``: per call, ``delta``
    (added to the value, or ``None``) and, after the walk, ``value`` and ``where``."""

    at: str
    fn: str = "layer"
    state: dict = dataclasses.field(default_factory=dict)


def _stack(eqn) -> str:
    return clean_stack(str(getattr(eqn.source_info, "name_stack", "")))  # vmap(M)/d -> M/d


def _join(prefix: str, stack: str) -> str:
    return "/".join(p for p in (prefix, stack) if p)


def _in_scope(path: str, target: str) -> bool:
    return path == target or path.startswith(target + "/")


def _checkpoint_name(eqn) -> str | None:
    return eqn.params.get("name") if eqn.primitive.name == "name" else None


register_analysis("at_jaxpr", lambda jaxpr, *known: jaxpr)
# A first walk counts the occurrences when the value is met more than once (the last is taken).
register_prepass(lambda rules: rules.option(AtOptions) is not None
                 and not rules.option(AtOptions).state.get("single"))


# ---------------------------------------------------------------------------------------------
# What names a program holds (for the error listing them), and resolving a suffix.


def names_in(jaxpr: jcore.Jaxpr, prefix: str = "") -> tuple[list[str], list[str]]:
    """(module paths, checkpoint names) found in ``jaxpr`` and its bodies, in order."""
    paths: list[str] = []
    names: list[str] = []
    for e in jaxpr.eqns:
        full = _join(prefix, _stack(e))
        if full and full not in paths:
            paths.append(full)
        cn = _checkpoint_name(e)
        if cn is not None and cn not in names:
            names.append(cn)
        for sub in jaxprs_in_params(e.params):
            p, n = names_in(_closed(sub).jaxpr, full)
            paths += [x for x in p if x not in paths]
            names += [x for x in n if x not in names]
    return paths, names


def _modules(paths: list[str]) -> list[str]:
    """Every module path: the paths and all their prefixes."""
    out: list[str] = []
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts) + 1):
            q = "/".join(parts[:i])
            if q not in out:
                out.append(q)
    return out


def occurrences(jaxpr: jcore.Jaxpr, kind: str, target: str, prefix: str = "") -> int:
    """How many times the walk meets the named value: checkpoint-name equations, or calls of the
    module (runs of its equations; a body inside the module's scope is not counted again)."""
    n, in_run = 0, False
    for e in jaxpr.eqns:
        full = _join(prefix, _stack(e))
        inside = kind == "path" and _in_scope(full, target)
        if kind == "name" and _checkpoint_name(e) == target:
            n += 1
        if inside and not in_run:
            n += 1
        in_run = inside
        if not inside:
            n += sum(occurrences(_closed(sub).jaxpr, kind, target, full)
                     for sub in jaxprs_in_params(e.params))
    return n


def resolve(jaxpr: jcore.Jaxpr, at: str, fn: str) -> tuple[str, str]:
    """``("name", at)`` for a checkpoint name, ``("path", full path)`` for a module; an error
    listing what exists when ``at`` names nothing or more than one module."""
    paths, names = names_in(jaxpr)
    if at in names:
        return "name", at
    modules = _modules(paths)
    hits = [m for m in modules if m == at or m.endswith("/" + at)]
    if len(hits) == 1:
        return "path", hits[0]
    none = ("(none: NNX and plain JAX push no module names; mark the value with "
            "jax.ad_checkpoint.checkpoint_name)")
    listing = (f"module paths: {', '.join(modules) or none}; checkpoint names: "
               f"{', '.join(names) or '(none)'}")
    if hits:
        raise ArgumentError(f"{fn}: at={at!r} is ambiguous: it ends {len(hits)} module paths "
                            f"({', '.join(hits)}); expected one of them in full")
    raise ArgumentError(f"{fn}: at={at!r} names no module and no checkpoint_name in f; "
                        f"expected one of the {listing}")


# ---------------------------------------------------------------------------------------------
# The walk.


def _runs(jaxpr: jcore.Jaxpr, prefix: str, target: str) -> dict[int, list]:
    """id(last equation of a call of the module) -> its output variables, in this jaxpr."""
    last_use = last_uses(jaxpr)
    runs: dict[int, list] = {}
    run: list[int] = []
    for i, e in enumerate([*jaxpr.eqns, None]):
        inside = e is not None and _in_scope(_join(prefix, _stack(e)), target)
        if inside:
            run.append(i)
            continue
        if run:
            outs = [v for j in run for v in jaxpr.eqns[j].outvars
                    if not isinstance(v, DropVar) and last_use.get(v, -1) > run[-1]]
            runs[id(jaxpr.eqns[run[-1]])] = outs
            run = []
    return runs


@register("*")
def _at(interp, eqn, invals: list[_Val], ctx, next_) -> list[_Val]:
    opts = interp.rules.option(AtOptions)
    if opts is None:
        return next_()
    cache = interp.cache
    kind, target = cache.setdefault("at_target", opts.state["resolved"])
    prefix = cache.get("at_prefix", "")
    full = _join(prefix, _stack(eqn))
    inside = cache.get("at_inside", False)
    name = eqn.primitive.name
    if name in _INLINE:
        body = _closed(eqn.params["jaxpr"] if "jaxpr" in eqn.params else eqn.params["call_jaxpr"])
        cache["at_prefix"] = full
        cache["at_inside"] = inside or (kind == "path" and _in_scope(full, target))
        try:
            outs = interp.eval_closed(body, list(invals))
        finally:
            cache["at_prefix"], cache["at_inside"] = prefix, inside
    else:
        if name in _LOOPS and _holds_target(eqn, full, kind, target):
            raise UnsupportedPrimitiveError(
                f"{opts.fn}: at={opts.at!r} lies inside a '{name}' body (at "
                f"{_source_line(eqn)}): it is one value per iteration; name a value outside "
                "the loop")
        outs = next_()
    if inside:
        return outs
    if kind == "name":
        if _checkpoint_name(eqn) == target:
            return _take(interp, opts, eqn, outs, [0])
        return outs
    jaxpr = ctx["at_jaxpr"]
    key = (id(jaxpr), prefix)
    runs = cache.setdefault("at_runs", {})
    if key not in runs:
        runs[key] = _runs(jaxpr, prefix, target)
    run_outs = runs[key].get(id(eqn))
    if run_outs is None:
        return outs
    idx = [i for i, v in enumerate(eqn.outvars) if v in run_outs]
    if len(run_outs) != 1 or len(idx) != 1:
        raise UnsupportedPrimitiveError(
            f"{opts.fn}: the module {target!r} (at {_source_line(eqn)}) gives "
            f"{len(run_outs)} values read after it, not one output; name the value with "
            "jax.ad_checkpoint.checkpoint_name")
    return _take(interp, opts, eqn, outs, idx)


def _holds_target(eqn, full: str, kind: str, target: str) -> bool:
    for sub in jaxprs_in_params(eqn.params):
        paths, names = names_in(_closed(sub).jaxpr, full)
        if kind == "name" and target in names:
            return True
        if kind == "path" and any(_in_scope(p, target) for p in paths):
            return True
    return False


def _take(interp, opts: AtOptions, eqn, outs: list[_Val], idx: list[int]) -> list[_Val]:
    """One occurrence of the named value: counted; the last one (known from the first walk) is
    returned and gets ``delta`` added."""
    cache = interp.cache
    k = cache.get("at_count", 0)
    cache["at_count"] = k + 1
    total = 1 if opts.state.get("single") else cache.get("prepass_cache", {}).get("at_count")
    if cache.get("prepass") or total is None or k != total - 1:
        return outs
    i = idx[0]
    value = outs[i].value
    opts.state["value"] = value
    opts.state["where"] = _source_line(eqn)
    delta = opts.state.get("delta")
    if delta is not None:
        outs = list(outs)
        outs[i] = _Val(value + delta.astype(value.dtype), tags=outs[i].tags)
    return outs
