"""What a group of equations *is*: the named functions the relevance and DeepLIFT rules know.

A jaxpr is flat: ``jax.nn.gelu(x)`` appears as eight arithmetic equations, a Flax ``LayerNorm``
as a dozen, with nothing in the arithmetic saying "activation" or "normalisation". What they are
is recorded in each equation's traceback: the library function that emitted it. This module
reads it (:func:`jaxattr._compat.frames`) and groups the consecutive equations emitted by one
call of a known function into a :class:`Unit`:

=================  ==========================================================================
kind               emitted by
=================  ==========================================================================
``activation``     an elementwise activation of ``jax.nn`` (``relu``, ``gelu``, ``silu``,
                   ``sigmoid``, ``tanh``-like ``hard_tanh``, ``elu``, ``softplus``, ...), also
                   what ``flax.linen``/``nnx`` re-export and Equinox/Haiku layers call
``softmax``        ``jax.nn.softmax``
``norm``           a normalisation layer computing statistics of its input: Flax linen and NNX
                   ``LayerNorm``/``RMSNorm``/``GroupNorm``/``InstanceNorm`` (and ``BatchNorm``
                   in training mode), Equinox ``LayerNorm``/``GroupNorm``/``RMSNorm``,
                   ``jax.nn.standardize``. A layer whose statistics are all constants
                   (``BatchNorm`` in inference mode) is *not* a unit: it is an affine map with
                   constant operands, which the relevance rules merge into the layer before it.
``other``          ``jax.nn.log_softmax``, ``logsumexp``, ``glu``: known, so that no rule applies
                   to their arithmetic piece by piece
=================  ==========================================================================

The outermost known frame decides (``dot_product_attention`` is not a unit; the ``softmax`` it
calls is). Two calls from the same source line in a row that feed each other merge into one
unit (an activation of an activation is still elementwise).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
from jax.extend import core as jcore

from ._compat import DropVar, bind, frames, in_library, source_line

__all__ = ["Unit", "Units", "clean_stack", "find_units", "last_uses", "run_unit", "statistics"]

_ACTIVATIONS = frozenset({
    "relu", "relu6", "sigmoid", "softplus", "sparse_plus", "sparse_sigmoid", "soft_sign",
    "silu", "swish", "log_sigmoid", "elu", "leaky_relu", "hard_tanh", "celu", "selu", "gelu",
    "hard_sigmoid", "hard_silu", "hard_swish", "mish", "squareplus", "tanh",
})
# jax.nn functions with no relevance rule: known, so their arithmetic gets none piece by piece
_OTHER = frozenset({"log_softmax", "logsumexp", "glu", "log_sigmoid_deprecated"})
_NORM_FILES = (
    os.path.join("flax", "linen", "normalization.py"),
    os.path.join("flax", "nnx", "nn", "normalization.py"),
    os.path.join("equinox", "nn", "_normalisation.py"),
)
_NN_FILE = os.path.join("jax", "_src", "nn", "functions.py")


def _kind(file: str, function: str) -> str | None:
    if file.endswith(_NN_FILE):
        name = function.rsplit(".", 1)[-1]
        if name in _ACTIVATIONS:
            return "activation"
        if name == "softmax":
            return "softmax"
        if name == "standardize":
            return "norm"
        return "other" if name in _OTHER else None
    if file.endswith(_NORM_FILES):
        return "norm"
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Unit:
    """Consecutive equations emitted by one call of a known function."""

    kind: str  # "activation" | "softmax" | "norm" | "other"
    name: str  # the function, e.g. "gelu", "LayerNorm.__call__"
    eqns: tuple  # the equations, in order
    inputs: tuple  # variables read from outside the unit, in order of first use
    outputs: tuple  # variables defined in the unit and read after it
    line: str  # where the user called it

    def __repr__(self) -> str:
        return f"<{self.kind} unit {self.name} at {self.line}>"


@dataclasses.dataclass
class Units:
    """The units of one jaxpr: by ``id`` of their first equation, and of every member."""

    first: dict[int, Unit]
    member: dict[int, Unit]


def clean_stack(stack: str) -> str:
    """The module path: without the scopes transformations add (``vmap(jvp(M))/d`` -> ``M/d``)."""
    parts = []
    for p in stack.split("/"):
        while p.endswith(")") and "(" in p:
            p = p[p.index("(") + 1:-1]
        if p:
            parts.append(p)
    return "/".join(parts)


def _key(eqn) -> tuple | None:
    fr = frames(eqn)
    for i in range(len(fr) - 1, -1, -1):  # outermost first
        file, function, start, _ = fr[i]
        kind = _kind(file, function)
        if kind is not None:
            caller = next((f for f in fr[i + 1:] if not in_library(f[0])), ("", "", -1, -1))
            stack = clean_stack(str(getattr(eqn.source_info, "name_stack", "")))
            return (kind, function, file, start, caller[0], caller[3], stack)
    return None


def last_uses(jaxpr: jcore.Jaxpr) -> dict[Any, int]:
    """Variable -> index of the last equation reading it (``len(eqns)``: an output)."""
    last_use: dict[Any, int] = {}
    for i, e in enumerate(jaxpr.eqns):
        for v in e.invars:
            if not isinstance(v, jcore.Literal):
                last_use[v] = i
    for v in jaxpr.outvars:
        if not isinstance(v, jcore.Literal):
            last_use[v] = len(jaxpr.eqns)
    return last_use


def find_units(jaxpr: jcore.Jaxpr) -> Units:
    """Group the equations of ``jaxpr`` (not of its bodies) into units."""
    keys = [_key(e) for e in jaxpr.eqns]
    runs: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if runs and keys[runs[-1][-1]] == key and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    last_use = last_uses(jaxpr)
    first, member = {}, {}
    for run in [part for r in runs for part in _connected(jaxpr, r)]:
        eqns = tuple(jaxpr.eqns[i] for i in run)
        defined = {v for e in eqns for v in e.outvars}
        inputs: list = []
        for e in eqns:
            for v in e.invars:
                if not isinstance(v, jcore.Literal) and v not in defined and v not in inputs:
                    inputs.append(v)
        outputs = tuple(v for v in (v for e in eqns for v in e.outvars)
                        if not isinstance(v, DropVar) and last_use.get(v, -1) > run[-1])
        key = cast(tuple, keys[run[0]])  # a run holds equations with a key only
        kind, function = key[0], key[1]
        caller_file, caller_line = key[4], key[5]
        line = f"{caller_file}:{caller_line}" if caller_file else source_line(eqns[0])
        # a layer's name: its module path's last part (the same on every Python and JAX: the
        # frame's function is "LayerNorm.__call__" or only "__call__" depending on the version)
        module = key[6].rsplit("/", 1)[-1]
        name = (module or function) if kind == "norm" else function.rsplit(".", 1)[-1]
        unit = Unit(kind, name, eqns, tuple(inputs), outputs, line)
        first[id(eqns[0])] = unit
        for e in eqns:
            member[id(e)] = unit
    return Units(first, member)


def _connected(jaxpr: jcore.Jaxpr, run: list[int]) -> list[list[int]]:
    """A run's equations split into the groups that feed each other (``gelu(a) + gelu(b)`` on
    one line is two units), each in order, ordered by first equation."""
    parent = {i: i for i in run}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    defined_by = {}
    for i in run:
        for v in jaxpr.eqns[i].invars:
            j = defined_by.get(v) if not isinstance(v, jcore.Literal) else None
            if j is not None:
                parent[root(i)] = root(j)
        for v in jaxpr.eqns[i].outvars:
            defined_by[v] = i
    groups: dict[int, list[int]] = {}
    for i in run:
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def run_unit(unit: Unit, values: dict, *, frozen: Callable[[Any], bool] | None = None,
             wrap: Callable | None = None) -> list:
    """Evaluate ``unit``'s equations on ``values`` (its inputs, by variable); returns its
    outputs. ``frozen(var)`` marks values to hold constant (``stop_gradient``)."""
    env = dict(values)

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for e in unit.eqns:
        outs = bind(e, [read(v) for v in e.invars])
        for v, o in zip(e.outvars, outs, strict=True):
            if frozen is not None and frozen(v):
                o = jax.lax.stop_gradient(o)
            env[v] = o
    return [env[v] for v in unit.outputs]


def statistics(unit: Unit, linear_inputs: Sequence) -> tuple[set, set]:
    """The variables of ``unit`` that are not affine in ``linear_inputs`` and are multiplied
    with (or divide) a value that is: the normalisation factors a norm rule holds constant;
    and the variables that are affine once those are held constant.

    Affine: the inputs, and what ``add``/``sub``/``neg``, multiplication or division by a value
    free of the inputs, ``reduce_sum``, and shape and dtype changes make of affine values.
    """
    affine = set(linear_inputs)
    depends = set(linear_inputs)
    factors: set = set()
    shape_ops = {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose",
                 "convert_element_type", "reduce_sum", "neg", "copy", "copy_p", "pvary"}
    for e in unit.eqns:
        ins = [v for v in e.invars if not isinstance(v, jcore.Literal)]
        dep = [v for v in ins if v in depends]
        if not dep:
            continue
        depends.update(e.outvars)
        name = e.primitive.name
        lin = [v in affine for v in ins if v in depends]
        if name in shape_ops and all(lin):
            affine.update(e.outvars)
        elif name in ("add", "sub") and all(lin):
            affine.update(e.outvars)
        elif name in ("mul", "div"):
            a, b = e.invars
            a_dep = not isinstance(a, jcore.Literal) and a in depends
            b_dep = not isinstance(b, jcore.Literal) and b in depends
            if a_dep and b_dep:
                if a in affine and b not in affine:
                    factors.add(b)
                    affine.update(e.outvars)
                elif b in affine and a not in affine and name == "mul":
                    factors.add(a)
                    affine.update(e.outvars)
            elif (a_dep and a in affine) or (b_dep and b in affine and name == "mul"):
                affine.update(e.outvars)
    return factors, affine

