"""Argument validation shared by the transforms."""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int, hint: str = "") -> int:
    """``value`` as a Python int >= ``minimum``; bools and non-integers are rejected.

    >>> check_int("n", 3, 1)
    3
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be an int, not a bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} must be an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}{hint}")
    return value
