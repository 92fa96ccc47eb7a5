"""The exact order statistic behind RectGrad's threshold, bit for bit against numpy.

Reference: ``np.sort(v)[::-1][k]`` with the TF-contrib rank ``k = round_half_even((n-1)(1-q/100))``
computed here independently (Python floats are float64; ``round`` is half-to-even). Policies: NaN
is the largest value (numpy's sort order), a NaN result is the canonical quiet NaN, a zero result
is +0.0, subnormals are ordered exactly.
"""

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxattr import _select
from jaxattr._select import METHODS, kth_largest, nearest_rank

EXACT = [m for m in METHODS if m != "auto"]  # "auto" resolves to one of these
SPECIAL = [m for m in EXACT if m != "histogram"]  # histogram: the property and width tests
CHEAP = ["auto", "bracket", "radix", "host", "sort"]  # for the large and batched cases


def tf_rank(n, q):
    """TF 1.x contrib 'nearest', independently: float64 index, round half to even."""
    return round((n - 1) * (1.0 - q / 100.0))


def reference(v, k):
    """``np.sort(v)[::-1][k]`` (numpy sorts NaN last), canonical NaN, zero as +0.0."""
    v = np.asarray(v)
    t = np.sort(v.astype(np.float64) if v.dtype != np.float64 else v)[::-1][k]
    if np.isnan(t):
        return np.array(np.nan, v.dtype)
    return np.array(t + 0.0, v.dtype)


def bits(x):
    x = np.asarray(x)
    return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def assert_same_bits(got, want, msg=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype, msg)
    assert np.array_equal(bits(got), bits(want)), (got, want, msg)


@functools.cache
def compiled(method, ks, batched=False, **kw):
    """One compiled program for several static ranks (compiles dominate the test time)."""

    def f(v):
        return jnp.stack([kth_largest(v, k, method=method, **kw) for k in ks], axis=-1)

    return jax.jit(jax.vmap(f) if batched else f)


def select(v, k, method, **kw):
    return compiled(method, (k,), **kw)(jnp.asarray(v))[..., 0]


def select_all(v, ks, method, **kw):
    """``[select(v, k, method) for k in ks]`` in one program."""
    return list(np.moveaxis(np.asarray(compiled(method, tuple(ks), **kw)(jnp.asarray(v))), -1, 0))


# ---------------------------------------------------------------------------------------------
# The rank.


def test_nearest_rank_is_tf_round_half_even_in_float64():
    assert [nearest_rank(n, 50.0) for n in (4, 5, 6, 8)] == [2, 2, 2, 4]  # 1.5->2, 2.5->2, 3.5->4
    assert nearest_rank(1000, 98.0) == 20
    assert nearest_rank(100, 0.0) == 99 and nearest_rank(100, 100.0) == 0
    # float64: 1 - 98/100 = 0.020000000000000018, so 25 * it = 0.5000000000000004 -> 1, not 0
    assert nearest_rank(26, 98.0) == 1 and nearest_rank(25, 98.0) == 0
    for n in (1, 2, 3, 7, 11, 26, 101, 256, 16384, 32768, 802816):
        for q in (0.0, 10.0, 50.0, 90.0, 95.0, 97.5, 98.0, 99.0, 99.9, 100.0):
            assert nearest_rank(n, q) == tf_rank(n, q), (n, q)


# ---------------------------------------------------------------------------------------------
# Exactness, every method, special values.


@pytest.mark.parametrize("method", SPECIAL)
def test_ranks_ties_and_signs(method):
    v = np.array([3.0, -1.0, 2.0, 2.0, 2.0, -5.0, 0.5, 2.0, -1.0], np.float32)
    want = [3.0, 2.0, 2.0, 2.0, 2.0, 0.5, -1.0, -1.0, -5.0]  # off-by-one or sign errors differ
    for k, got in enumerate(select_all(v, range(9), method)):
        assert_same_bits(got, np.float32(want[k]), (method, k))


@pytest.mark.parametrize("method", SPECIAL)
def test_signed_zeros_all_zero_infinities_and_nan(method):
    z = np.array([-0.0, 0.0, -0.0, -0.0, 0.0], np.float32)
    # a zero threshold is always +0.0, whichever zero sits at that rank
    for k, got in enumerate(select_all(z, range(5), method) + select_all(-z, range(5), method)):
        assert_same_bits(got, np.float32(0.0), (method, k))
    v = np.array([1.0, -np.inf, np.inf, -0.0, np.nan, -2.0, -np.nan], np.float32)
    want = [np.nan, np.nan, np.inf, 1.0, 0.0, -2.0, -np.inf]  # NaN (any sign) sorts largest
    for k, got in enumerate(select_all(v, range(7), method)):
        assert_same_bits(got, np.float32(want[k]), (method, k))
        assert_same_bits(got, reference(v, k))


@pytest.mark.parametrize("method", SPECIAL)
def test_tiny_layers(method):
    for v in ([0.25], [-1.0, 4.0], [4.0, 4.0], [7.0, -0.0, 7.0], [1e-3, -1e-3, 0.0]):
        v = np.array(v, np.float32)
        for k, got in enumerate(select_all(v, range(v.size), method)):
            assert_same_bits(got, reference(v, k), (method, v, k))


def test_subnormals_are_ordered_exactly():
    tiny = np.finfo(np.float32).smallest_subnormal
    v = np.array([3 * tiny, -tiny, 0.0, tiny, 2 * tiny, -0.0, -5 * tiny], np.float32)
    for method in ("bracket", "radix", "histogram", "host"):
        for k, got in enumerate(select_all(v, range(v.size), method)):
            assert_same_bits(got, reference(v, k), (method, k))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, ml_dtypes.bfloat16])
def test_other_dtypes(dtype):
    rng = np.random.default_rng(1)
    v = np.round(rng.normal(size=300), 1).astype(dtype)
    v[::7] = -0.0
    v[1::7] = 0.0
    v[2] = np.inf
    ks = [0, 5, 150, 299]
    for method in ("bracket", "radix", "host"):
        for k, got in zip(ks, select_all(v, ks, method), strict=True):
            assert got.dtype == dtype
            assert_same_bits(got, reference(v, k), (method, k))


def test_histogram_digit_widths_and_radix_digit_widths():
    rng = np.random.default_rng(2)
    v = np.where(rng.random(2000) < 0.6, 0.0, rng.normal(size=2000)).astype(np.float32)
    ks = (0, 40, 1999)
    want = [reference(v, k) for k in ks]
    for method, bits_ in [("histogram", 11), ("radix", 4)]:
        # histogram: 32 = 11+11+10 bits, a narrower last digit (8, the default, runs elsewhere)
        for k, got, w in zip(ks, select_all(v, ks, method, digit_bits=bits_), want, strict=True):
            assert_same_bits(got, w, (method, bits_, k))


def test_large_layer_mostly_zeros():
    rng = np.random.default_rng(3)
    n = 100_003
    v = np.maximum(rng.normal(size=n), 0) * rng.normal(size=n) * (rng.random(n) < 0.5)
    v = v.astype(np.float32)
    ks = (nearest_rank(n, 98.0), 0, n - 1)
    want = [reference(v, k) for k in ks]
    for method in ("bracket", "radix", "host"):
        for k, got, w in zip(ks, select_all(v, ks, method), want, strict=True):
            assert_same_bits(got, w, (method, k))


# ---------------------------------------------------------------------------------------------
# The sample bracket: exact when it hits, exact through the fallback when it misses.


def _bracket_missing_layer(n, k, cap_overflow):
    """A layer on which the deterministic sample misses: by rank, or by overflowing the gather."""
    idx, r_hi, r_lo, cap = _select._bracket_plan(n, k)
    v = np.zeros(n, np.float32)
    other = np.setdiff1d(np.arange(n), idx)
    if cap_overflow:  # sample values s..1 at desc ranks 0..s-1; all others strictly inside
        s = idx.size
        v[idx] = s - np.arange(s)
        lo, hi = s - min(r_lo, s - 1), s - max(r_hi, 0)
        v[other] = np.linspace(lo, hi, other.size + 2)[1:-1]
    else:  # the sample sees only zeros, the target is among unsampled positive values
        v[other] = 1.0 + np.arange(other.size)
    return v, cap


def test_bracket_misses_fall_back_exactly():
    n, k = 5000, 100
    by_rank, _ = _bracket_missing_layer(n, k, cap_overflow=False)
    by_cap, _ = _bracket_missing_layer(n, k, cap_overflow=True)
    rng = np.random.default_rng(4)
    batch = np.stack([by_rank, rng.normal(size=n), by_cap, np.zeros(n)]).astype(np.float32)
    keys = _select._sortable_keys(jnp.asarray(batch))[0]
    _, missed = jax.jit(jax.vmap(functools.partial(_select._bracket_keys, k=k)))(keys)
    assert np.asarray(missed).tolist() == [True, False, True, False]
    got = select(batch, k, "bracket", batched=True)  # two rows miss, the others hit
    for row, g in zip(batch, np.asarray(got), strict=True):
        assert_same_bits(g, reference(row, k))
    assert_same_bits(select(by_cap, k, "bracket"), reference(by_cap, k))  # unbatched lax.cond


def test_bracket_mostly_zeros_hits_without_fallback():
    rng = np.random.default_rng(5)
    n = 32768
    for frac_pos in (0.005, 0.02, 0.3):  # tau = 0, near the edge, inside the positives
        v = np.where(rng.random(n) < frac_pos, rng.random(n) + 0.1, 0.0).astype(np.float32)
        k = nearest_rank(n, 98.0)
        keys = _select._sortable_keys(jnp.asarray(v))[0]
        ans, missed = jax.jit(functools.partial(_select._bracket_keys, k=k))(keys)
        if frac_pos != 0.02:  # right at the edge the bound may land on either side
            assert not bool(missed), frac_pos
        if not bool(missed):
            assert_same_bits(_select._keys_to_float(ans, jnp.float32), reference(v, k))


# ---------------------------------------------------------------------------------------------
# vmap (and nested vmap), and the properties.


@pytest.mark.parametrize("method", CHEAP + ["histogram"])
def test_under_vmap_and_nested_vmap(method):
    rng = np.random.default_rng(6)
    n, k = 3000, nearest_rank(3000, 98.0)
    rows = [
        np.where(rng.random(n) < 0.3, rng.normal(size=n), 0.0),
        np.zeros(n),
        np.full(n, -0.0),
        np.where(rng.random(n) < 0.01, np.nan, rng.normal(size=n)),
        np.round(rng.normal(size=n), 1),
        np.where(rng.random(n) < 0.5, np.inf, -np.inf),
    ]
    x = np.stack(rows).astype(np.float32)
    got = np.asarray(select(x, k, method, batched=True))
    for row, g in zip(x, got, strict=True):
        assert_same_bits(g, reference(row, k), method)
    nested = jax.jit(jax.vmap(jax.vmap(lambda t: kth_largest(t, k, method=method))))
    got2 = np.asarray(nested(jnp.asarray(x.reshape(2, 3, n))))
    assert_same_bits(got2.reshape(-1), got)


POOL = [0.0, -0.0, 1.0, -1.0, 2.5, 1e-30, -1e30, np.inf, -np.inf, np.nan, 1.4e-45, 3.0]
pooled = st.sampled_from(POOL).map(np.float32)
anyf32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@pytest.mark.parametrize("n", [1, 5, 64])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_property_every_method_matches_numpy(n, data):
    elements = st.one_of(pooled, anyf32.map(np.float32))  # ties, specials and anything
    v = data.draw(hnp.arrays(np.float32, n, elements=elements))
    ks = sorted({0, n // 2, n - 1})  # fixed ranks per n: one compile per method and n
    want = [reference(v, k) for k in ks]
    for method in EXACT:
        for k, got, w in zip(ks, select_all(v, ks, method), want, strict=True):
            assert_same_bits(got, w, (method, k, v))


def test_rejects_bad_rank_method_and_digits():
    with pytest.raises(ValueError, match=r"k=3 must be in \[0, 3\)"):
        kth_largest(jnp.ones(3), 3)
    with pytest.raises(ValueError, match="method='median' must be one of"):
        kth_largest(jnp.ones(3), 0, method="median")
    with pytest.raises(ValueError, match="digit_bits=3 must divide"):
        kth_largest(jnp.ones(3), 0, method="radix", digit_bits=3)
    with pytest.raises(ValueError, match=r"digit_bits=17 must be in \[1, 16\]"):
        kth_largest(jnp.ones(3), 0, method="histogram", digit_bits=17)


def test_auto_is_backend_specific():
    assert _select._auto_method(32768, 655, "cpu") == "host"
    assert _select._auto_method(256, 5, "cpu") == "radix"
    assert _select._auto_method(802816, 16056, "gpu") == "bracket"
    assert _select._auto_method(256, 5, "gpu") == "sort"
