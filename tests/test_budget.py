"""chunk="auto": the memory budget, the per-evaluation bound, the vmap batch, bad budgets."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr import _budget
from jaxattr.errors import ArgumentError, AttributionWarning

W = jax.random.normal(jax.random.key(0), (16, 8), jnp.float64)


def score(x):
    return jnp.sum(jnp.tanh(W @ x) ** 2)


X = jnp.linspace(-1.0, 1.0, 8)


def test_jaxpr_bytes_counts_every_intermediate():
    x = jnp.ones(10, jnp.float32)
    # sin: 10 x 4 bytes, mul: 10 x 4, reduce_sum: 4 -> 84 (by hand)
    assert _budget.jaxpr_bytes(jax.make_jaxpr(lambda x: jnp.sum(jnp.sin(x) * 2.0))(x)) == 84
    # nested jit bodies count too: the jit's output (40) and its body's sin (40)
    assert _budget.jaxpr_bytes(jax.make_jaxpr(jax.jit(jnp.sin))(x)) == 80


def test_vmap_batch_sees_nested_vmaps():
    seen = []

    def probe(x):
        seen.append(_budget.vmap_batch(x))
        return x

    probe(jnp.ones(3))
    jax.vmap(probe)(jnp.ones((4, 3)))
    jax.vmap(jax.vmap(probe))(jnp.ones((5, 4, 3)))
    jax.jit(jax.vmap(probe))(jnp.ones((6, 3)))
    assert seen == [1, 4, 20, 6]


def _loops(fn, *args) -> int:
    text = str(jax.make_jaxpr(fn)(*args))
    return text.count("while[") + text.count("scan[")


def _per_eval() -> int:
    return _budget.jaxpr_bytes(jax.make_jaxpr(ja.saliency(score))(X))


def test_auto_chunk_is_one_pass_when_it_fits_and_loops_when_it_does_not(key):
    one_pass = ja.smoothgrad(ja.saliency(score), n=12, chunk=None)
    passes_of_5 = ja.smoothgrad(ja.saliency(score), n=12, chunk=5)  # 5, 5, 2: loop + remainder
    assert _loops(one_pass, X, key) < _loops(passes_of_5, X, key)
    g_big = ja.smoothgrad(ja.saliency(score), n=12, max_memory=10**9)
    assert _loops(g_big, X, key) == _loops(one_pass, X, key)
    g_small = ja.smoothgrad(ja.saliency(score), n=12, max_memory=5 * _per_eval() + 1)
    assert _loops(g_small, X, key) == _loops(passes_of_5, X, key)
    ref = passes_of_5(X, key)
    np.testing.assert_allclose(g_small(X, key), ref, rtol=1e-12)
    np.testing.assert_allclose(g_big(X, key), ref, rtol=1e-12)


def test_auto_chunk_accounts_for_the_vmap_batch(key):
    # 3 evaluations fit for one example, but not one for each of 4 vmapped examples
    budget = 3 * _per_eval() + 1
    g = ja.vargrad(ja.saliency(score), n=6, max_memory=budget)
    xs = jnp.stack([X, -X, 2 * X, X + 1])
    keys = jax.random.split(key, 4)
    with pytest.raises(ArgumentError, match="max_memory=.* is too small for one evaluation"):
        jax.vmap(g)(xs, keys)
    g4 = ja.vargrad(ja.saliency(score), n=6, max_memory=4 * 3 * _per_eval())
    ref = jax.vmap(ja.vargrad(ja.saliency(score), n=6, chunk=3))(xs, keys)
    np.testing.assert_allclose(jax.vmap(g4)(xs, keys), ref, rtol=1e-12)


def test_auto_chunk_bounds_compiled_memory(key):
    x = jnp.linspace(-1.0, 1.0, 8, dtype=jnp.float32)
    w = W.astype(jnp.float32)
    f = lambda x: jnp.sum(jnp.tanh(w @ jnp.tanh(w.T @ jnp.tanh(w @ x))) ** 2)
    per_eval = _budget.jaxpr_bytes(jax.make_jaxpr(ja.saliency(f))(x))
    budget = 4 * per_eval
    g = ja.integrated_gradients(f, steps=64, max_memory=budget)
    stats = jax.jit(g).lower(x).compile().memory_analysis()
    assert stats.temp_size_in_bytes <= budget
    unbounded = jax.jit(ja.integrated_gradients(f, steps=64, chunk=None)).lower(x).compile()
    assert unbounded.memory_analysis().temp_size_in_bytes > budget  # the bound did something


def test_max_memory_too_small_names_what_one_evaluation_needs(key):
    need = _per_eval()
    with pytest.raises(ArgumentError, match=f"smoothgrad: max_memory=10 is too small for one "
                       f"evaluation; expected max_memory >= {need} bytes"):
        ja.smoothgrad(ja.saliency(score), n=4, max_memory=10)(X, key)
    with pytest.raises(ArgumentError, match="integrated_gradients: max_memory=0 is < 1"):
        ja.integrated_gradients(score, max_memory=0)


@pytest.mark.parametrize(
    "stats, platform, expected",
    [
        ({"bytes_limit": 1000, "bytes_in_use": 200}, "gpu", 400),  # half of what is free
        (None, "tpu", 1 << 30),  # no statistics: 1 GiB, with a warning
    ],
)
def test_device_budget(monkeypatch, stats, platform, expected):
    device = types.SimpleNamespace(platform=platform, memory_stats=lambda: stats)
    monkeypatch.setattr(_budget.jax, "devices", lambda: [device])
    if stats is None:
        with pytest.warns(AttributionWarning, match="no memory statistics for the tpu backend"):
            assert _budget._device_budget("smoothgrad") == expected
    else:
        assert _budget._device_budget("smoothgrad") == expected


def test_cpu_budget_is_a_quarter_of_available_memory():
    import os

    if jax.devices()[0].platform != "cpu":
        pytest.skip("CPU backend only")
    def avail():
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    # other processes (the other test worker) allocate meanwhile: bracket the reading
    before = avail()
    budget = _budget._device_budget("smoothgrad")
    after = avail()
    lo, hi = min(before, after), max(before, after)
    assert 0.95 * lo / 4 <= budget <= 1.05 * hi / 4, (before, budget, after)


def dropout_score(x, rng):  # a Flax-dropout-like score: derives typed keys from its rng
    mask = jax.random.bernoulli(jax.random.fold_in(rng, 0), 0.5, (16,))
    return jnp.sum(jax.nn.relu(W @ x) * mask)


def test_typed_prng_keys_count_their_key_data(key):
    # fold_in's output is a key<fry>: 2 x uint32 = 8 bytes; rbg keys hold 4 x uint32 = 16
    for impl, size in (("threefry2x32", 8), ("rbg", 16)):
        k = jax.random.key(1, impl=impl)
        assert _budget.itemsize(k.dtype) == size
        jaxpr = jax.make_jaxpr(lambda k: jax.random.split(jax.random.fold_in(k, 0), 3))(k)
        assert _budget.jaxpr_bytes(jaxpr) == size + 3 * size  # fold_in: 1 key, split: 3
    assert _budget.itemsize(jnp.bfloat16) == 2 and _budget.itemsize(np.float64) == 8


def test_chunk_auto_with_a_score_deriving_typed_keys(key):
    # the memory estimate used to raise "Cannot interpret 'key<fry>' as a data type"
    x, rng = jnp.linspace(-1.0, 1.0, 8), jax.random.key(1)
    ig = lambda **kw: ja.integrated_gradients(dropout_score, steps=4, **kw)
    ref = ig(chunk=None)(x, rng)
    assert np.count_nonzero(ref) > 0
    np.testing.assert_array_equal(ig()(x, rng), ref)  # chunk="auto": one pass here
    sg = lambda **kw: ja.smoothgrad(ja.saliency(dropout_score), n=4, **kw)
    np.testing.assert_array_equal(sg()(x, key, rng), sg(chunk=None)(x, key, rng))
