"""Argument validation shared by every public function: one vocabulary, one message shape.

Each check takes the public function's name ``fn`` and the argument's ``name`` and raises
:class:`~jaxattr.errors.ArgumentError` (or :class:`~jaxattr.errors.ArgumentTypeError` for a wrong
type) with a message ``"{fn}: {name}={value!r} <problem>; expected <what>[. <fix>]"``. Concrete
numpy and JAX scalars are accepted wherever a Python number is; ``bool`` is never a number.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, NoReturn, cast, overload

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from .errors import ArgumentError, ArgumentTypeError

__all__ = [
    "array_text",
    "check_bool",
    "check_dtype",
    "check_callable",
    "check_choice",
    "check_floating",
    "check_int",
    "check_key",
    "check_real",
    "fail",
    "fail_type",
]


def _msg(fn: str, name: str, value: Any, problem: str, expected: str, fix: str = "") -> str:
    text = f"{fn}: {name}={_short(value)} {problem}; expected {expected}"
    return f"{text}. {fix}" if fix else text


def array_text(x: Any) -> str:
    """How an array appears in an error message: its shape and dtype, never its contents."""
    return f"<array of shape {tuple(np.shape(x))} and dtype {x.dtype}>"


def _short(value: Any) -> str:
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) > 0:
        return array_text(value)
    text = repr(value)
    if isinstance(value, (str, os.PathLike)):  # paths and names: never cut
        return text
    return text if len(text) <= 120 else text[:117] + "..."


def fail(fn: str, name: str, value: Any, problem: str, expected: str, fix: str = "") -> NoReturn:
    """Raise :class:`ArgumentError` with the standard message."""
    raise ArgumentError(_msg(fn, name, value, problem, expected, fix))


def fail_type(fn: str, name: str, value: Any, problem: str, expected: str,
              fix: str = "") -> NoReturn:
    """Raise :class:`ArgumentTypeError` (also a ``TypeError``) with the standard message."""
    raise ArgumentTypeError(_msg(fn, name, value, problem, expected, fix))


def _scalar(value: Any) -> Any:
    """A concrete 0-d numpy/JAX array as a numpy scalar; anything else unchanged."""
    if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
        if np.ndim(value) == 0:
            return np.asarray(value)[()]
    return value


def check_int(value: Any, name: str, *, fn: str, minimum: int | None = None,
              hint: str = "") -> int:
    """``value`` as a Python int (``>= minimum``); bools and non-integers are rejected.

    >>> check_int(np.int64(3), "n", fn="smoothgrad", minimum=1)
    3
    """
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)):
        fail_type(fn, name, value, "is a bool", "an int")
    try:
        index = operator.index(value)
    except TypeError:
        fail_type(fn, name, value, f"has type {type(value).__name__}", "an int")
    if minimum is not None and index < minimum:
        fail(fn, name, value, f"is < {minimum}", f"an int >= {minimum}{hint}")
    return index


@overload
def check_real(
    value: Any, name: str, *, fn: str, lo: float | None = None, hi: float | None = None,
    lo_open: bool = False, allow_traced: Literal[False] = False, expected: str = "", fix: str = "",
) -> float: ...
@overload
def check_real(
    value: Any, name: str, *, fn: str, lo: float | None = None, hi: float | None = None,
    lo_open: bool = False, allow_traced: bool, expected: str = "", fix: str = "",
) -> float | jax.Array: ...
def check_real(
    value: Any,
    name: str,
    *,
    fn: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    allow_traced: bool = False,
    expected: str = "",
    fix: str = "",
) -> float | jax.Array:
    """``value`` as a finite Python float in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``).

    Python, numpy and concrete 0-d JAX numbers are accepted; bools, strings and arrays of any
    other shape are not. With ``allow_traced`` a JAX tracer is returned unchecked (its value is
    unknown at trace time).

    >>> check_real(np.float32(90.0), "q", fn="rectgrad", lo=0, hi=100)
    90.0
    """
    if allow_traced and isinstance(value, jax.core.Tracer):
        if np.ndim(value) != 0:
            fail(fn, name, value, "is not a scalar", expected or "a real number")
        return value
    value = _scalar(value)
    if expected == "":
        lo_txt = "-inf" if lo is None else f"{lo:g}"
        hi_txt = "inf" if hi is None else f"{hi:g}"
        expected = f"a finite real number in {'(' if lo_open else '['}{lo_txt}, {hi_txt}]"
    if isinstance(value, (bool, np.bool_)):
        fail_type(fn, name, value, "is a bool", expected, fix)
    if not isinstance(value, numbers.Real) or isinstance(value, (np.complexfloating,)):
        fail_type(fn, name, value, f"has type {type(value).__name__}", expected, fix)
    out = float(value)
    if not math.isfinite(out):
        fail(fn, name, value, "is not finite", expected, fix)
    if lo is not None and (out <= lo if lo_open else out < lo):
        fail(fn, name, value, "is out of range", expected, fix)
    if hi is not None and out > hi:
        fail(fn, name, value, "is out of range", expected, fix)
    return out


def check_choice(value: Any, name: str, choices: Iterable[str], *, fn: str) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        fail(fn, name, value, "is not a known option", "one of " + ", ".join(map(repr, choices)))
    return value


def check_callable(value: Any, name: str, *, fn: str, expected: str, fix: str = "") -> Callable:
    """``value`` if callable; an array where a function was expected gets a pointed message."""
    if callable(value):
        return value
    if isinstance(value, (jax.Array, np.ndarray)) or hasattr(value, "shape"):
        fail_type(fn, name, value, "is an array, not a function", expected,
                  fix or "pass the function itself, not the result of calling it")
    fail_type(fn, name, value, f"has type {type(value).__name__}", expected, fix)
    raise AssertionError  # unreachable


def check_floating(x: Any, name: str, *, fn: str) -> jax.Array:
    """``x`` as a JAX array with a real floating dtype."""
    try:
        arr = jnp.asarray(x)
    except TypeError:
        fail_type(fn, name, x, f"has type {type(x).__name__}", "a floating-point array")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        fail_type(fn, name, x, f"has dtype {arr.dtype}", "a real floating-point array",
                  f"cast it first, e.g. {name}.astype(jnp.float32)")
    return arr


def check_key(key: Any, *, fn: str, name: str = "key") -> jax.Array:
    """One typed key (``jax.random.key``), or one legacy uint32 ``PRNGKey`` (wrapped to typed).

    >>> check_key(jax.random.PRNGKey(0), fn="smoothgrad").shape
    ()
    """
    expected = "one jax.random.key (or a legacy jax.random.PRNGKey)"
    if key is None:
        fail_type(fn, name, key, "is missing", expected, "call g(x, key, ...) with a key")
    if not isinstance(key, (jax.Array, np.ndarray)):
        fail_type(fn, name, key, f"has type {type(key).__name__}", expected)
    batch_fix = "for one key per example use jax.vmap(g)(xs, jax.random.split(key, len(xs)))"
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            fail(fn, name, key, f"holds {key.shape} keys", expected, batch_fix)
        return cast(jax.Array, key)  # a numpy array cannot hold a key dtype
    if key.dtype == jnp.uint32 and key.shape == (2,):
        # JAX annotates key_bits_array as jax.Array, but numpy uint32 key data works the same
        return jax.random.wrap_key_data(key)  # pyright: ignore[reportArgumentType]  # takes numpy
    if key.dtype == jnp.uint32 and key.ndim == 2 and key.shape[-1] == 2:
        fail(fn, name, key, f"holds {key.shape[0]} legacy keys", expected, batch_fix)
    fail_type(fn, name, key, "is not a PRNG key", expected)
    raise AssertionError  # unreachable


def check_bool(value: Any, name: str, *, fn: str) -> bool:
    """``value`` if it is a Python or numpy bool (``0``/``1`` and strings are rejected)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    fail_type(fn, name, value, f"has type {type(value).__name__}", "True or False")
    raise AssertionError  # unreachable


def check_dtype(value: Any, name: str, *, fn: str) -> Any:
    """``None`` or a real floating dtype (``jnp.bfloat16``, ``"float16"``...) as a numpy dtype."""
    if value is None:
        return None
    expected = "None or a floating dtype such as jnp.bfloat16, jnp.float16 or jnp.float32"
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        fail_type(fn, name, value, "is not a dtype", expected)
    if not jnp.issubdtype(dtype, jnp.floating):
        fail(fn, name, value, f"is {dtype}, not floating", expected)
    return dtype
