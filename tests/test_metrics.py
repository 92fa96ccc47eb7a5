"""Tests of jaxattr.metrics against hand computations and independent numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxattr.errors import ArgumentError
from jaxattr.metrics import (
    cascading_randomization,
    deletion_curve,
    gini,
    mass_in_region,
    rank_correlation,
    total_variation,
)

# ------------------------------------------------------------------------------ total variation

# horizontal |dx|: row 0: 1 + 1, row 1: 2 + 0, row 2: 0 + 3  -> 7
# vertical   |dy|: col 0: 2 + 2, col 1: 1 + 0, col 2: 0 + 3  -> 8;  L1 = 6
M3 = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])


def test_total_variation_hand_computed():
    assert float(total_variation(M3, normalize=False)) == 15.0
    assert float(total_variation(M3)) == 15.0 / 6.0
    # scale-free when normalised, linear when not
    assert float(total_variation(10 * M3)) == pytest.approx(2.5, rel=1e-15)
    assert float(total_variation(-2 * M3, normalize=False)) == 30.0
    # transposing swaps dx and dy: the anisotropic sum is unchanged
    assert float(total_variation(M3.T, normalize=False)) == 15.0
    # constant map: no variation
    assert float(total_variation(np.full((3, 4), 2.0))) == 0.0


def test_total_variation_sums_channels_signed():
    # channels cancel: (M3 + 1) + (-1) = M3, so TV is that of M3 and not of |channels|
    hwc = np.stack([M3 + 1.0, -np.ones_like(M3)], axis=-1)
    assert float(total_variation(hwc, normalize=False)) == 15.0
    chw = np.moveaxis(hwc, -1, 0)
    assert float(total_variation(chw, channel_axis=0)) == 2.5
    assert float(total_variation(hwc[..., :1] - 1.0, channel_axis=2)) == 2.5


def test_total_variation_zero_map_nan_dtype_and_vmap():
    assert np.isnan(total_variation(np.zeros((3, 3))))
    assert float(total_variation(np.zeros((3, 3)), normalize=False)) == 0.0
    m32 = jnp.asarray(M3, jnp.float32)
    assert total_variation(m32).dtype == jnp.float32
    batch = jnp.stack([jnp.asarray(M3), jnp.zeros((3, 3)), jnp.asarray(M3.T) * 4])
    out = jax.jit(jax.vmap(total_variation))(batch)
    np.testing.assert_array_equal(out, [2.5, np.nan, 2.5])


def test_total_variation_matches_numpy_on_random_maps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7, 3))
    m = a.sum(-1)
    ref = sum(abs(m[i, j + 1] - m[i, j]) for i in range(5) for j in range(6)) + sum(
        abs(m[i + 1, j] - m[i, j]) for i in range(4) for j in range(7)
    )
    np.testing.assert_allclose(total_variation(a, normalize=False), ref, rtol=1e-13)
    np.testing.assert_allclose(total_variation(a), ref / np.abs(m).sum(), rtol=1e-13)


@pytest.mark.parametrize(
    ("shape", "kw", "match"),
    [
        ((4,), {}, r"^total_variation: attr.shape=\(4,\) has 1 axes; "
         r"expected \(H, W\) or \(H, W, C\)"),
        ((1, 2, 2, 1), {}, r"attr.shape=\(1, 2, 2, 1\) has 4 axes; "
         r"expected \(H, W\) or \(H, W, C\)"),
        ((2, 2, 1), {"channel_axis": None},
         r"^total_variation: channel_axis=None but attr.shape=\(2, 2, 1\)"),
        ((2, 2, 1), {"channel_axis": 3}, r"^total_variation: channel_axis=3 is out of range for "
         r"attr.shape"),
    ],
)
def test_total_variation_errors(shape, kw, match):
    with pytest.raises(ArgumentError, match=match):
        total_variation(np.ones(shape), **kw)


# ------------------------------------------------------------------------------ mass in region


def test_mass_in_region_constructed_maps():
    attr = np.array([[1.0, -3.0, 0.0], [0.0, 2.0, -4.0]])  # |attr| sums to 10
    mask = np.array([[True, False, False], [False, True, False]])
    assert float(mass_in_region(attr, mask)) == pytest.approx(0.3, rel=1e-15)  # (1 + 2) / 10
    assert float(mass_in_region(attr, ~mask)) == pytest.approx(0.7, rel=1e-15)
    assert float(mass_in_region(attr, np.ones((2, 3), bool))) == 1.0
    assert float(mass_in_region(attr, np.zeros((2, 3), bool))) == 0.0
    # a 10x10 "patch" in a 16x16 map holding exactly the nonzero entries -> 1; shifted off -> 0
    big = np.zeros((16, 16))
    big[3:13, 4:14] = np.random.default_rng(1).normal(size=(10, 10))
    patch = np.zeros((16, 16), bool)
    patch[3:13, 4:14] = True
    assert float(mass_in_region(big, patch)) == 1.0
    assert float(mass_in_region(big, np.roll(patch, 10, axis=0) & ~patch)) == 0.0
    assert np.isnan(mass_in_region(np.zeros((2, 3)), mask))


def test_mass_in_region_sums_channels_before_abs():
    # channel sum first: pixel (0,0) = 1 + 1 = 2, pixel (0,1) = 3 - 3 = 0, pixel (1,1) = -2
    attr = np.zeros((2, 2, 2))
    attr[0, 0] = [1.0, 1.0]
    attr[0, 1] = [3.0, -3.0]
    attr[1, 1] = [-1.0, -1.0]
    mask = np.array([[True, True], [False, False]])
    assert float(mass_in_region(attr, mask)) == 0.5  # 2 / (2 + 0 + 2)
    assert float(mass_in_region(np.moveaxis(attr, -1, 0), mask, channel_axis=0)) == 0.5
    masks = jnp.asarray(np.stack([mask, ~mask, mask]))
    attrs = jnp.stack([jnp.asarray(attr)] * 3)
    np.testing.assert_array_equal(jax.jit(jax.vmap(mass_in_region))(attrs, masks), [0.5] * 3)


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.ones((2, 2)), r"^mass_in_region: mask.dtype='float64' is not bool; "
         r"expected a boolean mask"),
        (np.ones((2, 3), bool), r"^mass_in_region: mask.shape=\(2, 3\) does not match the map; "
         r"expected the map's "
         r"\(H, W\)=\(2, 2\)"),
        (np.ones((2, 2, 1), bool), r"mask.shape=\(2, 2, 1\) does not match the map"),
    ],
)
def test_mass_in_region_errors(mask, match):
    with pytest.raises(ArgumentError, match=match):
        mass_in_region(np.ones((2, 2, 1)), mask)


# ------------------------------------------------------------------------------ Gini


def _gini_numpy(a):
    """Independent reference: mean-absolute-difference form sum_ij |c_i - c_j| / (2 n sum c)."""
    c = np.abs(np.asarray(a, np.float64)).ravel()
    return np.abs(c[:, None] - c[None, :]).sum() / (2 * c.size * c.sum())


@pytest.mark.parametrize("n", [1, 2, 4, 64])
def test_gini_known_values(n):
    assert float(gini(np.full(n, 3.0))) == pytest.approx(0.0, abs=1e-15)
    one_hot = np.zeros(n)
    one_hot[n // 2] = -7.0
    assert float(gini(one_hot)) == pytest.approx((n - 1) / n, rel=1e-15)


def test_gini_matches_numpy_reference():
    rng = np.random.default_rng(2)
    for shape in [(5,), (4, 4), (3, 4, 2), (8, 8, 1)]:
        a = rng.standard_cauchy(size=shape)
        np.testing.assert_allclose(gini(a), _gini_numpy(a), rtol=1e-12)
    # hand value: c = (0, 1, 3); pairwise |diffs| sum = 2 * (1 + 3 + 2) = 12; 12 / (2*3*4) = 1/2
    assert float(gini(np.array([3.0, 0.0, -1.0]))) == pytest.approx(0.5, rel=1e-15)
    # invariant to scale, sign and order
    a = rng.normal(size=(6, 6))
    np.testing.assert_allclose(gini(-5 * a[::-1]), gini(a), rtol=1e-13)


def test_gini_zero_nan_float32_vmap_and_error():
    assert np.isnan(gini(np.zeros((3, 3))))
    a32 = jnp.asarray([0.0, 1.0, 3.0], jnp.float32)
    assert gini(a32).dtype == jnp.float32
    batch = jnp.asarray([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    np.testing.assert_allclose(jax.jit(jax.vmap(gini))(batch), [0.0, 0.75], atol=1e-15)
    with pytest.raises(ArgumentError, match=r"^gini: attr.shape=\(0, 3\) is empty"):
        gini(np.zeros((0, 3)))


# ------------------------------------------------------------------------------ deletion curve


def _linear_reference(w, x, attr, steps, baseline):
    """Exact curve of score = w . x: removing unit i changes the score by w_i (b_i - x_i)."""
    n = x.size
    order = np.argsort(-attr.ravel(), kind="stable")
    counts = [k * n // steps for k in range(steps + 1)]
    b = np.broadcast_to(baseline, x.shape).ravel()
    delta = (w.ravel() * (b - x.ravel()))[order]
    scores = np.array([w.ravel() @ x.ravel() + delta[:c].sum() for c in counts])
    fr = np.array(counts) / n
    auc = sum((fr[k + 1] - fr[k]) * (scores[k + 1] + scores[k]) / 2 for k in range(steps))
    return fr, scores, auc


def test_deletion_curve_linear_exact_by_hand():
    # contributions w*x = (6, -1, 2, 4); order 6, 4, 2, -1; total 11
    w = jnp.array([3.0, -1.0, 2.0, 4.0])
    x = jnp.array([2.0, 1.0, 1.0, 1.0])
    c = deletion_curve(lambda v: w @ v, x, w * x, steps=4)
    np.testing.assert_array_equal(c.fractions, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(c.scores, [11.0, 5.0, 1.0, -1.0, 0.0])
    # trapezoid: 0.25 * ((11 + 5) + (5 + 1) + (1 - 1) + (-1 + 0)) / 2 = 0.25 * 21 / 2
    assert float(c.auc) == 2.625
    # steps=2: top 2 then all
    c2 = deletion_curve(lambda v: w @ v, x, w * x, steps=2)
    np.testing.assert_array_equal(c2.scores, [11.0, 1.0, 0.0])


@pytest.mark.parametrize(("n", "steps"), [(12, 4), (12, 12), (7, 3), (5, 10)])
def test_deletion_curve_linear_matches_reference(n, steps):
    rng = np.random.default_rng(n * 100 + steps)
    w, x = rng.normal(size=n), rng.normal(size=n)
    attr = w * x
    c = deletion_curve(lambda v: jnp.dot(w, v), x, attr, steps=steps)
    fr, scores, auc = _linear_reference(w, x, attr, steps, 0.0)
    assert c.scores.shape == (steps + 1,)
    np.testing.assert_allclose(c.fractions, fr, rtol=1e-15)
    np.testing.assert_allclose(c.scores, scores, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.auc, auc, rtol=1e-12, atol=1e-12)


def test_deletion_curve_monotone_for_nonnegative_contributions():
    rng = np.random.default_rng(3)
    w = rng.uniform(0.1, 2.0, size=20)
    x = rng.uniform(0.1, 1.0, size=20)
    c = deletion_curve(lambda v: jnp.dot(w, v), x, w * x, steps=5)
    assert np.all(np.diff(np.asarray(c.scores)) < 0)
    assert float(c.scores[-1]) == 0.0
    # most-attributed-first deletes faster than the reversed (least-first) ranking
    worst = deletion_curve(lambda v: jnp.dot(w, v), x, -(w * x), steps=5)
    assert float(c.auc) < float(worst.auc)


def test_deletion_curve_baseline_and_pixels():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 4, 2))
    x = rng.normal(size=(3, 4, 2))
    attr = w * x
    base = rng.normal(size=(3, 4, 2))
    score = lambda v: jnp.sum(w * v)
    for b in (0.5, base):
        c = deletion_curve(score, x, attr, steps=6, baseline=b)
        fr, scores, auc = _linear_reference(w, x, attr, 6, b)
        np.testing.assert_allclose(c.scores, scores, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c.auc, auc, rtol=1e-12, atol=1e-12)
    # pixels: rank the 12 pixels by channel-summed attribution, remove both channels at once
    c = deletion_curve(score, x, attr, steps=4, channel_axis=-1)
    pix = attr.sum(-1).ravel()
    order = np.argsort(-pix, kind="stable")
    ref = [pix.sum() - pix[order[:k]].sum() for k in (0, 3, 6, 9, 12)]
    np.testing.assert_allclose(c.scores, ref, rtol=1e-12, atol=1e-12)


def test_deletion_curve_jit_vmap_and_float32():
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.normal(size=8))
    xs = jnp.asarray(rng.normal(size=(3, 8)))
    attrs = xs * w[None, :]

    @jax.jit
    def batched(xs, attrs):
        return jax.vmap(lambda x, a: deletion_curve(lambda v: w @ v, x, a, steps=4))(xs, attrs)

    out = batched(xs, attrs)
    assert out.scores.shape == (3, 5) and out.auc.shape == (3,)
    for i in range(3):
        _, scores, auc = _linear_reference(np.asarray(w), np.asarray(xs[i]), np.asarray(attrs[i]),
                                           4, 0.0)
        np.testing.assert_allclose(out.scores[i], scores, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out.auc[i], auc, rtol=1e-12, atol=1e-12)
    x32 = xs[0].astype(jnp.float32)
    c32 = deletion_curve(lambda v: w.astype(jnp.float32) @ v, x32, x32, steps=2)
    assert c32.scores.dtype == jnp.float32 and c32.auc.dtype == jnp.float32


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, r"^deletion_curve: steps=0 is < 1; expected an int >= 1"),
        ({"steps": 2.5}, r"^deletion_curve: steps=2.5 has type float; expected an int"),
        ({"steps": True}, r"^deletion_curve: steps=True is a bool"),
        ({"attr": np.ones(3)}, r"^deletion_curve: attr.shape=\(3,\) differs from x's; "
         r"expected x.shape=\(4,\)"),
        ({"baseline": np.ones(3)}, r"baseline.shape=\(3,\) is not broadcastable; "
         r"expected \(\) or x.shape=\(4,\)"),
        ({"channel_axis": 1}, r"^deletion_curve: channel_axis=1 is out of range for "
         r"x.shape=\(4,\)"),
        ({"score_fn": lambda v: v}, r"^deletion_curve: score_fn=.* returns shape \(4,\); "
         r"expected a function returning a "),
        ({"score_fn": 3.0}, r"^deletion_curve: score_fn=3.0 has type float; expected a function"),
        ({"x": np.ones(0), "attr": np.ones(0)}, r"^deletion_curve: x.shape=\(0,\) is empty"),
    ],
)
def test_deletion_curve_errors(kw, match):
    args = {"score_fn": jnp.sum, "x": np.ones(4), "attr": np.ones(4)}
    args.update(kw)
    score_fn, x, attr = args.pop("score_fn"), args.pop("x"), args.pop("attr")
    with pytest.raises(ArgumentError, match=match):
        deletion_curve(score_fn, x, attr, **args)


# ------------------------------------------------------------------------ rank correlation, nan


_batched_rank_correlation = jax.jit(jax.vmap(rank_correlation))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", [(28, 28), (1000,)])
def test_rank_correlation_of_a_constant_map_is_exactly_nan(dtype, shape):
    # a float mean of the average ranks is off by rounding at these sizes (784 in float64, 1000
    # in float32): the correlation came out 1e-16 / 3e-8 instead of nan
    ramp = jnp.arange(np.prod(shape), dtype=dtype).reshape(shape)
    zero, const = jnp.zeros(shape, dtype), jnp.full(shape, 0.3, dtype)
    pairs = [(zero, ramp), (ramp, zero), (const, ramp), (ramp, const), (zero, const)]
    r = _batched_rank_correlation(*map(jnp.stack, zip(*pairs, strict=True)))
    assert r.dtype == dtype and np.isnan(np.asarray(r)).all(), r


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_correlation_equals_scipy_spearmanr(dtype):
    rng = np.random.default_rng(4)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for n in (49, 1000):
        x = (rng.normal(size=n) * (rng.random(n) < 0.3)).astype(dtype)  # many tied zeros
        y = (x + rng.normal(size=n) * (rng.random(n) < 0.5)).astype(dtype)
        pairs = [(x, y), (x, -x), (x, x), (y, x**2)]
        got = _batched_rank_correlation(*map(np.stack, zip(*pairs, strict=True)))
        ref = [scipy.stats.spearmanr(a, b).statistic for a, b in pairs]
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_randomised_model_with_dead_relus_reads_undefined_not_decorrelated():
    # map = relu(a) * x: the trained a = 1 gives map = x; re-drawn a = -1 kills the ReLU
    xs = np.random.default_rng(5).normal(size=(3, 784))
    params = {"top": {"a": jnp.ones(())}, "bottom": {"b": jnp.ones(())}}
    map_fn = lambda p, xs: jax.nn.relu(p["top"]["a"]) * p["bottom"]["b"] * xs
    r = cascading_randomization(map_fn, params, ["top", "bottom"], xs, key=jax.random.key(0),
                                channel_axis=None, reinit=lambda k, v: -v)
    assert np.isnan(r.correlation).all()  # all-zero maps: undefined, not a correlation of ~0
    only_b = cascading_randomization(map_fn, params, ["bottom"], xs, key=jax.random.key(0),
                                     channel_axis=None, reinit=lambda k, v: -v, absolute=False)
    np.testing.assert_allclose(only_b.correlation, -1.0, rtol=1e-12)  # a live map: defined


def test_claims_verdict_treats_undefined_correlations_as_undefined_not_a_pass():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "claims.py"
    spec = importlib.util.spec_from_file_location("claims_under_test", path)
    claims = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(claims)
    seeds, nan = 3, float("nan")
    metrics = {m: {k: [0.5] * seeds for k in ("object mass", "distractor mass", "TV")}
               for m in [claims.RG, *claims.BASELINES]}
    curves = {  # (seeds, layers) per-seed mean correlations
        claims.RG: [[0.9, 0.1, 0.0]] * seeds,  # decorrelates: a pass
        "rectgrad q=98 (no x input)": [[nan, nan, nan]] * seeds,  # every map dead: undefined
        "guided backprop": [[0.9, 0.8, 0.7], [0.9, nan, nan], [0.9, 0.8, 0.7]],  # 1 seed undefined
    }
    out = claims.judge({"shapes+distractor": {"metrics": metrics, "randomisation": curves}})
    verdicts = {c["method"]: c for c in out if "method" in c}
    assert verdicts[claims.RG]["verdict"] == "pass" and verdicts[claims.RG]["reproduces"] == "yes"
    dead = verdicts["rectgrad q=98 (no x input)"]
    assert dead["verdict"] == "undefined" and dead["reproduces"] == "undefined"
    assert dead["after_logits_dense1"]["undefined"] == seeds
    gb = verdicts["guided backprop"]
    assert gb["verdict"] == "fail" and gb["reproduces"] == "yes"
    assert gb["after_logits_dense1"]["n"] == 2 and gb["after_logits_dense1"]["undefined"] == 1
