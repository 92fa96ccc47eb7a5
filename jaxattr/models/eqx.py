"""A ReLU MLP in Equinox: a model for the engine's tests (modified backprop through
``eqx.nn.MLP``'s ``jax.nn.relu``), not a trained model."""

from __future__ import annotations

import math

import equinox as eqx
import jax

from .._checks import check_int, fail

__all__ = ["EqxMLP"]


class EqxMLP(eqx.Module):
    """A ReLU MLP in Equinox taking ONE image (any shape, flattened) to logits.

    Args:
        in_shape: shape of one input example.
        width: hidden width.
        depth: number of hidden layers.
        num_classes: number of logits.
        key: PRNG key for the initialisation.

    Raises:
        ArgumentError: for a non-positive width or class count, a negative depth, and at call
            time for an input not shaped ``in_shape``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import EqxMLP
        >>> mlp = EqxMLP(key=jax.random.key(0, impl="rbg"))  # rbg: compiles fast on CPU
        >>> mlp(jnp.zeros((8, 8, 1), jnp.float32)).shape
        (10,)
    """

    mlp: eqx.nn.MLP
    in_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_shape: tuple[int, ...] = (8, 8, 1),
        *,
        width: int = 64,
        depth: int = 2,
        num_classes: int = 10,
        key: jax.Array,
    ) -> None:
        width = check_int(width, "width", fn="EqxMLP", minimum=1)
        depth = check_int(depth, "depth", fn="EqxMLP", minimum=0)
        num_classes = check_int(num_classes, "num_classes", fn="EqxMLP", minimum=1)
        self.in_shape = tuple(in_shape)
        self.mlp = eqx.nn.MLP(
            in_size=math.prod(self.in_shape),
            out_size=num_classes,
            width_size=width,
            depth=depth,
            activation=jax.nn.relu,
            key=key,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape != self.in_shape:
            fail("EqxMLP", "x.shape", x.shape, "does not match the model",
                 f"in_shape={self.in_shape}", "the model takes ONE example; use jax.vmap")
        return self.mlp(x.reshape(-1))
