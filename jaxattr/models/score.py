"""The score of ONE example for a linen classifier: the function the attribution transforms take."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import fail, fail_type

__all__ = ["score_fn"]


def score_fn(
    model: nn.Module, params: Any, label: int | jax.Array | None = None
) -> Callable[[jax.Array], jax.Array]:
    """The score of ONE example, ``x -> scalar``, ready for ``jaxattr.saliency``, ``rectgrad``...

    The score is a logit, before any softmax: the max logit by default (as in the RectGrad paper's
    code), else the logit of ``label``. Batch the attribution, not the score, with ``jax.vmap``.

    Args:
        model: a linen module mapping ``(N, H, W, C)`` to ``(N, num_classes)`` logits.
        params: its variables.
        label: class whose logit is scored; ``None`` scores the max logit. A Python int is checked
            against ``model.num_classes``; an integer array (e.g. a vmapped label) is not.

    Returns:
        ``score(x)`` with ``x`` of shape ``(H, W, C)``, returning a scalar.

    Raises:
        ArgumentError: if ``label`` is out of range, and when ``score`` is traced with a batch or
            an input that is not ``(H, W, C)``.
        ArgumentTypeError: if ``label`` is not an integer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxattr as ja
        >>> from jaxattr.models import DigitsCNN, score_fn
        >>> from jaxattr.models import init_params
        >>> model = DigitsCNN()
        >>> params = init_params(model, jax.random.key(0))
        >>> score = score_fn(model, params)
        >>> x = jnp.ones((4, 8, 8, 1), jnp.float32)
        >>> jax.jit(jax.vmap(ja.times_input(ja.rectgrad(score, q=90.0))))(x).shape
        (4, 8, 8, 1)

    References:
        Kim et al., arXiv:1902.04893 (max-logit score).
    """
    if label is not None:
        if isinstance(label, bool) or not (
            isinstance(label, (int, np.integer))
            or (hasattr(label, "dtype") and jnp.issubdtype(label.dtype, jnp.integer))
        ):
            fail_type("score_fn", "label", label, f"has type {type(label).__name__}",
                      "an int, an integer array or None")
        if isinstance(label, (int, np.integer)):
            n_cls = getattr(model, "num_classes", None)
            if label < 0 or (n_cls is not None and label >= n_cls):
                fail("score_fn", "label", label, "is out of range",
                     f"a class index in [0, {n_cls})")

    def score(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 3:
            fail("score_fn", "x.shape", x.shape, "is not one example", "(H, W, C)",
                 "the score takes ONE example: batch the attribution with jax.vmap")
        logits = model.apply(params, x[None])[0]
        return jnp.max(logits) if label is None else logits[label]

    return score
