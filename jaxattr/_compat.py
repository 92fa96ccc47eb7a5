"""JAX-version compatibility: every JAX internal the library relies on, in one place.

The interpreter (``jaxattr._jaxpr``) and the memory estimate (``jaxattr._budget``) read jaxprs;
what differs between the JAX versions in the declared range (``pyproject.toml``: jax >= 0.6.1,
tested at that floor and at the newest release by ``.ci/run``) is handled here and nowhere else.
Each function behaves the same on every version in the range; ``tests/test_compat.py`` tests
each one (and each version branch that can be reached on the JAX it runs on).

The differences, by JAX version:

* ``jax.extend.core.DropVar`` and ``jax.extend.core.jaxprs_in_params``: from 0.10 on (before
  that, ``jax.core.DropVar`` and no public walk). :data:`DropVar` is the class on every version;
  :func:`jaxprs_in_params` is this module's own walk on every version (JAX's opens every
  ClosedJaxpr, dropping its constants, which the interpreter needs).
* ``source_info_util.user_frame`` (internal): takes an equation's SourceInfo in 0.6, its
  traceback from 0.7 on (:func:`source_file`).
* ``Primitive.get_bind_params``: returns ``(subfuns, params)`` up to 0.8, one dict (holding
  ``"subfuns"`` where the primitive has them) from 0.9 on (:func:`bind_params`).
* ``shard_map``'s equation parameters: ``manual_axes`` up to 0.9, ``newly_manual_axes`` from
  0.10 on (:func:`shard_map`).
* ``jax.jit``'s primitive is named ``pjit`` in 0.6 and ``jit`` from 0.7 on: the interpreter
  registers its handler under both names; :func:`primitive_name` gives the newest spelling.
* ``jax.enable_x64``: from 0.8 on; ``jax.experimental.enable_x64`` before (:func:`enable_x64`).
* ``jax.shard_map``: from 0.6.1 on (0.6.0 has only ``jax.experimental.shard_map``, with other
  parameters): the reason the floor is 0.6.1.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.core
from jax.extend import core as jcore

__all__ = ["DropVar", "add_note", "bind", "bind_params", "closed", "enable_x64", "frames",
           "in_library", "jaxprs_in_params", "primitive_name", "rebind", "shard_map",
           "shard_map_axis_names", "source_file", "source_line"]

#: The class of the ``_`` outputs of an equation (outputs nothing reads).
DropVar: type = getattr(jcore, "DropVar", None) or jax.core.DropVar  # jax < 0.10: jax.core


# Older names of primitives -> the newest JAX's.
_RENAMED = {"pjit": "jit"}


def primitive_name(eqn) -> str:
    """The name of ``eqn``'s primitive as the newest JAX spells it (``pjit`` -> ``jit``)."""
    name: str = eqn.primitive.name
    return _RENAMED.get(name, name)


def closed(jaxpr) -> jcore.ClosedJaxpr:
    """``jaxpr`` as a ClosedJaxpr (an open Jaxpr gets no constants)."""
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        return jaxpr
    return jcore.ClosedJaxpr(jaxpr, ())


def jaxprs_in_params(params: dict[str, Any]) -> Iterator[jcore.Jaxpr | jcore.ClosedJaxpr]:
    """The jaxprs among an equation's parameters, also inside tuples and lists (``cond``'s
    branches), in parameter order, each as stored: a ClosedJaxpr stays closed, with its constants.

    The same bodies, in the same order, as ``jax.extend.core.jaxprs_in_params`` (jax >= 0.10),
    which yields each ClosedJaxpr's open ``.jaxpr`` instead: re-evaluating such a body needs its
    constants. One walk on every JAX version.
    """
    for value in params.values():
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                yield v


def source_line(eqn) -> str:
    """The user's source line of an equation (``file:line (function)``)."""
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - internal API moved
        return "<unknown source>"


def source_file(eqn) -> str | None:
    """The file of the first frame outside JAX's internals that made ``eqn`` (its user frame:
    a Flax layer's own file for the operations written inside that layer)."""
    try:
        from jax._src import source_info_util

        frame = source_info_util.user_frame(_frames_arg(source_info_util, eqn.source_info))
    except Exception:  # pragma: no cover - internal API moved
        return None
    return getattr(frame, "file_name", None)


def frames(eqn) -> list[tuple[str, str, int, int]]:
    """The Python frames that made ``eqn``, innermost first, JAX's own included, each as
    ``(file, function, first line of the function, line)``: which library function emitted an
    equation (``jax.nn.gelu``, a Flax LayerNorm) is read from here. Empty when unknown."""
    tb = getattr(eqn.source_info, "traceback", None)
    try:
        got = tb.frames if tb is not None else []
    except Exception:  # pragma: no cover - internal API moved
        return []
    return [(f.file_name, f.function_name, getattr(f, "function_start_line", -1), f.line_num)
            for f in got]


# Libraries whose layers call jax.nn.relu for their ReLUs: a max(x, 0) written in their source is
# part of another operation (the variance clamp of a normalisation layer), never an activation.
_LIBRARIES = ("jax", "flax", "equinox", "haiku", "optax", "penzai", "jaxattr")


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # pragma: no cover - broken installation
            spec = None
        for d in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(os.path.realpath(d), ""))
    return tuple(dirs)


def in_library(path: str | None) -> bool:
    """Whether ``path`` is a file of JAX, Flax, Equinox, Haiku, optax, penzai or jaxattr."""
    return bool(path) and os.path.realpath(path).startswith(_library_dirs())


def _frames_arg(source_info_util, source_info):
    """What ``source_info_util.user_frame`` takes: the equation's SourceInfo up to jax 0.6, its
    ``traceback`` from jax 0.7 on."""
    params = inspect.signature(source_info_util.user_frame).parameters
    return source_info if "source_info" in params else source_info.traceback


def bind_params(eqn) -> tuple[tuple, dict[str, Any]]:
    """``(subfuns, params)`` to bind ``eqn``'s primitive with, on every JAX version."""
    got = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(got, tuple):  # jax < 0.9: (subfuns, params)
        subfuns, params = got
        return tuple(subfuns), params
    return (), got  # jax >= 0.9: one dict (holding "subfuns" where the primitive has them)


def bind(eqn, invals: list) -> list:
    """Bind ``eqn``'s primitive with its own parameters (as jax's eval_jaxpr does)."""
    subfuns, params = bind_params(eqn)
    ctx = getattr(eqn, "ctx", None)
    if ctx is not None:
        with ctx.manager:
            out = eqn.primitive.bind(*subfuns, *invals, **params)
    else:  # pragma: no cover - an equation without a context (none in jax >= 0.6)
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def rebind(eqn, invals: list, **new_params) -> list:
    """Bind ``eqn``'s primitive with some parameters replaced (a jit with a rewritten body)."""
    return bind(eqn.replace(params={**eqn.params, **new_params}), invals)


def enable_x64(new_val: bool = True):
    """A context manager that sets 64-bit mode to ``new_val`` inside it (``jax.enable_x64``)."""
    native = getattr(jax, "enable_x64", None)
    if native is None:  # jax < 0.8
        from jax.experimental import (
            enable_x64 as native,  # pyright: ignore[reportAttributeAccessIssue]  # jax < 0.8 only
        )
    return native(new_val)


def add_note(e: BaseException, note: str) -> None:
    """``e.add_note(note)``; on Python 3.10, which has no ``add_note``, the note is kept in
    ``e.__notes__`` as PEP 678 specifies (3.10's traceback does not print it)."""
    if sys.version_info >= (3, 11):
        e.add_note(note)
    else:
        notes = getattr(e, "__notes__", None)
        e.__notes__ = [*(notes or ()), note]  # pyright: ignore[reportAttributeAccessIssue]


def shard_map_axis_names(params: dict[str, Any]) -> frozenset:
    """The mesh axes a ``shard_map`` equation makes manual (all of the mesh's by default)."""
    for key in ("newly_manual_axes", "manual_axes"):  # jax >= 0.10, jax < 0.10
        if params.get(key):
            return frozenset(params[key])
    return frozenset(params["mesh"].axis_names)


def shard_map(eqn, body: Callable[..., list], args: list) -> list:
    """``jax.shard_map`` of ``body`` over ``args`` with the mesh, specs, manual axes and
    variance checking of the ``shard_map`` equation ``eqn``."""
    p = eqn.params
    mapped = jax.shard_map(
        lambda *a: tuple(body(*a)),
        mesh=p["mesh"],
        in_specs=tuple(p["in_specs"]),
        out_specs=tuple(p["out_specs"]),
        check_vma=p.get("check_vma", True),
        axis_names=set(shard_map_axis_names(p)),
    )
    return list(mapped(*args))
