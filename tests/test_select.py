"""The exact order statistic behind RectGrad's threshold, against numpy's sort."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxattr._select import kth_largest, nearest_rank

# XLA flushes float32 subnormals to zero (as RectGrad's own comparisons then do): exclude them.
finite32 = (
    st.floats(-1e30, 1e30, allow_nan=False, allow_subnormal=False)
    .map(np.float32)
    .filter(lambda t: t == 0 or abs(t) >= np.finfo(np.float32).tiny)
)


@settings(max_examples=40, deadline=None)
@given(v=hnp.arrays(np.float32, st.integers(1, 64), elements=finite32), data=st.data())
def test_kth_largest_matches_sort_float32(v, data):
    k = data.draw(st.integers(0, v.size - 1))
    expected = np.sort(v)[::-1][k]
    for method, bits in [("radix", 1), ("radix", 4), ("top_k", 1), ("sort", 1)]:
        got = kth_largest(jnp.asarray(v), k, method=method, digit_bits=bits)
        assert got.dtype == jnp.float32
        assert float(got) == float(expected), (method, bits)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_kth_largest_other_dtypes_with_ties_and_signed_zeros(dtype):
    rng = np.random.default_rng(1)
    v = np.round(rng.normal(size=300), 1).astype(dtype)
    v[::7] = -0.0
    v[1::7] = 0.0
    f = jax.jit(lambda u, k: kth_largest(u, k), static_argnums=1)
    for k in [0, 1, 5, 150, 299]:
        assert float(f(jnp.asarray(v), k)) == float(np.sort(v)[::-1][k])


def test_nearest_rank_is_tf_round_half_even():
    assert [nearest_rank(n, 50.0) for n in (4, 5, 6, 8)] == [2, 2, 2, 4]  # 1.5->2, 2.5->2, 3.5->4
    assert nearest_rank(1000, 98.0) == 20
    assert nearest_rank(100, 0.0) == 99 and nearest_rank(100, 100.0) == 0


def test_kth_largest_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"k=3 must be in \[0, 3\)"):
        kth_largest(jnp.ones(3), 3)
