"""The RectGrad paper's CIFAR-10 CNN in Flax linen, and a half-width variant for 8x8 digits.

conv32-conv32-maxpool-conv64-conv64-maxpool-dense256-dense10 with SAME padding and ReLU (Kim et
al., arXiv:1902.04893). Two 2x2 max-pools need the spatial size divisible by 4, so the same module
runs on 32x32x3 CIFAR images and on 8x8x1 digits (:mod:`jaxattr.data`). Every ReLU is
``flax.linen.relu`` (``jax.nn.relu``), the primitive pattern that :mod:`jaxattr.backprop` rewrites.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._shapes import check_features, check_image_shape

__all__ = ["CifarCNN", "DigitsCNN"]


class CifarCNN(nn.Module):
    """The RectGrad paper's CIFAR-10 CNN: conv-conv-pool-conv-conv-pool-dense-dense, SAME, ReLU.

    Takes one image ``(H, W, C)`` or a batch ``(N, H, W, C)`` with ``H`` and ``W`` divisible by 4,
    and returns the logits (no softmax), shape ``(num_classes,)`` or ``(N, num_classes)``.

    Attributes:
        features: widths of the four 3x3 convolutions.
        dense: width of the hidden dense layer.
        num_classes: number of logits.

    Raises:
        ArgumentError: at ``init``/``apply`` if ``features`` is not 4 positive ints, ``dense`` or
            ``num_classes`` is not positive, or ``x`` has the wrong rank or spatial size.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import CifarCNN
        >>> model = CifarCNN()
        >>> x = jnp.zeros((5, 8, 8, 1), jnp.float32)
        >>> params = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
        >>> params["params"]["dense1"]["kernel"].shape  # 2x2x64 after two pools on 8x8
        (256, 256)
        >>> jax.eval_shape(model.apply, params, x).shape  # a batch
        (5, 10)
        >>> jax.eval_shape(model.apply, params, x[0]).shape  # one example
        (10,)

    References:
        Kim et al., "Why are Saliency Maps Noisy? Cause of and Solution to Noisy Saliency Maps",
        arXiv:1902.04893 (CIFAR-10 architecture).
    """

    features: Sequence[int] = (32, 32, 64, 64)
    dense: int = 256
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        name = type(self).__name__
        f1, f2, f3, f4 = check_features(self.features, self.dense, self.num_classes, fn=name)
        x = jnp.asarray(x)
        check_image_shape(x.shape, fn=name)
        single = x.ndim == 3
        if single:
            x = x[None]
        x = nn.relu(nn.Conv(f1, (3, 3), padding="SAME", name="conv1")(x))
        x = nn.relu(nn.Conv(f2, (3, 3), padding="SAME", name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(f3, (3, 3), padding="SAME", name="conv3")(x))
        x = nn.relu(nn.Conv(f4, (3, 3), padding="SAME", name="conv4")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense, name="dense1")(x))
        x = nn.Dense(self.num_classes, name="logits")(x)
        return x[0] if single else x


class DigitsCNN(CifarCNN):
    """:class:`CifarCNN` at half width (conv16-conv16-pool-conv32-conv32-pool-dense64-dense10).

    About 4x cheaper; enough for 8x8 digits. Same call convention as :class:`CifarCNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import DigitsCNN
        >>> x = jnp.zeros((8, 8, 1), jnp.float32)
        >>> params = jax.eval_shape(DigitsCNN().init, jax.random.key(0), x)
        >>> params["params"]["dense1"]["kernel"].shape
        (128, 64)
    """

    features: Sequence[int] = (16, 16, 32, 32)
    dense: int = 64
