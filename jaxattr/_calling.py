"""The calling convention of ``jax.grad`` for every transform, compiled once per static signature.

A transform's returned function takes ``(*args, **kwargs)``. Their pytree leaves are split:

* arrays (``jax.Array``, ``numpy.ndarray``, numpy scalars, tracers) are **dynamic**: traced, so
  a new value does not recompile;
* every other leaf (Python numbers, bools, strings, ``None``-free hashable objects such as an
  enum or a function) is **static**: passed to the user's function as it is, so ``f`` may branch
  on it in Python; equal values (of the same type) reuse the compiled program.

Leaves at the differentiated positions (``argnums``, and e.g. the noise transforms' ``x``) are
always dynamic: Python numbers there become arrays, as in ``jax.grad``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.core
import numpy as np

from ._checks import fail_type

__all__ = [
    "Static",
    "is_map_function",
    "is_transform",
    "jit_with_static",
    "mark_map",
    "mark_transform",
    "split",
]

_TRANSFORM = "_jaxattr_transform"  # marks the public transforms (f -> map function)
_MAP = "_jaxattr_map"  # marks the map functions they return


def mark_transform(t: Callable) -> Callable:
    setattr(t, _TRANSFORM, True)
    return t


def mark_map(g: Callable) -> Callable:
    setattr(g, _MAP, True)
    return g


def is_transform(obj: Any) -> bool:
    """Whether ``obj`` is a jaxattr transform (``f -> map function``), e.g. ``rectgrad``."""
    return bool(getattr(obj, _TRANSFORM, False))


def is_map_function(obj: Any) -> bool:
    """Whether ``obj`` is a function returned by a jaxattr transform, e.g. ``rectgrad(f)``."""
    return bool(getattr(obj, _MAP, False))

_ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, _ARRAY_TYPES) or isinstance(leaf, jax.core.Tracer)


@dataclasses.dataclass(frozen=True)
class Static:
    """The static part of a call: the pytree structure and the non-array leaves (hashable)."""

    treedef: Any
    entries: tuple[tuple[int, type, Any], ...]  # (leaf position, type, value)
    n_leaves: int

    def rebuild(self, dynamic: Sequence[Any]) -> tuple[tuple, dict]:
        leaves: list[Any] = [None] * self.n_leaves
        static_pos = {pos for pos, _, _ in self.entries}
        for pos, _, value in self.entries:
            leaves[pos] = value
        it = iter(dynamic)
        for i in range(self.n_leaves):
            if i not in static_pos:
                leaves[i] = next(it)
        args, kwargs = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return tuple(args), dict(kwargs)


def split(args: tuple, kwargs: dict, *, dynamic_argnums: Sequence[int] = (),
          fn: str) -> tuple[list, Static]:
    """Split a call into its dynamic leaves and a hashable :class:`Static`."""
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    forced = set()
    offset = 0
    for i, arg in enumerate(args):
        n = len(jax.tree_util.tree_leaves(arg))
        if i in dynamic_argnums:
            forced.update(range(offset, offset + n))
        offset += n
    dynamic, entries = [], []
    for pos, leaf in enumerate(leaves):
        if pos in forced or _is_array(leaf):
            dynamic.append(leaf if _is_array(leaf) else jax.numpy.asarray(leaf))
            continue
        try:
            hash(leaf)
        except TypeError:
            fail_type(fn, "an argument", leaf,
                      f"is a {type(leaf).__name__}, neither an array nor hashable",
                      "arrays (traced) or hashable values such as numbers and strings (static)",
                      "close over it in f instead of passing it")
        entries.append((pos, type(leaf), leaf))
    return dynamic, Static(treedef, tuple(entries), len(leaves))


def jit_with_static(
    compute: Callable[[tuple, dict], Any],
    *,
    fn: str,
    dynamic_argnums: Sequence[int] = (),
    wrap: Callable[[Callable], Callable] | None = None,
) -> Callable:
    """``g(*args, **kwargs) = compute(args, kwargs)`` compiled with ``jax.jit``, static leaves
    hashed into the cache key. ``wrap`` decorates the traced function of the dynamic leaves (the
    backward-only ``custom_jvp``)."""

    @functools.partial(jax.jit, static_argnums=0)
    def run(static: Static, *dynamic):
        def inner(*dyn):
            args, kwargs = static.rebuild(dyn)
            return compute(args, kwargs)

        return (wrap(inner) if wrap is not None else inner)(*dynamic)

    def g(*args, **kwargs):
        dynamic, static = split(args, kwargs, dynamic_argnums=dynamic_argnums, fn=fn)
        return run(static, *dynamic)

    return g
