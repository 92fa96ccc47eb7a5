"""Exceptions and warnings raised by jaxattr, so users can catch them precisely.

Every invalid argument to a public function raises :class:`ArgumentError` (a ``ValueError``), or
:class:`ArgumentTypeError` (also a ``TypeError``) when the argument has the wrong type. Messages
start with the public function's name, then name the argument, what was given, what is expected
and, where there is one, the fix::

    rectgrad: q=150 is outside [0, 100]; expected a percentile in [0, 100] (default 98).
"""

import functools


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


@functools.cache
def _internal_dirs() -> tuple[str, ...]:
    import os
    import sysconfig

    import jax

    dirs = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(jax.__file__),
            sysconfig.get_paths()["stdlib"]]
    try:
        import jaxlib

        dirs.append(os.path.dirname(jaxlib.__file__))
    except ImportError:  # pragma: no cover - jax always brings jaxlib
        pass
    return tuple(os.path.join(d, "") for d in dirs) + ("<frozen ",)


def warn(message: str, category: type[Warning] = AttributionWarning) -> None:
    """Warn at the user's call: the first frame outside jaxattr, JAX and the standard library.

    Tracing puts a varying number of JAX frames between a user's call and the place jaxattr
    finds something to warn about, so a fixed ``stacklevel`` would point into JAX.
    """
    import sys
    import warnings

    skip = _internal_dirs()
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame = frame.f_back
    if frame is None:  # pragma: no cover - called from jaxattr's own top level
        warnings.warn(message, category, stacklevel=2)
        return
    g, filename = frame.f_globals, frame.f_code.co_filename
    # module_globals lets linecache ask the module's loader for the source; code read from
    # standard input (``python -``) has a builtin loader that cannot answer, and raises.
    warnings.warn_explicit(message, category, filename, frame.f_lineno,
                           module=g.get("__name__", "<unknown>"),
                           registry=g.setdefault("__warningregistry__", {}),
                           module_globals=None if filename.startswith("<") else g)
