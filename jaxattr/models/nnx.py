"""The :class:`~jaxattr.models.CifarCNN` architecture in Flax NNX: a model for the engine's tests
(modified backprop must see through NNX's graph/state split), not a trained model."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_int, fail
from ._shapes import check_features, check_image_shape

__all__ = ["NNXCNN"]


class NNXCNN(nnx.Module):
    """The :class:`CifarCNN` architecture as a Flax NNX module (random init, for engine tests).

    Args:
        in_features: input channels.
        image_size: ``(H, W)`` of the input, each divisible by 4 (fixes the dense layer's width).
        features: widths of the four 3x3 convolutions.
        dense: width of the hidden dense layer.
        num_classes: number of logits.
        rngs: ``nnx.Rngs`` for the initialisation. On CPU, an ``rbg`` key
            (``nnx.Rngs(jax.random.key(0, impl="rbg"))``) initialises ~2.5x faster than the
            default threefry one, which XLA:CPU compiles slowly.

    Raises:
        ArgumentError: for non-positive widths or an ``image_size`` not divisible by 4, and at call
            time for an input of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxattr.models import NNXCNN
        >>> m = NNXCNN(rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))  # rbg: compiles fast on CPU
        >>> m(jnp.zeros((3, 8, 8, 1), jnp.float32)).shape
        (3, 10)
        >>> m(jnp.zeros((8, 8, 1), jnp.float32)).shape
        (10,)
    """

    def __init__(
        self,
        *,
        in_features: int = 1,
        image_size: tuple[int, int] = (8, 8),
        features: Sequence[int] = (16, 16, 32, 32),
        dense: int = 64,
        num_classes: int = 10,
        rngs: nnx.Rngs,
    ) -> None:
        f1, f2, f3, f4 = check_features(features, dense, num_classes, fn="NNXCNN")
        in_features = check_int(in_features, "in_features", fn="NNXCNN", minimum=1)
        h, w = image_size
        check_image_shape((h, w, in_features), fn="NNXCNN")
        self.image_shape = (h, w, in_features)
        conv = functools.partial(nnx.Conv, kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.conv1 = conv(in_features, f1)
        self.conv2 = conv(f1, f2)
        self.conv3 = conv(f2, f3)
        self.conv4 = conv(f3, f4)
        self.dense1 = nnx.Linear((h // 4) * (w // 4) * f4, dense, rngs=rngs)
        self.logits = nnx.Linear(dense, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        check_image_shape(x.shape, fn="NNXCNN")
        if x.shape[-3:] != self.image_shape:
            fail("NNXCNN", "x.shape", x.shape, "does not match the model",
                 f"a shape ending with image_shape={self.image_shape}")
        single = x.ndim == 3
        if single:
            x = x[None]
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = nnx.relu(self.conv3(x))
        x = nnx.relu(self.conv4(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        x = self.logits(x)
        return x[0] if single else x
