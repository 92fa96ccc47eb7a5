"""A small real dataset shipped with a PyPI package: scikit-learn's 8x8 handwritten digits.

Nothing is downloaded at run time: the 1,797 images of ``sklearn.datasets.load_digits`` are part of
the scikit-learn wheel. Images come back as float32 NHWC arrays scaled to ``[0, 1]`` (the raw
grey levels are integers 0..16), labels as int32, split into train and test sets by a seeded
permutation so the split is the same on every machine.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Digits", "load_digits", "stroke_mask"]

_GREY_LEVELS = 16.0  # sklearn's digits are integer grey levels 0..16


class Digits(NamedTuple):
    """Train/test split of the digits dataset.

    Attributes:
        x_train: float32 images, shape ``(n_train, 8, 8, 1)``, values in ``[0, 1]``.
        y_train: int32 labels in ``0..9``, shape ``(n_train,)``.
        x_test: float32 images, shape ``(n_test, 8, 8, 1)``.
        y_test: int32 labels, shape ``(n_test,)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_train, y_train)``, the ``data`` argument of :func:`jaxattr.models.train`."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test


def load_digits(*, seed: int = 0, test_fraction: float = 0.25) -> Digits:
    """Loads scikit-learn's 8x8 digits as float32 NHWC arrays with a seeded train/test split.

    The split is a permutation drawn from ``numpy.random.default_rng(seed)``: the same seed gives
    the same split everywhere, and every image lands in exactly one of the two sets.

    Args:
        seed: seed of the permutation that splits the 1,797 images.
        test_fraction: fraction of the images put in the test set, in ``(0, 1)``.

    Returns:
        A :class:`Digits` tuple ``(x_train, y_train, x_test, y_test)``; images have shape
        ``(n, 8, 8, 1)``, dtype float32 and values in ``[0, 1]``; labels are int32 in ``0..9``.
        The test set has ``round(1797 * test_fraction)`` images.

    Raises:
        ValueError: if ``test_fraction`` is not in ``(0, 1)`` or leaves a set empty.
        TypeError: if ``seed`` is not an integer.

    Example:
        >>> from jaxattr.data import load_digits
        >>> d = load_digits(seed=0)
        >>> d.x_train.shape, d.x_train.dtype, d.x_test.shape
        ((1348, 8, 8, 1), dtype('float32'), (449, 8, 8, 1))
        >>> float(d.x_train.min()), float(d.x_train.max())
        (0.0, 1.0)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed={seed!r} must be an int")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, np.float64) / _GREY_LEVELS).astype(np.float32)[..., None]
    labels = np.asarray(bunch.target, np.int32)
    n = images.shape[0]
    n_test = int(round(n * test_fraction))
    if n_test == 0 or n_test == n:
        raise ValueError(
            f"test_fraction={test_fraction} leaves an empty set ({n - n_test} train, "
            f"{n_test} test of {n} images)"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return Digits(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def stroke_mask(images: np.ndarray, *, threshold: float = 0.25) -> np.ndarray:
    """Boolean mask of the pixels that belong to a digit's strokes: grey level ``> threshold``.

    Channels are averaged first, so the mask has the image's shape without the channel axis.

    Args:
        images: array of shape ``(..., H, W, C)`` with values in ``[0, 1]``.
        threshold: grey level in ``[0, 1)`` above which a pixel is ink.

    Returns:
        Boolean array of shape ``(..., H, W)``.

    Raises:
        ValueError: if ``threshold`` is outside ``[0, 1)`` or ``images`` has fewer than 3 axes.

    Example:
        >>> import numpy as np
        >>> from jaxattr.data import stroke_mask
        >>> img = np.zeros((2, 2, 1), np.float32); img[0, 1, 0] = 0.9
        >>> stroke_mask(img).tolist()
        [[False, True], [False, False]]
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold} must be in [0, 1)")
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(
            f"images.shape={images.shape} must be (..., H, W, C) with a channel axis"
        )
    return images.mean(axis=-1) > threshold
