"""JAX-version compatibility: every JAX internal the library relies on, in one place.

The interpreter (``jaxattr._jaxpr``) and the memory estimate (``jaxattr._budget``) read jaxprs;
what differs between the JAX versions in the declared range (``pyproject.toml``) is handled here
and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jax.extend import core as jcore

__all__ = ["bind", "closed", "jaxprs_in_params", "rebind", "source_line"]


def closed(jaxpr) -> jcore.ClosedJaxpr:
    """``jaxpr`` as a ClosedJaxpr (an open Jaxpr gets no constants)."""
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        return jaxpr
    return jcore.ClosedJaxpr(jaxpr, ())


def jaxprs_in_params(params: dict[str, Any]) -> Iterator[Any]:
    """The jaxprs (open or closed) among an equation's parameters, also inside tuples/lists.

    ``jax.extend.core.jaxprs_in_params`` where it exists (jax >= 0.10); the same walk otherwise.
    """
    native = getattr(jcore, "jaxprs_in_params", None)
    if native is not None:
        yield from native(params)
        return
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


def bind(eqn, invals: list) -> list:
    """Bind ``eqn``'s primitive with its own parameters (as jax's eval_jaxpr does)."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bind_params, tuple):  # jax < 0.7: (subfuns, params)
        subfuns, params = bind_params
    else:  # jax >= 0.7: one dict (holding "subfuns" where the primitive has them)
        subfuns, params = (), bind_params
    ctx = getattr(eqn, "ctx", None)
    if ctx is not None:
        with ctx.manager:
            out = eqn.primitive.bind(*subfuns, *invals, **params)
    else:  # pragma: no cover - old jax
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def rebind(eqn, invals: list, **new_params) -> list:
    """Bind ``eqn``'s primitive with some parameters replaced (a jit with a rewritten body)."""
    return bind(eqn.replace(params={**eqn.params, **new_params}), invals)
