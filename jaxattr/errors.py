"""Exceptions and warnings raised by jaxattr, so users can catch them precisely."""


class ArgumentError(ValueError):
    """An argument to a jaxattr transform, or to the function it returns, is invalid."""


class ForwardModeError(TypeError):
    """A backward-only attribution map was differentiated (``jvp``, ``jacfwd``, ``hessian``...)."""


class UnsupportedPrimitiveError(NotImplementedError):
    """The jaxpr re-interpreter met a higher-order primitive it cannot rewrite safely."""


class AttributionWarning(UserWarning):
    """A modified-backprop map is probably not what the user meant (no ReLU, empty layer)."""
