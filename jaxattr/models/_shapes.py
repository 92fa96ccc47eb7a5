"""Checks shared by the CNNs of :mod:`.linen` and :mod:`.nnx`, in the :mod:`jaxattr._checks`
vocabulary (messages start with the model's name)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._checks import check_int, fail


def check_features(
    features: Sequence[int], dense: int, num_classes: int, *, fn: str
) -> tuple[int, ...]:
    """The four conv widths as a tuple; ``dense`` and ``num_classes`` positive ints."""
    features = tuple(features)
    if len(features) != 4 or not all(
        isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f > 0 for f in features
    ):
        fail(fn, "features", features, "is not 4 positive ints", "4 positive ints (conv widths)")
    check_int(dense, "dense", fn=fn, minimum=1)
    check_int(num_classes, "num_classes", fn=fn, minimum=1)
    return features


def check_image_shape(shape: tuple[int, ...], *, fn: str, batched_ok: bool = True) -> None:
    """``(H, W, C)`` (or ``(N, H, W, C)``) with ``H`` and ``W`` divisible by 4."""
    ndims = (3, 4) if batched_ok else (3,)
    if len(shape) not in ndims:
        want = "(H, W, C) or (N, H, W, C)" if batched_ok else "(H, W, C)"
        fail(fn, "x.shape", tuple(shape), f"has {len(shape)} axes", want)
    h, w = shape[-3], shape[-2]
    if h % 4 or w % 4:
        fail(fn, "x.shape", tuple(shape), f"has H={h} and W={w}, not both divisible by 4",
             "H and W divisible by 4 (two 2x2 max-pools)")
