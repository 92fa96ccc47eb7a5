"""Two small datasets that need no download: scikit-learn's 8x8 digits, and procedural shapes
whose ground truth (which pixels make the class) is known exactly.

**Digits.** The 1,797 images of ``sklearn.datasets.load_digits`` are part of the scikit-learn
wheel. Images come back as float32 NHWC arrays scaled to ``[0, 1]`` (the raw grey levels are
integers 0..16), labels as int32, split into train and test sets by a seeded permutation so the
split is the same on every machine. Nothing says which pixels a model uses; :func:`stroke_mask` is
only a proxy.

**Shapes** (:func:`make_shapes`). 32x32 RGB images of one filled shape (class = shape: disk,
square, triangle, cross, ring, bar) at a random position, size and saturated colour over a
low-saturation textured background, rendered with numpy from a seed in well under a second per
thousand images. Each image comes with the exact mask of the pixels its shape covers. The design
follows the synthetic benchmarks that attribution work uses to get a ground truth:

- *class = shape, colour and position random*: no colour or location shortcut predicts the class,
  so a model must look at the object, and attribution outside the object mask is attribution a
  correct explanation should not have (the RectGrad paper's "attribution outside the bounding
  box", Kim et al. 2019, arXiv:1902.04893; CLEVR-XAI's object masks as relevance ground truth,
  Arras et al. 2022, arXiv:2003.07258, which also scores the share of relevance inside the mask);
- *a class-independent distractor patch* (``distractor=True``): one fixed random patch pasted at a
  random place on every image, never overlapping the object, as in the RectGrad paper's patch
  experiment (a fixed random 10x10 patch on every CIFAR-10 training image; here scaled to 32x32
  shapes, 8x8 by default). It carries no label information, like the objects BIM pastes into
  every class's images (Yang & Kim 2019, arXiv:1907.09701: features common to all classes are
  less important than the class's own), so a method that puts mass on it shows a feature the
  model has no reason to use;
- *a spurious patch correlated with the label* (``spurious_rate=r``): a small solid patch whose
  colour is the class's colour in a fraction ``r`` of the images (exactly ``round(r * n)``) and
  another class's colour otherwise, as in the spurious-correlation tests of Adebayo et al. 2020
  ("Debugging Tests for Model Explanations", arXiv:2011.05429): the data say what a model *could*
  use, and a test set with ``spurious_rate=1/num_classes`` (patch independent of the label)
  measures whether it did.

Every pixel outside the three masks is the background texture (returned as ``background``), and
every pixel inside the object mask differs from it by at least 0.2 in some channel: shape colours
have a channel >= 0.8, the background stays below 0.6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from ._checks import check_bool, check_int, check_real, fail, fail_type

if TYPE_CHECKING:
    from sklearn.utils import Bunch

__all__ = ["SHAPES", "Digits", "Shapes", "load_digits", "make_shapes", "stroke_mask"]

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

    bunch = cast("Bunch", _sk_load_digits())  # a Bunch unless return_X_y=True
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


# ---------------------------------------------------------------------------------------------
# Procedural shapes with ground-truth masks

SHAPES = ("disk", "square", "triangle", "cross", "ring", "bar")
"""Names of the shape classes of :func:`make_shapes`, in label order."""

_BG_LO, _BG_HI = 0.05, 0.6  # background texture range: every channel stays in [0.05, 0.6]
_OBJ_VALUE = (0.8, 1.0)  # the brightest channel of a shape's colour (saturation 1)


class Shapes(NamedTuple):
    """Images of :func:`make_shapes` with their ground truth.

    Attributes:
        images: float32 ``(n, H, W, 3)`` in ``[0, 1]``.
        labels: int32 ``(n,)``: index into ``class_names``.
        object_mask: bool ``(n, H, W)``: exactly the pixels the shape covers.
        distractor_mask: bool ``(n, H, W)``: the distractor patch (all False without one).
        spurious_mask: bool ``(n, H, W)``: the spurious patch (all False without one).
        spurious_match: bool ``(n,)``: the spurious patch has the colour of the image's own class
            (all False without a spurious patch).
        background: float32 ``(n, H, W, 3)``: the texture under everything; ``images`` equals it
            outside the three masks.
        centers: float64 ``(n, 2)``: the shape's centre ``(row, col)`` in pixel units.
        sizes: float64 ``(n,)``: the shape's half-extent in pixels.
        class_names: the shape names, ``class_names[label]``.
    """

    images: np.ndarray
    labels: np.ndarray
    object_mask: np.ndarray
    distractor_mask: np.ndarray
    spurious_mask: np.ndarray
    spurious_match: np.ndarray
    background: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    class_names: tuple[str, ...]

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)``, the ``data`` argument of :func:`jaxattr.models.train`."""
        return self.images, self.labels


def _shape_mask(name: str, dy: np.ndarray, dx: np.ndarray, s: float, vertical: bool) -> np.ndarray:
    """Pixels (offsets ``dy, dx`` of their centres from the shape's centre) inside ``name``."""
    if name == "disk":
        return dy**2 + dx**2 <= s**2
    if name == "square":
        h = 0.8 * s
        return (np.abs(dy) <= h) & (np.abs(dx) <= h)
    if name == "triangle":  # apex up, base at dy = +s, half-width s at the base
        return (dy >= -s) & (dy <= s) & (np.abs(dx) <= (dy + s) / 2)
    if name == "cross":
        w = s / 3
        return ((np.abs(dx) <= w) & (np.abs(dy) <= s)) | ((np.abs(dy) <= w) & (np.abs(dx) <= s))
    if name == "ring":
        r2 = dy**2 + dx**2
        return (r2 <= s**2) & (r2 >= (0.55 * s) ** 2)
    if name == "bar":
        if vertical:
            dy, dx = dx, dy
        return (np.abs(dy) <= s / 4) & (np.abs(dx) <= s)
    raise AssertionError(name)


def _hsv_colour(rng: np.random.Generator, hue: float | None = None) -> np.ndarray:
    """A saturated colour: hue uniform in ``[0, 6)`` (or ``hue``), saturation 1, value in
    ``_OBJ_VALUE`` (1 when ``hue`` is given)."""
    h, v = (rng.uniform(0, 6), rng.uniform(*_OBJ_VALUE)) if hue is None else (hue, 1.0)
    x = v * (1 - abs(h % 2 - 1))
    i = int(h)
    rgb = [(v, x, 0), (x, v, 0), (0, v, x), (0, x, v), (x, 0, v), (v, 0, x)][i]
    return np.asarray(rgb, np.float64)


def _textures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Low-saturation textured backgrounds ``(n, size, size, 3)`` in ``[_BG_LO, _BG_HI]``."""
    base = rng.uniform(0.2, 0.45, (n, 1, 1, 1)) + rng.uniform(-0.04, 0.04, (n, 1, 1, 3))
    coarse = rng.normal(0, 1, (n, size // 4 + 1, size // 4 + 1, 1))
    coarse = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :size, :size]
    # a 3x3 box blur of the blocky noise: blobs a few pixels wide
    pad = np.pad(coarse, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(pad[:, i:i + size, j:j + size] for i in range(3) for j in range(3)) / 9
    fine = rng.normal(0, 1, (n, size, size, 3))
    tex = base + 0.07 * blur + 0.03 * fine
    return np.clip(tex, _BG_LO, _BG_HI)


def _place(rng: np.random.Generator, size: int, k: int, taken: np.ndarray) -> tuple[int, int]:
    """Top-left corner of a ``k x k`` patch disjoint from ``taken`` (dilated by one pixel)."""
    # a patch may start at (i, j) iff its window plus a one-pixel margin holds no taken pixel
    t = np.pad(taken, 1).astype(np.int32)
    c = np.pad(t.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    m = k + 2  # window with margin, in padded coordinates starting at (i, j)
    win = c[m:, m:] - c[:-m, m:] - c[m:, :-m] + c[:-m, :-m]  # (size - k + 1)^2 window sums
    ok = np.argwhere(win[: size - k + 1, : size - k + 1] == 0)
    if len(ok) == 0:
        raise RuntimeError("no room for a patch")  # unreachable with make_shapes' checked sizes
    i, j = ok[rng.integers(len(ok))]
    return int(i), int(j)


def make_shapes(
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    classes: tuple[str, ...] | list[str] = SHAPES,
    distractor: bool = False,
    distractor_size: int = 8,
    spurious_rate: float | None = None,
    spurious_size: int = 4,
) -> Shapes:
    """Procedural images of shapes with exact ground-truth masks (class = shape).

    Each image has one filled shape of class ``labels[i]`` (``classes[labels[i]]``) with a random
    centre, half-extent ``s`` in ``[size / 6, size / 4]`` and a random saturated colour, over a
    textured low-saturation background. Labels are balanced: the counts of two classes differ by
    at most one. Rendering is at pixel centres, without anti-aliasing, so ``object_mask`` is
    exactly the set of pixels whose colour is the shape's. The same arguments give the same
    arrays on every machine (numpy's ``default_rng(seed)``).

    Options (see the module docstring for the literature behind them):

    - ``distractor=True``: the same random ``distractor_size``-square RGB patch (drawn once from
      ``seed``) pasted on every image at a random place, one pixel clear of the object: a feature
      independent of the label.
    - ``spurious_rate=r``: a solid ``spurious_size``-square patch, one pixel clear of the object
      and the distractor, coloured with the class's palette colour in exactly ``round(r * n)``
      images (chosen at random; ``spurious_match``) and with a uniformly drawn *other* class's
      colour in the rest. ``r = 1`` makes the patch a perfect predictor; ``r = 1/num_classes``
      makes it independent of the label.

    Args:
        n: number of images, >= 1.
        seed: seed of everything random.
        size: image height and width, a multiple of 4 in ``[16, 128]``.
        classes: shape names from :data:`SHAPES`, at least 2, no repeats; label ``k`` is
            ``classes[k]``.
        distractor: paste the class-independent distractor patch.
        distractor_size: its side in pixels, in ``[2, size // 3]``.
        spurious_rate: fraction of images whose spurious patch matches the label, in ``[0, 1]``;
            ``None`` for no spurious patch.
        spurious_size: its side in pixels, in ``[2, size // 4]``.

    Returns:
        A :class:`Shapes` tuple.

    Raises:
        ArgumentError: if a size or rate is out of range or a class name is unknown or repeated.
        ArgumentTypeError: if an argument has the wrong type.

    Example:
        >>> from jaxattr.data import make_shapes
        >>> d = make_shapes(12, seed=0, distractor=True, spurious_rate=0.5)
        >>> d.images.shape, d.images.dtype, d.object_mask.shape
        ((12, 32, 32, 3), dtype('float32'), (12, 32, 32))
        >>> d.class_names[d.labels[0]] in ("disk", "square", "triangle", "cross", "ring", "bar")
        True
        >>> int(d.spurious_match.sum()), bool((d.object_mask & d.distractor_mask).any())
        (6, False)

    References:
        Kim et al. 2019, arXiv:1902.04893 (patch experiment); Adebayo et al. 2020,
        arXiv:2011.05429 (spurious signals); Yang & Kim 2019, arXiv:1907.09701 (BIM);
        Arras et al. 2022, arXiv:2003.07258 (CLEVR-XAI ground-truth masks).
    """
    fn = "make_shapes"
    n = check_int(n, "n", fn=fn, minimum=1)
    seed = check_int(seed, "seed", fn=fn, minimum=0)
    size = check_int(size, "size", fn=fn, minimum=16)
    if size % 4 or size > 128:
        fail(fn, "size", size, "is not a multiple of 4 in [16, 128]",
             "a multiple of 4 in [16, 128] (the CNN pools twice)")
    if isinstance(classes, str) or not isinstance(classes, (tuple, list)):
        fail_type(fn, "classes", classes, f"has type {type(classes).__name__}",
                  "a tuple of shape names from jaxattr.data.SHAPES")
    classes = tuple(classes)
    for c in classes:
        if c not in SHAPES:
            fail(fn, "classes", classes, f"contains the unknown shape {c!r}",
                 "names from " + ", ".join(map(repr, SHAPES)))
    if len(set(classes)) != len(classes) or len(classes) < 2:
        fail(fn, "classes", classes, "has repeats or fewer than 2 names",
             "at least 2 distinct shape names")
    distractor = check_bool(distractor, "distractor", fn=fn)
    distractor_size = check_int(distractor_size, "distractor_size", fn=fn, minimum=2)
    if distractor_size > size // 3:
        fail(fn, "distractor_size", distractor_size, "is too large",
             f"an int in [2, {size // 3}] (size // 3)")
    spurious_size = check_int(spurious_size, "spurious_size", fn=fn, minimum=2)
    if spurious_size > size // 4:
        fail(fn, "spurious_size", spurious_size, "is too large",
             f"an int in [2, {size // 4}] (size // 4)")
    if spurious_rate is not None:
        spurious_rate = check_real(spurious_rate, "spurious_rate", fn=fn, lo=0.0, hi=1.0)

    k = len(classes)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k).astype(np.int32)
    background = _textures(rng, n, size)
    images = background.copy()
    obj = np.zeros((n, size, size), bool)
    dis = np.zeros((n, size, size), bool)
    spu = np.zeros((n, size, size), bool)
    s_lo, s_hi = size / 6, size / 4
    sizes = rng.uniform(s_lo, s_hi, n)
    centers = np.empty((n, 2))
    vertical = rng.random(n) < 0.5
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    patch = rng.uniform(0, 1, (distractor_size, distractor_size, 3))  # ONE patch for all images
    palette = np.stack([_hsv_colour(rng, hue=6.0 * c / k) for c in range(k)])  # evenly spaced hues
    match = np.zeros(n, bool)
    patch_class = labels.copy()
    if spurious_rate is not None:
        match[rng.permutation(n)[: int(round(spurious_rate * n))]] = True
        other = (labels + rng.integers(1, k, n)) % k  # uniform over the other k - 1 classes
        patch_class = np.where(match, labels, other)
    for i in range(n):
        s = sizes[i]
        margin = s + 1
        cy, cx = rng.uniform(margin, size - margin, 2)
        centers[i] = cy, cx
        m = _shape_mask(classes[labels[i]], yy - cy, xx - cx, s, bool(vertical[i]))
        obj[i] = m
        images[i][m] = _hsv_colour(rng)
        taken = m.copy()
        if distractor:
            r, c = _place(rng, size, distractor_size, taken)
            dis[i, r:r + distractor_size, c:c + distractor_size] = True
            images[i, r:r + distractor_size, c:c + distractor_size] = patch
            taken |= dis[i]
        if spurious_rate is not None:
            r, c = _place(rng, size, spurious_size, taken)
            spu[i, r:r + spurious_size, c:c + spurious_size] = True
            images[i, r:r + spurious_size, c:c + spurious_size] = palette[patch_class[i]]
    return Shapes(
        images.astype(np.float32), labels, obj, dis, spu, match if spurious_rate is not None
        else np.zeros(n, bool), background.astype(np.float32), centers, sizes, classes,
    )
