"""Kink detection: does ``f`` contain non-smooth operations (ReLU, abs, max...)?

For such ``f`` the Taylor data (second and higher derivatives) vanish almost everywhere, so the
SmoothGrad/VarGrad series of Seo et al. (arXiv:1806.03000) are zero a.e. while the true values are
not analytic in sigma. :func:`kinks` walks a jaxpr; the series builders call
:func:`warn_if_kinked`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax

from .._jaxpr import _is_nn_relu

__all__ = ["NonSmoothWarning", "kinks", "warn_if_kinked"]


class NonSmoothWarning(UserWarning):
    """``f`` has kinks (ReLU, abs, max...): its Taylor data, hence the series, is zero a.e."""


KINK_PRIMITIVES = frozenset({"max", "min", "abs", "sign", "clamp", "floor", "ceil", "round"})
"""Primitives whose derivative jumps (or whose second derivative is a delta)."""
KINK_NAMES = frozenset({"relu6", "hard_tanh", "hard_sigmoid", "hard_silu", "hard_swish"})
"""Names of jitted / custom_jvp functions that are kinked whatever their primitives."""


def kinks(jaxpr, names_only: bool = False) -> set[str]:
    """The non-smooth operations of a jaxpr (recursing into every sub-jaxpr).

    ``jax.nn.relu`` is recognised by the engine's one ReLU detector (``jaxattr._jaxpr``: the
    ``custom_jvp`` defined in ``jax.nn``, by identity) and counts as the kink ``"relu"``; a call
    named in :data:`KINK_NAMES` (``relu6``...) counts as one kink and is not entered. Inside a
    custom_jvp function only those count: its own derivative rule decides smoothness (e.g.
    ``logaddexp`` uses ``max`` and ``abs`` but is smooth).

    Args:
        jaxpr: a ``Jaxpr`` (``jax.make_jaxpr(f)(x).jaxpr``).
        names_only: count only named kinks (set when entering a custom_jvp function).

    Returns:
        The set of kink names found (primitive or function names).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> sorted(kinks(jax.make_jaxpr(lambda x: jnp.abs(jax.nn.relu(x)))(1.0).jaxpr))
        ['abs', 'relu']
        >>> kinks(jax.make_jaxpr(lambda x: jnp.logaddexp(x, 0.0))(1.0).jaxpr)
        set()
    """
    found: set[str] = set()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if _is_nn_relu(eqn):
            found.add("relu")
            continue
        fn_name = str(eqn.params.get("name", ""))
        if fn_name in KINK_NAMES:
            found.add(fn_name)
            continue
        if name in KINK_PRIMITIVES and not names_only:
            found.add(name)
        inner_names_only = names_only or name.startswith("custom_jvp")
        for p in eqn.params.values():
            for sub in p if isinstance(p, tuple | list) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= kinks(inner, inner_names_only)
    return found


def warn_if_kinked(f: Callable, x: jax.Array, *, stacklevel: int = 3) -> None:
    """Warn :class:`NonSmoothWarning` if ``f`` (traced at ``x``) has kinks."""
    found = kinks(jax.make_jaxpr(f)(x).jaxpr)
    if found:
        warnings.warn(
            f"f contains non-smooth operations {sorted(found)}: its second and higher "
            "derivatives vanish almost everywhere, so the series is zero a.e. while the true "
            "(Monte Carlo) SmoothGrad correction and VarGrad are not",
            NonSmoothWarning,
            stacklevel=stacklevel,
        )
