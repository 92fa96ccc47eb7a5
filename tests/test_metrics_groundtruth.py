"""Ground-truth metrics of jaxattr.metrics on hand-made maps whose value is known exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxattr.errors import ArgumentError, ArgumentTypeError
from jaxattr.metrics import (
    cascading_randomization,
    energy_in_mask,
    mass_in_region,
    pointing_game,
    rank_correlation,
    remove_and_retrain,
)

# A 3x4 map and a 2x2 mask in its top-left corner.
#   |m| total = 1+2+3+4 + 0+5+1+1 + 2+0+0+1 = 20; inside (rows 0-1, cols 0-1): 1+2+0+5 = 8
M = np.array([[1.0, -2.0, 3.0, -4.0],
              [0.0, 5.0, -1.0, 1.0],
              [2.0, 0.0, 0.0, -1.0]])
MASK = np.zeros((3, 4), bool)
MASK[:2, :2] = True


def test_energy_abs_and_positive_by_hand():
    assert float(energy_in_mask(M, MASK)) == pytest.approx(8 / 20, abs=0)
    # positive part: total = 1+3+5+1+2 = 12; inside = 1+5 = 6
    assert float(energy_in_mask(M, MASK, mode="positive")) == pytest.approx(6 / 12, abs=0)
    # the mask shifted one column right (an off-by-one) gives another value: (2+3+5+1)/20
    shifted = np.roll(MASK, 1, axis=1)
    assert float(energy_in_mask(M, shifted)) == pytest.approx(11 / 20, abs=0)
    # scale-free, and normalised by the total energy, not by the mask's area
    assert float(energy_in_mask(7 * M, MASK)) == pytest.approx(0.4)
    assert float(energy_in_mask(np.ones((3, 4)), MASK)) == pytest.approx(4 / 12)


def test_energy_sums_channels_before_abs():
    # channels cancel exactly inside the mask: the channel-summed map is 0 there
    attr = np.zeros((3, 4, 2))
    attr[0, 0] = [3.0, -3.0]
    attr[2, 3] = [1.0, 1.0]  # outside: |1 + 1| = 2
    attr[1, 1] = [1.0, 0.0]  # inside: 1
    assert float(energy_in_mask(attr, MASK)) == pytest.approx(1 / 3)
    # per-channel abs would have given (3 + 3 + 1) / 9
    assert float(energy_in_mask(attr, MASK, channel_axis=-1)) != pytest.approx(7 / 9)


def test_energy_nan_and_equals_mass_in_region():
    assert np.isnan(float(energy_in_mask(np.zeros((3, 4)), MASK)))
    assert np.isnan(float(energy_in_mask(-np.abs(M), MASK, mode="positive")))
    rng = np.random.default_rng(0)
    maps, masks = rng.normal(size=(5, 6, 6, 3)), rng.random((5, 6, 6)) < 0.3
    a = jax.vmap(energy_in_mask)(maps, masks)
    b = jax.vmap(mass_in_region)(maps, masks)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    ref = [np.abs(m.sum(-1))[k].sum() / np.abs(m.sum(-1)).sum()
           for m, k in zip(maps, masks, strict=True)]
    np.testing.assert_allclose(a, ref, rtol=1e-5)


def test_pointing_game_by_hand():
    # |m| peaks at (1, 1) = 5, inside the mask
    assert float(pointing_game(M, MASK)) == 1.0
    assert float(pointing_game(M, ~MASK)) == 0.0
    # a negative peak: |.| counts it, the positive part does not
    m = M.copy()
    m[2, 3] = -9.0
    assert float(pointing_game(m, MASK)) == 0.0
    assert float(pointing_game(m, MASK, mode="positive")) == 1.0
    # ties: the first peak in row-major order wins
    t = np.zeros((3, 4))
    t[0, 3] = t[1, 0] = 2.0
    assert float(pointing_game(t, MASK)) == 0.0  # (0, 3) comes first and is outside
    t[0, 1] = 2.0
    assert float(pointing_game(t, MASK)) == 1.0
    assert np.isnan(float(pointing_game(np.zeros((3, 4)), MASK)))


def test_pointing_game_tolerance_is_chebyshev_and_exact():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    for (r, c), dist in [((4, 6), 2), ((6, 6), 2), ((7, 4), 3), ((1, 1), 3)]:
        m = np.zeros((9, 9))
        m[r, c] = 1.0
        assert float(pointing_game(m, mask, tolerance=dist)) == 1.0
        assert float(pointing_game(m, mask, tolerance=dist - 1)) == 0.0


def test_pointing_game_hit_rate_over_a_batch():
    maps = np.zeros((4, 3, 4))
    maps[0, 0, 0] = maps[1, 2, 3] = maps[2, 1, 1] = maps[3, 0, 3] = 1.0
    hits = jax.vmap(pointing_game, in_axes=(0, None))(maps, MASK)
    np.testing.assert_array_equal(hits, [1.0, 0.0, 1.0, 0.0])
    assert float(jnp.mean(hits)) == 0.5


def test_rank_correlation_with_ties_by_hand_and_scipy():
    a = np.array([1.0, 2.0, 2.0, 3.0])
    b = np.array([1.0, 3.0, 2.0, 4.0])
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])  # average ranks, by hand
    expect = np.corrcoef(ra, rb)[0, 1]
    assert float(rank_correlation(a, b)) == pytest.approx(expect, rel=1e-6)
    assert expect == pytest.approx(0.9486832980505138)
    rng = np.random.default_rng(1)
    jitted = jax.jit(rank_correlation)
    for _ in range(5):  # many exact zeros, as in RectGrad maps
        x = rng.normal(size=(8, 8)) * (rng.random((8, 8)) < 0.3)
        y = x + rng.normal(size=(8, 8)) * (rng.random((8, 8)) < 0.5)
        ref = scipy.stats.spearmanr(x.ravel(), y.ravel()).statistic
        assert float(jitted(x, y)) == pytest.approx(ref, rel=1e-5)
    assert np.isnan(float(rank_correlation(np.ones(5), np.arange(5.0))))


# map = a * x + b * c: the trained model has a = 1, b = 0, so map = x
C = np.array([3.0, 0.0, 4.0, 1.0, 2.0])  # a fixed pattern, independent of x
XS = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.1, 0.4, 0.3, 0.2]])
PARAMS = {"top": {"b": jnp.zeros(())}, "bottom": {"a": jnp.ones(())}}


def _map(p, xs):
    return p["bottom"]["a"] * xs + p["top"]["b"] * C[None]


def _flip(key, v):  # deterministic "re-initialisation": b 0 -> 100, a 1 -> -1
    return jnp.where(v == 0, 100.0, -v)


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_cascading_vs_independent_exact(mode):
    r = cascading_randomization(_map, PARAMS, ["top", "bottom"], XS, key=jax.random.key(0),
                                mode=mode, absolute=False, channel_axis=None, reinit=_flip)
    assert r.layers == ("top", "bottom") and r.correlation.shape == (2, 2)
    # step 0: map = x + 100 c, ranked as c
    ref0 = [scipy.stats.spearmanr(x, C).statistic for x in XS]
    np.testing.assert_allclose(r.correlation[0], ref0, rtol=1e-6)
    if mode == "cascading":  # b stays randomised: -x + 100 c, still ranked as c
        np.testing.assert_allclose(r.correlation[1], ref0, rtol=1e-6)
    else:  # only a re-drawn: map = -x, correlation exactly -1
        np.testing.assert_allclose(r.correlation[1], [-1.0, -1.0], rtol=1e-6)
    assert float(PARAMS["bottom"]["a"]) == 1.0  # the caller's params are untouched


def test_absolute_ignores_sign_flips_and_params_free_maps_stay_at_one():
    p = {"a": jnp.ones(())}
    r = cascading_randomization(lambda q, xs: q["a"] * xs, p, ["a"], XS, key=jax.random.key(0),
                                channel_axis=None, reinit=lambda k, v: -v)
    np.testing.assert_allclose(r.correlation, 1.0, rtol=1e-6)
    r = cascading_randomization(lambda q, xs: q["a"] * xs, p, ["a"], XS, key=jax.random.key(0),
                                channel_axis=None, reinit=lambda k, v: -v, absolute=False)
    np.testing.assert_allclose(r.correlation, -1.0, rtol=1e-6)
    # a "method" that ignores the model (an edge detector) passes through randomisation unchanged
    r = cascading_randomization(lambda q, xs: xs**2, PARAMS, ["top", "bottom"], XS,
                                key=jax.random.key(0), channel_axis=None, return_maps=True)
    np.testing.assert_allclose(r.correlation, 1.0, rtol=1e-6)
    assert len(r.maps) == 3


def test_default_reinit_keeps_scale_and_sums_channels():
    w = jnp.asarray(np.random.default_rng(2).normal(0, 0.3, (100, 100)), jnp.float32)
    seen = []

    def map_fn(p, xs):
        seen.append(p["params"]["conv1"]["kernel"])
        return xs * p["params"]["conv1"]["kernel"].sum()

    xs = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 3)), jnp.float32)
    params = {"params": {"conv1": {"kernel": w}}}
    cascading_randomization(map_fn, params, ["params/conv1"], xs, key=jax.random.key(0))
    new = np.asarray(seen[1])
    assert abs(new.std() / 0.3 - 1) < 0.05 and abs(new.mean()) < 0.02
    assert np.corrcoef(new.ravel(), np.asarray(w).ravel())[0, 1] < 0.05


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"layers": ["nope"]}, ArgumentError, "cascading_randomization: layers='nope' is not found"),
    ({"layers": []}, ArgumentError, "cascading_randomization: layers=\\[\\] is empty"),
    ({"layers": "top"}, ArgumentTypeError, "cascading_randomization: layers='top' has type str"),
    ({"mode": "cascade"}, ArgumentError, "cascading_randomization: mode='cascade'"),
    ({"map_fn": 3}, ArgumentTypeError, "cascading_randomization: map_fn=3"),
])
def test_randomization_errors(kwargs, exc, match):
    args = {"map_fn": _map, "params": PARAMS, "layers": ["top"], "xs": XS,
            "key": jax.random.key(0), "channel_axis": None, **kwargs}
    with pytest.raises(exc, match=match):
        cascading_randomization(**args)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: energy_in_mask(M, MASK, mode="neg"), ArgumentError, "energy_in_mask: mode='neg'"),
    (lambda: energy_in_mask(M, MASK[:2]), ArgumentError, "energy_in_mask: mask.shape=\\(2, 4\\)"),
    (lambda: energy_in_mask(M, MASK.astype(int)), ArgumentTypeError, "energy_in_mask: mask.dtype"),
    (lambda: pointing_game(M, MASK, tolerance=-1), ArgumentError,
     "pointing_game: tolerance=-1 is < 0"),
    (lambda: pointing_game(M, MASK, mode="x"), ArgumentError, "pointing_game: mode='x'"),
    (lambda: rank_correlation(np.ones(3), np.ones(4)), ArgumentError,
     "rank_correlation: b.shape=\\(4,\\) differs"),
])
def test_metric_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------------- ROAR / KAR
# one 2x3 image with 2 channels; channel means over the training set: (3.0, -1.0)
XR = np.stack([np.arange(6.0).reshape(2, 3) + 0.5, -np.ones((2, 3))], axis=-1)[None]
XR[0, ..., 0] = [[0.0, 5.0, 1.0], [4.0, 2.0, 6.0]]  # mean 3
# map: channel 0 minus channel 1 cancel at (0, 0); |sum_c| by pixel =
#   [[0, 3, 1], [5, 3, 2]] -> ranking (ties by flat index): (1,0)=5, (0,1)=3, (1,1)=3, (1,2)=2, ...
AR = np.zeros((1, 2, 3, 2))
AR[0, 0, 0] = [4.0, -4.0]
AR[0, ..., 0] += np.array([[0.0, 3.0, -1.0], [5.0, -3.0, 2.0]])


def _run(mode, fractions):
    seen = []

    def train_fn(x, y):
        seen.append(("train", x.copy()))
        return len(seen)

    def eval_fn(params, x, y):
        seen.append(("test", x.copy()))
        return 0.25 * params

    curve = remove_and_retrain(train_fn, eval_fn, (XR, np.zeros(1), AR), (XR, np.zeros(1), AR),
                               fractions=fractions, mode=mode)
    return curve, seen


def test_roar_replaces_the_top_pixels_by_the_channel_mean():
    curve, seen = _run("remove", [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(curve.fractions, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(curve.accuracy, [0.25, 0.75, 1.25])  # eval_fn's values
    fill = np.array([3.0, -1.0])
    x0 = seen[0][1][0]
    np.testing.assert_array_equal(x0, XR[0])  # 0%: unchanged
    half = seen[2][1][0]  # 3 of 6 pixels: (1, 0), (0, 1), (1, 1) -- the tie at 3 by flat index
    expect = XR[0].copy()
    for r, c in [(1, 0), (0, 1), (1, 1)]:
        expect[r, c] = fill
    np.testing.assert_array_equal(half, expect)
    np.testing.assert_array_equal(seen[3][1][0], expect)  # the test set gets the same ablation
    np.testing.assert_array_equal(seen[4][1][0], np.broadcast_to(fill, (2, 3, 2)))  # 100%


def test_kar_keeps_only_the_top_pixels():
    curve, seen = _run("keep", [0.5])
    kept = seen[0][1][0]
    expect = np.broadcast_to(np.array([3.0, -1.0]), (2, 3, 2)).copy()
    for r, c in [(1, 0), (0, 1), (1, 1)]:
        expect[r, c] = XR[0, r, c]
    np.testing.assert_array_equal(kept, expect)
    # 1/3 of 6 pixels = 2 (floor): (1, 0) and (0, 1); the cancelled pixel (0, 0) is never kept
    _, seen = _run("keep", [1 / 3])
    assert (seen[0][1][0] != np.array([3.0, -1.0])).any(axis=-1).sum() == 2


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"mode": "drop"}, ArgumentError, "remove_and_retrain: mode='drop'"),
    ({"fractions": [0.5, 1.5]}, ArgumentError, "remove_and_retrain: fractions=.*contains 1.5"),
    ({"train_fn": None}, ArgumentTypeError, "remove_and_retrain: train_fn=None"),
    ({"test_data": (XR, np.zeros(1), AR[..., :1])}, ArgumentError,
     "remove_and_retrain: test_data maps.shape=\\(1, 2, 3, 1\\) differs"),
])
def test_roar_errors(kwargs, exc, match):
    args = {"train_fn": lambda x, y: 0, "eval_fn": lambda p, x, y: 1.0,
            "train_data": (XR, np.zeros(1), AR), "test_data": (XR, np.zeros(1), AR), **kwargs}
    with pytest.raises(exc, match=match):
        remove_and_retrain(**args)
