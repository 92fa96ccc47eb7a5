"""jaxattr.data.make_shapes: masks against the rendering, determinism, balance, spurious rate."""

import time

import numpy as np
import pytest

from jaxattr.data import SHAPES, load_digits, make_shapes
from jaxattr.errors import ArgumentError, ArgumentTypeError

N = 240


@pytest.fixture(scope="module")
def full():
    return make_shapes(N, seed=3, distractor=True, spurious_rate=0.75)


def test_object_pixels_differ_from_background_and_nothing_else_does(full):
    d = full
    diff = np.abs(d.images - d.background).max(axis=-1)  # (n, H, W)
    # every pixel of the object mask is painted: some channel moves by >= 0.2 (the design margin)
    assert (diff[d.object_mask] >= 0.2).all()
    # outside the three masks, the image IS the background, exactly
    outside = ~(d.object_mask | d.distractor_mask | d.spurious_mask)
    assert (diff[outside] == 0).all()
    # the three regions are disjoint
    assert not (d.object_mask & d.distractor_mask).any()
    assert not (d.object_mask & d.spurious_mask).any()
    assert not (d.distractor_mask & d.spurious_mask).any()
    # the object's pixels all have one colour (the shape's), so the mask is exactly the drawn area:
    # no painted pixel outside it (checked above) and no background pixel inside it
    for i in range(10):
        cols = d.images[i][d.object_mask[i]]
        assert np.ptp(cols, axis=0).max() == 0
        assert cols.max() >= 0.8 - 1e-6 and d.background[i].max() <= 0.6 + 1e-6


def test_patches_sizes_and_content(full):
    d = full
    assert (d.distractor_mask.sum(axis=(1, 2)) == 64).all()  # 8x8 by default
    assert (d.spurious_mask.sum(axis=(1, 2)) == 16).all()  # 4x4
    # the distractor is ONE fixed patch: the same 8x8x3 pixels on every image
    p0 = d.images[0][d.distractor_mask[0]]
    for i in range(1, 20):
        np.testing.assert_array_equal(d.images[i][d.distractor_mask[i]], p0)
    # each mask is a solid square: its bounding box is full
    for m in (d.distractor_mask[5], d.spurious_mask[5]):
        r, c = np.nonzero(m)
        assert m[r.min():r.max() + 1, c.min():c.max() + 1].all()


def test_disk_and_square_geometry_from_centres_and_sizes():
    d = make_shapes(60, seed=1, classes=("disk", "square"))
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    for i in range(60):
        (cy, cx), s = d.centers[i], d.sizes[i]
        if d.class_names[d.labels[i]] == "disk":
            expect = (yy - cy) ** 2 + (xx - cx) ** 2 <= s * s
        else:
            expect = (np.abs(yy - cy) <= 0.8 * s) & (np.abs(xx - cx) <= 0.8 * s)
        np.testing.assert_array_equal(d.object_mask[i], expect)
        assert 32 / 6 <= s <= 32 / 4
        assert expect.sum() > 20  # the shape is not empty


def test_deterministic_from_seed():
    a = make_shapes(30, seed=7, distractor=True, spurious_rate=0.5)
    b = make_shapes(30, seed=7, distractor=True, spurious_rate=0.5)
    c = make_shapes(30, seed=8, distractor=True, spurious_rate=0.5)
    for x, y in zip(a[:-1], b[:-1], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("n, k", [(240, 6), (101, 4)])
def test_class_balance(n, k):
    d = make_shapes(n, seed=0, classes=SHAPES[:k])
    counts = np.bincount(d.labels, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert d.labels.dtype == np.int32 and set(d.labels.tolist()) == set(range(k))


@pytest.mark.parametrize("rate", [1.0, 0.75, 0.5])
def test_spurious_rate_measured_from_patch_colours(rate):
    n, k = 200, 4
    d = make_shapes(n, seed=2, classes=SHAPES[:k], spurious_rate=rate)
    colours = np.stack([d.images[i][d.spurious_mask[i]][0] for i in range(n)])
    # solid patches
    for i in range(n):
        assert np.ptp(d.images[i][d.spurious_mask[i]], axis=0).max() == 0
    distinct = np.unique(colours.round(6), axis=0)
    assert len(distinct) == k  # one palette colour per class
    code = np.array([np.flatnonzero((distinct == c.round(6)).all(1))[0] for c in colours])
    # each class's own colour = its most frequent patch colour (rate > 1/k); agreement rate:
    own = np.array([np.bincount(code[d.labels == c], minlength=k).argmax() for c in range(k)])
    measured = (code == own[d.labels]).mean()
    assert measured == round(rate * n) / n
    np.testing.assert_array_equal(code == own[d.labels], d.spurious_match)
    assert len(set(own.tolist())) == k  # a different colour per class


def test_no_patch_options_give_empty_masks():
    d = make_shapes(8, seed=0)
    assert not d.distractor_mask.any() and not d.spurious_mask.any() and not d.spurious_match.any()


def test_generation_time():
    t0 = time.perf_counter()
    d = make_shapes(2000, seed=0, distractor=True, spurious_rate=0.9)
    dt = time.perf_counter() - t0
    assert d.images.shape == (2000, 32, 32, 3)
    assert dt < 10.0, f"2000 images took {dt:.1f} s"  # ~1 s on 2 busy cores


def test_digits_loader_still_works():
    d = load_digits(seed=0)
    assert d.x_train.shape == (1348, 8, 8, 1) and d.x_test.shape == (449, 8, 8, 1)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"size": 30}, ArgumentError, "make_shapes: size=30 is not a multiple of 4"),
    ({"classes": ("disk", "hexagon")}, ArgumentError, "unknown shape 'hexagon'"),
    ({"classes": ("disk",)}, ArgumentError, "make_shapes: classes=.*fewer than 2"),
    ({"classes": "disk"}, ArgumentTypeError, "make_shapes: classes='disk' has type str"),
    ({"spurious_rate": 1.5}, ArgumentError, "make_shapes: spurious_rate=1.5 is out of range"),
    ({"distractor": 1}, ArgumentTypeError, "make_shapes: distractor=1"),
    ({"distractor_size": 11}, ArgumentError, "make_shapes: distractor_size=11 is too large"),
    ({"n": 0}, ArgumentError, "make_shapes: n=0 is < 1"),
])
def test_errors(kwargs, exc, match):
    args = {"n": 4, **kwargs}
    with pytest.raises(exc, match=match):
        make_shapes(**args)
