"""ROAR / KAR: remove (or keep) the most attributed pixels and retrain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._checks import check_callable, check_choice, fail, fail_type


class RetrainCurve(NamedTuple):
    """Result of :func:`remove_and_retrain`."""

    fractions: np.ndarray
    """``(k,)`` fractions of the pixels of each image that were replaced (ROAR) or kept (KAR)."""
    accuracy: np.ndarray
    """``(k,)`` test accuracy of the model retrained at each fraction (``eval_fn``'s value)."""


def _ablate(x: np.ndarray, a: np.ndarray, frac: float, keep: bool, fill: np.ndarray) -> np.ndarray:
    """``x`` with its top ``floor(frac * H * W)`` pixels by ``|sum_c a|`` replaced by ``fill``
    (``keep=False``, ROAR) or all its other pixels replaced (``keep=True``, KAR)."""
    n, h, w = x.shape[:3]
    e = np.abs(a.sum(axis=-1)).reshape(n, h * w)
    order = np.argsort(-e, axis=1, kind="stable")  # most attributed first, ties by index
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    k = int(np.floor(frac * h * w + 1e-9))
    if keep:  # KAR: keep the top k, replace the rest
        drop = rank >= k
    else:  # ROAR: replace the top k
        drop = rank < k
    drop = drop.reshape(n, h, w, 1)
    return np.where(drop, fill.reshape(1, 1, 1, -1), x).astype(x.dtype)


def remove_and_retrain(
    train_fn: Callable[[np.ndarray, np.ndarray], Any],
    eval_fn: Callable[[Any, np.ndarray, np.ndarray], float],
    train_data: tuple[Any, Any, Any],
    test_data: tuple[Any, Any, Any],
    *,
    fractions: tuple[float, ...] | list[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    mode: str = "remove",
) -> RetrainCurve:
    """ROAR (``mode="remove"``) or KAR (``mode="keep"``): retrain without the attributed pixels.

    For each fraction ``f``, every training and test image loses its ``floor(f * H * W)`` most
    attributed pixels (ROAR: they are replaced) or keeps only them (KAR: all others are
    replaced). Pixels are ranked by ``|attribution summed over channels|``, highest first, ties
    by flat index; a replaced pixel takes the per-channel mean of the *unablated* training
    images (Hooker et al.'s choice, so the replacement carries no class information). A model is
    then trained from scratch on the ablated training set with ``train_fn`` and scored on the
    ablated test set with ``eval_fn``. A good attribution makes ROAR accuracy fall fast and KAR
    accuracy stay high; compare with a random map (its accuracy is the floor to beat).

    Args:
        train_fn: ``(images, labels) -> params``: trains a fresh model (fix its seed inside).
        eval_fn: ``(params, images, labels) -> accuracy``.
        train_data: ``(images, labels, maps)``: images ``(N, H, W, C)``, maps of the same shape
            (one per training image, e.g. computed with the model trained on the clean data).
        test_data: ``(images, labels, maps)`` for the test set.
        fractions: fractions in ``[0, 1]``.
        mode: ``"remove"`` (ROAR) or ``"keep"`` (KAR).

    Returns:
        A :class:`RetrainCurve` ``(fractions, accuracy)``.

    Raises:
        ArgumentError: if ``mode`` is unknown, a fraction is outside ``[0, 1]``, or a maps array
            does not have its images' shape (images must be ``(N, H, W, C)``).
        ArgumentTypeError: if ``train_fn`` or ``eval_fn`` is not callable.

    Example:
        >>> import numpy as np
        >>> from jaxattr.metrics import remove_and_retrain
        >>> x = np.arange(8.0).reshape(2, 2, 2, 1); y = np.array([0, 1])
        >>> seen = []
        >>> curve = remove_and_retrain(lambda xs, ys: seen.append(xs) or 0,
        ...                            lambda p, xs, ys: 1.0, (x, y, x), (x, y, x),
        ...                            fractions=[0.5])
        >>> seen[0][0, ..., 0].tolist()  # the 2 brightest pixels -> the training mean 3.5
        [[0.0, 1.0], [3.5, 3.5]]

    References:
        Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep
        Neural Networks", arXiv:1806.10758.
    """
    fn = "remove_and_retrain"
    check_callable(train_fn, "train_fn", fn=fn, expected="a function (images, labels) -> params")
    check_callable(eval_fn, "eval_fn", fn=fn,
                   expected="a function (params, images, labels) -> accuracy")
    mode = check_choice(mode, "mode", ("remove", "keep"), fn=fn)
    fracs = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.number)) or not 0 <= f <= 1:
            fail(fn, "fractions", list(fractions), f"contains {f!r}", "fractions in [0, 1]")
        fracs.append(float(f))
    arrays = []
    for which, data in (("train_data", train_data), ("test_data", test_data)):
        try:
            x, y, a = data
        except (TypeError, ValueError):
            fail_type(fn, which, data, "is not a triple", "(images, labels, maps)")
        x, y, a = np.asarray(x), np.asarray(y), np.asarray(a)
        if x.ndim != 4:
            fail(fn, f"{which} images.shape", x.shape, f"has {x.ndim} axes", "(N, H, W, C)")
        if a.shape != x.shape:
            fail(fn, f"{which} maps.shape", a.shape, "differs from the images'",
                 f"images.shape={x.shape}")
        arrays.append((x, y, a))
    (xtr, ytr, atr), (xte, yte, ate) = arrays
    fill = xtr.reshape(-1, xtr.shape[-1]).mean(axis=0)
    keep = mode == "keep"
    acc = []
    for f in fracs:
        params = train_fn(_ablate(xtr, atr, f, keep, fill), ytr)
        acc.append(float(eval_fn(params, _ablate(xte, ate, f, keep, fill), yte)))
    return RetrainCurve(np.asarray(fracs), np.asarray(acc))
