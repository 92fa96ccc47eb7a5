"""Exceptions and warnings raised by jaxattr, so users can catch them precisely.

Every invalid argument to a public function raises :class:`ArgumentError` (a ``ValueError``), or
:class:`ArgumentTypeError` (also a ``TypeError``) when the argument has the wrong type. Messages
start with the public function's name, then name the argument, what was given, what is expected
and, where there is one, the fix::

    rectgrad: q=150 is outside [0, 100]; expected a percentile in [0, 100] (default 98).
"""


class ArgumentError(ValueError):
    """An argument to a jaxattr function, or to the function it returns, is invalid."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has the wrong type (a string for a number, an array for a function...)."""


class ForwardModeError(TypeError):
    """A backward-only attribution map was differentiated (``jvp``, ``jacfwd``, ``hessian``...)."""


class UnsupportedPrimitiveError(NotImplementedError):
    """The jaxpr re-interpreter met a higher-order primitive it cannot rewrite safely."""


class AttributionWarning(UserWarning):
    """A result is probably not what the user meant (no ReLU, an empty layer, q in (0, 1))."""
