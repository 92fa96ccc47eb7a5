"""Tests for jaxattr.noise: smoothgrad, smoothgrad_sq, vargrad.

Deterministic tests inject a fixed noise array through the private hook ``_aggregate`` and compare
against numpy; statistical tests use closed forms (REFERENCE.md section 2) with tolerances from the
estimator's standard error at z = 5, and each statistical check is shown to reject wrong variants
(a factor 2, a sign, the missing noise term).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxattr as ja
from jaxattr.errors import ArgumentError
from jaxattr.noise import _aggregate, _gaussian_noise

Z = 5.0
P_TAIL = stats.norm.sf(Z)  # one-sided tail at z = 5, for chi-square intervals

W = np.array([[0.3, -1.2, 0.7], [0.5, 0.1, -0.4], [-0.9, 0.8, 0.2]])


def a_np(x):
    """A nonlinear attribution-like map with mixing; numpy twin of a_jax."""
    return np.tanh(x @ W.T) * x + x**3


def a_jax(x):
    return jnp.tanh(W @ x) * x + x**3


def fixed_noise(n, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 0.7


# -------------------------------------------------------------------------------- deterministic


@pytest.mark.parametrize("chunk", [10, 3, 7, 1])
def test_aggregate_equals_numpy_statistics(chunk):
    n, x = 10, np.array([0.4, -1.3, 2.0])
    eps = fixed_noise(n)
    values = a_np(x[None] + eps)  # (n, 3)

    def run(stat, ddof=0):
        fn = jax.jit(
            lambda x: _aggregate(
                a_jax, x, lambda idx: jnp.asarray(eps)[idx], n=n, chunk=chunk, stat=stat, ddof=ddof
            )
        )
        return np.asarray(fn(jnp.asarray(x)))

    np.testing.assert_allclose(run("mean"), values.mean(0), rtol=1e-13, atol=0)
    np.testing.assert_allclose(run("sq"), (values**2).mean(0), rtol=1e-13, atol=0)
    for ddof in (0, 1, 2):
        np.testing.assert_allclose(run("var", ddof), values.var(0, ddof=ddof), rtol=1e-12, atol=0)


def test_aggregate_rejects_unknown_stat():
    with pytest.raises(ValueError, match="stat='median' must be"):
        _aggregate(a_jax, jnp.ones(3), lambda i: i, n=2, chunk=2, stat="median")


def test_noise_sample_i_comes_from_fold_in_key_i(key):
    x = jnp.zeros((2, 3))
    eps = jax.jit(_gaussian_noise(key, x, 0.5, antithetic=False))(jnp.arange(5))
    for i in range(5):
        z = jax.random.normal(jax.random.fold_in(key, i), (2, 3), x.dtype)
        assert jnp.array_equal(eps[i], 0.5 * z)
    anti = jax.jit(_gaussian_noise(key, x, 0.5, antithetic=True))(jnp.arange(6))
    for j in range(3):
        z = jax.random.normal(jax.random.fold_in(key, j), (2, 3), x.dtype)
        assert jnp.array_equal(anti[2 * j], 0.5 * z)
        assert jnp.array_equal(anti[2 * j + 1], -0.5 * z)


def test_relative_and_absolute_sigma_on_identity(key):
    """a = identity: SG = x + s mean(z), SG-SQ = mean((x + s z)^2), VarGrad = s^2 var(z, ddof=1),
    with s = sigma * (max - min) or sigma, and z_i = normal(fold_in(key, i)) drawn here."""
    n, sigma = 12, 0.3
    x = np.array([[1.0, 5.0], [2.5, 4.0]])  # range 4, mean 3.125: neither 1 nor 0
    z = np.stack([jax.random.normal(jax.random.fold_in(key, i), x.shape) for i in range(n)])
    ident = lambda v: v
    rel, ab = dict(sigma=sigma, n=n, chunk=5), dict(sigma=sigma, n=n, chunk=5, relative=False)
    for opts, s in ((rel, sigma * 4.0), (ab, sigma)):
        sg = ja.smoothgrad(ident, **opts)(x, key)
        np.testing.assert_allclose(sg, x + s * z.mean(0), rtol=1e-13)
    sq = ja.smoothgrad_sq(ident, **rel)(x, key)
    np.testing.assert_allclose(sq, ((x + sigma * 4.0 * z) ** 2).mean(0), rtol=1e-13)
    vg = ja.vargrad(ident, **ab)(x, key)
    np.testing.assert_allclose(vg, sigma**2 * z.var(0, ddof=1), rtol=1e-12)


def test_smoothgrad_sq_is_smoothgrad_squared_plus_vargrad_ddof0(key):
    x = jnp.array([0.4, -1.3, 2.0])
    opts = dict(sigma=0.2, n=20, chunk=6)
    sg = ja.smoothgrad(a_jax, **opts)(x, key)
    sq = ja.smoothgrad_sq(a_jax, **opts)(x, key)
    var0 = ja.vargrad(a_jax, ddof=0, **opts)(x, key)
    np.testing.assert_allclose(sq, sg**2 + var0, rtol=1e-12)


def test_legacy_and_typed_keys_agree():
    x = jnp.array([0.4, -1.3, 2.0])
    g = ja.vargrad(a_jax, n=4)
    legacy = jax.random.PRNGKey(3)
    assert jnp.array_equal(g(x, legacy), g(x, jax.random.wrap_key_data(legacy)))


@pytest.mark.parametrize("transform", [ja.smoothgrad, ja.vargrad])  # the sum and Welford folds
def test_result_does_not_depend_on_chunk(key, transform):
    """float64: bit-identical (samples folded in index order); float32 through a matmul: within
    rounding (XLA may evaluate the matmul differently for different batch sizes)."""
    a_elementwise = jax.grad(lambda x: jnp.sum(jnp.sin(x) * x**2))
    x64 = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    ref = transform(a_elementwise, n=30)(x64, key)
    for chunk in (1, 7):  # 7 leaves a remainder; None (= n) above has no loop at all
        assert jnp.array_equal(transform(a_elementwise, n=30, chunk=chunk)(x64, key), ref)
    w32 = jnp.asarray(W, jnp.float32)
    a32 = lambda x: jnp.tanh(w32 @ x) * x + x**3
    x32 = jnp.array([0.4, -1.3, 2.0], jnp.float32)
    ref32 = transform(a32, n=30)(x32, key)
    got = transform(a32, n=30, chunk=7)(x32, key)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref32, rtol=2e-6, atol=1e-6)


def test_antithetic_smoothgrad_of_linear_attribution_is_exact(key):
    """For a(x) = A x + b the pairs (z, -z) cancel exactly; independent noise does not."""
    A = jnp.asarray(W)
    lin = lambda x: A @ x + 1.0
    x = jnp.array([0.4, -1.3, 2.0])
    exact = A @ x + 1.0
    opts = dict(sigma=0.5, n=8, chunk=3)  # chunk 3 splits pairs across passes
    anti = ja.smoothgrad(lin, antithetic=True, **opts)(x, key)
    np.testing.assert_allclose(anti, exact, atol=1e-13)
    assert np.abs(ja.smoothgrad(lin, **opts)(x, key) - exact).max() > 1e-3
    # smoothgrad_sq with antithetic pairs: mean of (Ax+b)^2 + 2(Ax+b)Az + (Az)^2 over +-z
    z = np.stack([jax.random.normal(jax.random.fold_in(key, j), (3,)) for j in range(4)])
    eps = 0.5 * 3.3 * z  # relative sigma: range of x is 3.3
    ref = np.mean([(exact + e @ W.T) ** 2 + (exact - e @ W.T) ** 2 for e in eps], axis=0) / 2
    anti_sq = ja.smoothgrad_sq(lin, antithetic=True, **opts)(x, key)
    np.testing.assert_allclose(anti_sq, ref, rtol=1e-12)


def one_pass_variance(values):
    n = values.shape[0]
    return (jnp.mean(values**2, 0) - jnp.mean(values, 0) ** 2) * n / (n - 1)


def test_vargrad_float32_stable_when_mean_dwarfs_spread():
    """mean^2/var ~ 1e6 in float32 matches a float64 two-pass reference on the same float32
    samples; the one-pass formula mean(a^2) - mean(a)^2 fails the same tolerance."""
    n = 256
    x = np.array([0.1, -0.2, 0.3], np.float32)
    eps = np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)
    shift = lambda v: v + np.float32(1000.0)  # values ~ 1000 +- 1: mean^2/var ~ 1e6
    noise = lambda i: jnp.asarray(eps)[i]
    got = jax.jit(lambda x: _aggregate(shift, x, noise, n=n, chunk=64, stat="var", ddof=1))(x)
    samples32 = (x[None] + eps) + np.float32(1000.0)
    ref = samples32.astype(np.float64).var(0, ddof=1)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    naive = one_pass_variance(jnp.asarray(samples32))
    assert naive.dtype == jnp.float32
    assert np.abs(np.asarray(naive) / ref - 1).max() > 1e-2  # the trap the test guards against


def test_peak_memory_flat_in_n(key):
    x = jnp.zeros((4, 4))
    a = jax.grad(lambda x: jnp.sum(jnp.tanh(x) ** 2))

    def temp_bytes(**opts):
        compiled = jax.jit(ja.vargrad(a, **opts)).lower(x, key).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            pytest.skip("memory_analysis() unavailable on this backend")
        return analysis.temp_size_in_bytes

    small, large = temp_bytes(n=50, chunk=10), temp_bytes(n=500, chunk=10)
    assert large == small
    assert temp_bytes(n=500) > 5 * small  # unchunked memory does grow with n


# -------------------------------------------------------------------------------- composition


def test_vmap_with_per_example_keys_equals_loop(key):
    xs = jnp.array([[0.4, -1.3, 2.0], [1.0, 0.5, -0.5]])
    keys = jax.random.split(key, 2)
    g = ja.smoothgrad(ja.saliency(lambda x: jnp.sum(jnp.sin(x) ** 2)), n=6, chunk=4)
    batched = jax.jit(jax.vmap(g))(xs, keys)
    for i in range(2):
        np.testing.assert_allclose(batched[i], g(xs[i], keys[i]), rtol=1e-13)

    # independent reference: grad sum sin^2 = sin(2x), noise z_j = normal(fold_in(key_i, j)),
    # relative sigma 0.15 * range(x_i). Mutation caught: one key reused for every example.
    def ref(x, k):
        x = np.asarray(x)
        z = np.stack([jax.random.normal(jax.random.fold_in(k, j), (3,)) for j in range(6)])
        return np.mean(np.sin(2 * (x + 0.15 * (x.max() - x.min()) * z)), axis=0)

    for i in range(2):
        np.testing.assert_allclose(batched[i], ref(xs[i], keys[i]), rtol=1e-12)
    assert not np.allclose(batched[1], ref(xs[1], keys[0]), rtol=1e-3)


def test_vmap_over_sigma_and_no_retrace(key):
    x = jnp.array([0.4, -1.3, 2.0])
    traces = []
    a = lambda v: traces.append(1) or jnp.sin(v)
    sg = lambda s: ja.smoothgrad(a, sigma=s, n=4, chunk=3, relative=False)(x, key)
    swept = jax.vmap(sg)(jnp.array([0.1, 0.3]))
    np.testing.assert_allclose(swept[1], sg(0.3), rtol=1e-14)
    g = ja.vargrad(a, n=4, chunk=3)
    g(x, key)
    count = len(traces)
    g(x + 1.0, jax.random.key(5))  # same shapes: no new trace
    assert len(traces) == count


def test_composes_with_other_transforms(key):
    f = lambda x: jnp.sum(jnp.sin(x) * x)
    x = jnp.array([0.4, -1.3, 2.0])
    # times_input passes the key through to the noise transform
    sg = ja.smoothgrad(ja.saliency(f), sigma=0.1, n=4)
    np.testing.assert_allclose(ja.times_input(sg)(x, key), sg(x, key) * x, rtol=1e-14)
    # smoothgrad of integrated gradients: one IG per noisy input
    ig = ja.integrated_gradients(f, steps=8)
    sg_ig = ja.smoothgrad(ig, sigma=0.1, n=3, relative=False)(x, key)
    z = np.stack([jax.random.normal(jax.random.fold_in(key, i), (3,)) for i in range(3)])
    ref = np.mean([ig(x + 0.1 * zi) for zi in z], axis=0)
    np.testing.assert_allclose(sg_ig, ref, rtol=1e-12)
    # modified backprop inside vargrad, under jit, against numpy: guided backprop of
    # v . relu(W x) is W' (max(v, 0) * [W x > 0]); the plain gradient keeps the negative v.
    # Mutation caught: the guided rule lost inside vargrad/jit (gives the plain variance).
    v, x2, n = np.array([1.0, -2.0, 0.5]), np.array([0.2, 0.1, 0.3]), 16
    relu_net = lambda x: jnp.asarray(v) @ jax.nn.relu(jnp.asarray(W) @ x)
    out = jax.jit(ja.vargrad(ja.guided_backprop(relu_net), n=n))(jnp.asarray(x2), key)
    z = np.stack([jax.random.normal(jax.random.fold_in(key, j), (3,)) for j in range(n)])
    masks = (x2 + 0.15 * (x2.max() - x2.min()) * z) @ W.T > 0
    guided, plain = ((masks * c) @ W for c in (np.maximum(v, 0), v))
    np.testing.assert_allclose(out, guided.var(0, ddof=1), rtol=1e-12)
    assert not np.allclose(guided.var(0, ddof=1), plain.var(0, ddof=1), rtol=0.1)


def test_bfloat16_matches_a_float64_reference_within_bf16_rounding(key):
    """bf16 in, bf16 out, and the value is the float64 statistic of the SAME bf16 noise
    (z_i = normal(fold_in(key, i), bf16)) within a bound derived from bf16's unit roundoff
    u = eps / 2 = 2^-8: each sample a_i = (x + s z_i)^2 passes through at most 6 bf16 roundings
    (range, sigma * range, s * z, x + s z, square, output cast; sums accumulate in float32), so
    |da_i| <= 6 u M_i with M_i = (|x| + |s z_i|)^2 (squares: 12 u M_i^2), and
    |d var| <= 2 sum_i |a_i - mean| |da_i| / (n - 1) + u var. Measured: 2-18% of the bound.
    Mutations caught (asserted): absolute instead of relative sigma, ddof 0 instead of 1,
    SG-SQ computed as SG^2."""
    n, sigma = 8, 0.15
    x = jnp.array([0.4, -1.3, 2.0], jnp.bfloat16)
    u = float(jnp.finfo(jnp.bfloat16).eps) / 2
    z = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(key, i), (3,), jnp.bfloat16),
                             np.float64) for i in range(n)])
    x64 = np.asarray(x, np.float64)

    def stats(s, ddof=1):
        a = (x64 + s * z) ** 2
        M = (np.abs(x64) + np.abs(s * z)) ** 2
        var = a.var(0, ddof=ddof)
        bounds = (6 * u * M.mean(0) + u * a.mean(0),
                  12 * u * (M**2).mean(0) + u * (a**2).mean(0),
                  2 * (np.abs(a - a.mean(0)) * 6 * u * M).sum(0) / (n - ddof) + u * var)
        return (a.mean(0), (a**2).mean(0), var), bounds

    s_rel = sigma * (x64.max() - x64.min())
    refs, tols = stats(s_rel)
    outs = [t(lambda v: v * v, sigma=sigma, n=n)(x, key)
            for t in (ja.smoothgrad, ja.smoothgrad_sq, ja.vargrad)]
    for out, ref, tol in zip(outs, refs, tols, strict=True):
        assert out.dtype == jnp.bfloat16 and out.shape == (3,)
        assert np.all(np.abs(np.asarray(out, np.float64) - ref) <= tol), (out, ref, tol)

    def rejected(out, ref, tol):
        return not np.all(np.abs(np.asarray(out, np.float64) - ref) <= tol)

    wrong_abs, _ = stats(sigma)
    assert all(rejected(o, r, t) for o, r, t in zip(outs, wrong_abs, tols, strict=True))
    (_, _, var_ddof0), _ = stats(s_rel, ddof=0)
    assert rejected(outs[2], var_ddof0, tols[2])
    assert rejected(outs[1], refs[0] ** 2, tols[1])


def test_pytree_valued_attribution(key):
    x = jnp.array([0.4, -1.3, 2.0])
    a = lambda v: {"a": v, "b": (2 * v, v.sum())}
    out = ja.vargrad(a, n=5, relative=False)(x, key)
    base = ja.vargrad(lambda v: v, n=5, relative=False)(x, key)
    np.testing.assert_allclose(out["a"], base, rtol=1e-14)
    np.testing.assert_allclose(out["b"][0], 4 * base, rtol=1e-14)
    assert out["b"][1].shape == ()


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "transform, opts, error, match",
    [
        (ja.smoothgrad, dict(n=0), ArgumentError, "smoothgrad: n=0 is < 1; expected an int >= 1"),
        (ja.smoothgrad_sq, dict(n=-3), ArgumentError, "smoothgrad_sq: n=-3 is < 1"),
        (ja.vargrad, dict(n=1), ArgumentError, r"vargrad: n=1 is < 2; .*ddof=1 needs n > ddof"),
        (ja.vargrad, dict(n=3, ddof=3), ArgumentError, "vargrad: n=3 is < 4; .*with ddof=3"),
        (ja.vargrad, dict(ddof=-1), ArgumentError, "vargrad: ddof=-1 is < 0"),
        (ja.smoothgrad, dict(n=2.5), TypeError, "smoothgrad: n=2.5 has type float; expected an"),
        (ja.smoothgrad, dict(n=True), TypeError, "smoothgrad: n=True is a bool; expected an int"),
        (ja.smoothgrad, dict(sigma=0.0), ArgumentError, r"smoothgrad: sigma=0.0 is out of range"),
        (ja.vargrad, dict(sigma=-0.1), ArgumentError, r"vargrad: sigma=-0.1 is out of range"),
        (ja.smoothgrad, dict(sigma=float("nan")), ArgumentError, "sigma=nan is not finite"),
        (ja.smoothgrad, dict(sigma=float("inf")), ArgumentError, "sigma=inf is not finite"),
        (ja.smoothgrad, dict(sigma=[0.1, 0.2]), TypeError, r"sigma=\[0.1, 0.2\] has type list"),
        (ja.smoothgrad, dict(sigma="big"), TypeError, "smoothgrad: sigma='big' has type str"),
        (ja.smoothgrad, dict(sigma="0.1"), TypeError, "smoothgrad: sigma='0.1' has type str"),
        (ja.smoothgrad, dict(n=10, chunk=0), ArgumentError, "smoothgrad: chunk=0 is < 1"),
        (ja.smoothgrad, dict(n=10, chunk=11), ArgumentError, "chunk=11 is larger than n=10"),
        (ja.vargrad, dict(n=10, chunk=2.0), TypeError, "vargrad: chunk=2.0 has type float"),
        (ja.smoothgrad, dict(n=5, antithetic=True), ArgumentError, "n=5 is odd but antithetic"),
        (ja.smoothgrad, dict(relative=1), TypeError, "smoothgrad: relative=1 has type int"),
    ],
)
def test_bad_options(transform, opts, error, match):
    with pytest.raises(error, match=match):
        transform(lambda x: x, **opts)


def test_bad_attribution_function():
    with pytest.raises(TypeError, match="smoothgrad: a=<array .* is an array, not a function"):
        ja.smoothgrad(jnp.ones(3))
    with pytest.raises(TypeError, match="vargrad: a=.* is a transform, not an attribution fun"):
        ja.vargrad(ja.rectgrad)


def test_bad_key_and_input(key):
    g = ja.smoothgrad(lambda x: x, n=2)
    x = jnp.ones(3)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'key'"):
        g(x)
    with pytest.raises(TypeError, match="smoothgrad: key=None is missing"):
        g(x, None)
    with pytest.raises(TypeError, match="smoothgrad: key=0 has type int; expected one jax.random"):
        g(x, 0)
    with pytest.raises(TypeError, match="smoothgrad: key=.* is not a PRNG key"):
        g(x, jnp.zeros(2))
    with pytest.raises(TypeError, match="smoothgrad: key=.* is not a PRNG key"):
        g(x, jnp.zeros(3, jnp.uint32))
    with pytest.raises(ArgumentError, match=r"key=.* holds \(2,\) keys.*use jax.vmap"):
        g(x, jax.random.split(key, 2))
    with pytest.raises(TypeError, match="smoothgrad: x=.* has dtype int.*; expected a real float"):
        g(jnp.arange(3), key)


# -------------------------------------------------------------------------------- statistical


def within(estimate, reference, se, z=Z):
    return bool(np.all(np.abs(np.asarray(estimate) - reference) <= z * se))


def chi2_within(estimate, reference, n):
    lo = reference * stats.chi2.ppf(P_TAIL, n - 1) / (n - 1)
    hi = reference * stats.chi2.isf(P_TAIL, n - 1) / (n - 1)
    estimate = np.asarray(estimate)
    return bool(np.all((lo <= estimate) & (estimate <= hi)))


def test_quadratic_closed_forms(key):
    """f = x'Ax/2 + b'x: SG = Ax + b with SE sigma sqrt((A^2)_ii / n); VarGrad_i = sigma^2 sum_j
    A_ij^2 with (n-1) V_hat / V ~ chi2(n-1) exactly (Gaussian samples)."""
    A = W + W.T
    b = np.array([0.5, -1.0, 2.0])
    f = lambda x: 0.5 * x @ jnp.asarray(A) @ x + jnp.asarray(b) @ x
    x = np.array([0.4, -1.3, 2.0])
    n, sigma = 600, 0.5
    opts = dict(sigma=sigma, n=n, chunk=200, relative=False)
    sg = ja.smoothgrad(ja.saliency(f), **opts)(x, key)
    vg = ja.vargrad(ja.saliency(f), **opts)(x, key)
    sg_ref = A @ x + b
    row_sq = (A**2).sum(1)
    se = sigma * np.sqrt(row_sq / n)
    vg_ref = sigma**2 * row_sq
    assert within(sg, sg_ref, se) and chi2_within(vg, vg_ref, n)
    # the same checks reject wrong implementations
    assert not within(2 * sg, sg_ref, se)
    assert not within(-sg, sg_ref, se)
    assert not chi2_within(2 * vg, vg_ref, n)
    assert not chi2_within(vg / 2, vg_ref, n)
    vg_sigma_2x = ja.vargrad(ja.saliency(f), **{**opts, "sigma": 2 * sigma})(x, key)
    assert not chi2_within(vg_sigma_2x, vg_ref, n)


def cos_moments(u, s):
    """E[cos^k(u + s Z)], k = 1..4, from E[cos(m (u + s Z))] = cos(m u) exp(-m^2 s^2 / 2)."""
    c = lambda m: np.cos(m * u) * np.exp(-(m**2) * s**2 / 2)
    return c(1), 0.5 + 0.5 * c(2), 0.75 * c(1) + 0.25 * c(3), 0.375 + 0.5 * c(2) + 0.125 * c(4)


def test_plane_wave_closed_forms(key):
    """f = sin(w.x + b): SG_i = w_i cos(u) e^{-s^2/2}; VarGrad_i = (w_i^2/2)(1 - e^{-s^2})(1 -
    e^{-s^2} cos 2u). SE of the variance from the exact kurtosis of cos(u + sZ)."""
    w = np.array([0.8, -0.5, 0.3])
    b0 = 0.2
    f = lambda x: jnp.sin(jnp.asarray(w) @ x + b0)
    x = np.array([0.4, -1.3, 2.0])
    u = w @ x + b0
    sigma, n = 1.0, 3000
    s2 = sigma**2 * (w @ w)
    opts = dict(sigma=sigma, n=n, chunk=1000, relative=False)
    sg = ja.smoothgrad(ja.saliency(f), **opts)(x, key)
    vg = ja.vargrad(ja.saliency(f), **opts)(x, key)
    sg_ref = w * np.cos(u) * np.exp(-s2 / 2)
    vg_ref = (w**2 / 2) * (1 - np.exp(-s2)) * (1 - np.exp(-s2) * np.cos(2 * u))
    m1, m2, m3, m4 = cos_moments(u, np.sqrt(s2))
    var_c = m2 - m1**2
    np.testing.assert_allclose(w**2 * var_c, vg_ref, rtol=1e-12)  # the two closed forms agree
    kurt = (m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4) / var_c**2
    se_sg = np.sqrt(vg_ref / n)
    se_vg = vg_ref * np.sqrt((kurt - (n - 3) / (n - 1)) / n)
    assert within(sg, sg_ref, se_sg) and within(vg, vg_ref, se_vg)
    assert not within(w * np.cos(u), sg_ref, se_sg)  # the noise-free gradient is far off
    assert not within(-sg, sg_ref, se_sg)
    assert not within(2 * vg, vg_ref, se_vg)


def test_antithetic_ridge_cubic_cancels_odd_term(key):
    """f = (a.x)^3: g_i = 3 a_i (v + a.eps)^2. Pairs cancel the odd term 6 a_i v (a.eps), leaving
    SG_i = 3 a_i (v^2 + mean (a.eps)^2) with SE 3 |a_i| sqrt(2) s^2 / sqrt(n/2); independent noise
    keeps the odd term, whose spread (12 a_i^2 v^2 s^2 / n per component) fails that tolerance."""
    av = np.array([0.6, -0.3, 0.4])
    f = lambda x: (jnp.asarray(av) @ x) ** 3
    x = np.array([2.0, -1.0, 3.0])
    v = av @ x
    sigma, n = 0.2, 400
    s2 = sigma**2 * (av @ av)
    opts = dict(sigma=sigma, n=n, chunk=100, relative=False)
    ref = 3 * av * (v**2 + s2)
    se_anti = 3 * np.abs(av) * np.sqrt(2) * s2 / np.sqrt(n / 2)
    anti = ja.smoothgrad(ja.saliency(f), antithetic=True, **opts)(x, key)
    assert within(anti, ref, se_anti)
    se_plain = np.sqrt(36 * av**2 * v**2 * s2 + 18 * av**2 * s2**2) / np.sqrt(n)
    plain = ja.smoothgrad(ja.saliency(f), **opts)(x, key)
    assert within(plain, ref, se_plain)
    assert not within(plain, ref, se_anti)


@pytest.mark.parametrize("transform", [ja.smoothgrad, ja.vargrad])
def test_unrolled_chunk_loop_gives_identical_bits(key, transform):
    x = jnp.array([0.3, -1.2, 2.0])
    rolled = transform(a_jax, sigma=0.2, n=11, chunk=3)(x, key)
    unrolled = transform(a_jax, sigma=0.2, n=11, chunk=3, unroll=True)(x, key)
    np.testing.assert_array_equal(rolled, unrolled)


@pytest.mark.parametrize("unroll", [0, -1, 1.5, "yes"])
def test_bad_unroll_rejected(unroll):
    with pytest.raises(ArgumentError, match="smoothgrad: unroll=.*; expected an int"):
        ja.smoothgrad(a_jax, unroll=unroll)
