"""jaxattr.derivatives against hand-derived numpy derivatives of a sine network and a tanh MLP."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr import derivatives as D
from jaxattr.errors import ArgumentError, ArgumentTypeError

RNG = np.random.default_rng(0)
C, W, B = RNG.normal(size=4), RNG.normal(size=(4, 3)) * 0.8, RNG.normal(size=4)
X = np.array([0.3, -0.4, 0.7])
Z = 5.0


def sine_net(x):
    return jnp.asarray(C) @ jnp.sin(jnp.asarray(W) @ x + jnp.asarray(B))


def sine_refs(x):
    """numpy derivatives of f = sum_m c_m sin(u_m), u = W x + b (by hand)."""
    u = W @ x + B
    n2 = np.sum(W**2, axis=1)
    s, c = np.sin(u), np.cos(u)
    H = -np.einsum("m,mi,mj->ij", C * s, W, W)
    T = -np.einsum("m,mi,mj,mk->ijk", C * c, W, W, W)
    L = np.einsum("m,mi,mj->ij", C * n2 * s, W, W)  # Hessian of Lap f = -sum c n2 sin u
    return {
        "laplacian": -np.sum(C * n2 * s),
        "grad_laplacian": -(C * n2 * c) @ W,
        "hessian_row_sqnorms": np.sum(H**2, axis=1),
        "hessian_laplacian_contraction": np.sum(H * L, axis=1),
        "third_derivative_row_sqnorms": np.sum(T**2, axis=(1, 2)),
        ("power", 0): C @ s,
        ("power", 2): np.sum(C * n2**2 * s),
        ("power", 3): -np.sum(C * n2**3 * s),
        ("gradpower", 2): (C * n2**2 * c) @ W,
    }


NAMES = ["laplacian", "grad_laplacian", "hessian_row_sqnorms", "hessian_laplacian_contraction",
         "third_derivative_row_sqnorms"]


@pytest.mark.parametrize("method", ["exact", "forward"])
@pytest.mark.parametrize("name", NAMES)
def test_deterministic_methods_match_hand_derivatives(name, method):
    got = jax.jit(getattr(D, name)(sine_net, method=method))(jnp.asarray(X))
    np.testing.assert_allclose(got, sine_refs(X)[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "forward"])
def test_laplacian_powers(method):
    ref = sine_refs(X)
    x = jnp.asarray(X)
    for k in (0, 2, 3):
        np.testing.assert_allclose(jax.jit(D.laplacian_power(sine_net, k, method=method))(x),
                                   ref[("power", k)], rtol=1e-11)
    np.testing.assert_allclose(jax.jit(D.grad_laplacian_power(sine_net, 2, method=method))(x),
                               ref[("gradpower", 2)], rtol=1e-11)
    np.testing.assert_allclose(jax.jit(D.grad_laplacian_power(sine_net, 1, method=method))(x),
                               ref["grad_laplacian"], rtol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("name", NAMES + ["power2"])
def test_hutchinson_within_standard_errors(name, probe, key):
    if name == "power2":
        build, ref = D.laplacian_power(sine_net, 2, method="hutchinson", num_probes=4000,
                                       probe=probe), sine_refs(X)[("power", 2)]
    else:
        build = getattr(D, name)(sine_net, method="hutchinson", num_probes=4000, probe=probe)
        ref = sine_refs(X)[name]
    est = build(jnp.asarray(X), key)
    assert est.value.shape == np.shape(ref) and est.stderr.shape == np.shape(ref)
    err = np.abs(est.value - ref)
    assert np.all(err <= 5 * est.stderr + 1e-12), (err, est.stderr)
    # the standard error is honest, not huge: a factor-2 error in the target is detected
    assert np.all(np.abs(est.value - 2 * ref) > 5 * est.stderr)


def test_hutchinson_chunked_equals_unchunked_and_single_probe(key):
    x = jnp.asarray(X)
    a = jax.jit(D.grad_laplacian(sine_net, method="hutchinson", num_probes=10))(x, key)
    b = jax.jit(D.grad_laplacian(sine_net, method="hutchinson", num_probes=10, chunk=3))(x, key)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-13)
    one = jax.jit(D.laplacian(sine_net, method="hutchinson", num_probes=1))(x, key)
    assert np.isinf(one.stderr)


def _mlp(d, h, seed=0):
    r = np.random.default_rng(seed)
    W1, b1, w2 = r.normal(size=(h, d)) / np.sqrt(d) * 2, r.normal(size=h), r.normal(size=h)

    def f(x):
        return jnp.asarray(w2) @ jnp.tanh(jnp.asarray(W1) @ x.reshape(-1) + jnp.asarray(b1))

    def grad_lap(x):  # Lap f = sum_m w2_m tanh''(u_m) |W1_m|^2, tanh''' = -2 + 8t^2 - 6t^4 ...
        t = np.tanh(W1 @ np.asarray(x).reshape(-1) + b1)
        t3 = (1 - t**2) * (6 * t**2 - 2)  # third derivative of tanh
        return ((w2 * t3 * np.sum(W1**2, axis=1)) @ W1).reshape(np.shape(x))

    return f, grad_lap


def test_forward_chunking_and_shapes_agree_with_exact():
    f, grad_lap = _mlp(12, 5)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    ref = grad_lap(x)
    for chunk in (None, 5, 12):
        got = jax.jit(D.grad_laplacian(f, method="forward", chunk=chunk))(x)
        assert got.shape == x.shape
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(jax.jit(D.grad_laplacian(f))(x), ref, rtol=1e-11, atol=1e-13)
    lap_exact = jax.jit(D.laplacian(f))(x)
    lap_forward = jax.jit(D.laplacian(f, method="forward", chunk=5))(x)
    np.testing.assert_allclose(lap_forward, lap_exact, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(D.hessian_row_sqnorms(f, method="forward", chunk=5))(x),
                               jax.jit(D.hessian_row_sqnorms(f))(x), rtol=1e-12)
    jitted = jax.jit(D.grad_laplacian(f, method="forward", chunk=5))(x)
    np.testing.assert_allclose(jitted, ref, rtol=1e-11, atol=1e-13)


def test_chunked_forward_beyond_the_exact_limit():
    """d = 32x32x3 = 3072 > EXACT_MAX_DIM: chunked forward matches the hand-derived numpy
    grad Laplacian; the exact method refuses and names both alternatives."""
    f, grad_lap = _mlp(32 * 32 * 3, 3)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(32, 32, 3)) * 0.1)
    got = jax.jit(D.grad_laplacian(f, method="forward", chunk=1024))(x)
    np.testing.assert_allclose(got, grad_lap(x), rtol=1e-10, atol=1e-14)
    with pytest.raises(ArgumentError, match=r"grad_laplacian: x=.* has d=3072 entries; expected "
                       r"d <= 2048 for method='exact'\. use method='forward' or .*hutchinson"):
        jax.jit(D.grad_laplacian(f))(x)


def _rademacher_grad_lap_moments(W1, b1, w2, x, num_probes):
    """Mean and standard error of the Hutchinson grad-Laplacian of f = w2 . tanh(W1 x + b1),
    in closed form (numpy, no jaxattr): with s_m = W1_m . v (Rademacher v), one sample is
    sum_m a_m s_m^2 W1_m, a_m = w2_m tanh^(3)(u_m); E s_m^2 = |W1_m|^2 and
    Cov(s_m^2, s_n^2) = 2 (W1_m . W1_n)^2 - 2 sum_j W1_mj^2 W1_nj^2 (E v^4 = 1)."""
    t = np.tanh(W1 @ x + b1)
    a = w2 * (1 - t**2) * (6 * t**2 - 2)
    G = W1 @ W1.T
    C = 2 * G**2 - 2 * (W1**2) @ (W1**2).T
    mean = (a * np.diag(G)) @ W1
    var = np.einsum("m,n,mi,ni,mn->i", a, a, W1, W1, C)
    return mean, np.sqrt(var / num_probes)


def test_hutchinson_on_a_224x224x3_input_against_an_independent_reference(key):
    """d = 150528: a d x d Hessian would need 180 GB, so this shows that Hutchinson forms none.
    Reference mean AND standard error in closed form (above), not from the estimator.

    Mutations caught (asserted below): reference x2, sign flipped, an all-zero estimate, the
    estimate scaled by 2 (each leaves some coordinate beyond z*SE)."""
    d, h, n = 224 * 224 * 3, 2, 128  # n: relative SE ~ sqrt(2 / n) = 0.125, so 5 SE < |ref|
    r = np.random.default_rng(3)
    W1, b1, w2 = r.normal(size=(h, d)) * 2 / np.sqrt(d), r.normal(size=h), r.normal(size=h)

    def f(x):
        return jnp.asarray(w2) @ jnp.tanh(jnp.asarray(W1) @ x.reshape(-1) + jnp.asarray(b1))

    x = r.normal(size=(224, 224, 3)) * 0.1
    hutch = D.grad_laplacian(f, method="hutchinson", num_probes=n, chunk=64)
    est = jax.jit(hutch)(jnp.asarray(x), key)
    assert est.value.shape == x.shape
    ref, se = (a.reshape(x.shape)
               for a in _rademacher_grad_lap_moments(W1, b1, w2, x.reshape(-1), n))
    # the probe means are 2 random numbers (rank-2 structure): z = 5 over all d entries is
    # effectively 2 assertions
    assert np.all(np.abs(est.value - ref) <= Z * se + 1e-12)

    def rejected(value, reference):
        return not np.all(np.abs(value - reference) <= Z * se + 1e-12)

    assert rejected(est.value, 2 * ref) and rejected(est.value, -ref)
    assert rejected(np.zeros_like(ref), ref) and rejected(2 * est.value, ref)


def test_folx_fallback_warns_and_is_exact():
    def f(x):  # lax.scan over input-dependent values: folx has no rule
        return jax.lax.scan(lambda c, a: (c * jnp.sin(a), None), 1.0, x)[0]

    x = jnp.array([0.3, 0.5, 0.9])
    with pytest.warns(D.FolxFallbackWarning, match="falling back to method='exact'"):
        got = jax.jit(D.laplacian(f, method="forward"))(x)
    s = np.sin(np.asarray(x))
    # f = prod sin(x_i): d^2/dx_i^2 = -f, so Lap f = -3 f
    np.testing.assert_allclose(got, -3 * np.prod(s), rtol=1e-12)


def test_bad_input(key):
    f = sine_net
    x = jnp.asarray(X)
    with pytest.raises(ArgumentError, match=r"^laplacian: method='taylor' is not a known option; "
                       r"expected one of 'exact', 'forward', 'hutchinson'"):
        D.laplacian(f, method="taylor")
    with pytest.raises(ArgumentError, match=r"^laplacian: num_probes=0 is < 1; expected an int"):
        D.laplacian(f, method="hutchinson", num_probes=0)
    with pytest.raises(ArgumentTypeError, match=r"^laplacian: num_probes=2.5 has type float"):
        D.laplacian(f, num_probes=2.5)
    with pytest.raises(ArgumentError, match=r"^hessian_row_sqnorms: probe='uniform' is not a "):
        D.hessian_row_sqnorms(f, probe="uniform")
    with pytest.raises(ArgumentError, match=r"^grad_laplacian: chunk=0 is < 1"):
        D.grad_laplacian(f, chunk=0)
    with pytest.raises(ArgumentError, match=r"^laplacian_power: k=-1 is < 0"):
        D.laplacian_power(f, -1)
    with pytest.raises(ArgumentTypeError, match=r"^grad_laplacian_power: k=1.5 has type float"):
        D.grad_laplacian_power(f, 1.5)
    with pytest.raises(ArgumentTypeError, match=r"^third_derivative_row_sqnorms: f=.* is an array"):
        D.third_derivative_row_sqnorms(x)
    with pytest.raises(ArgumentTypeError, match=r"^laplacian: f=.* returns \(3,\); expected a "
                       r"function returning a scalar"):
        D.laplacian(lambda x: x**2)(x)
    with pytest.raises(ArgumentTypeError, match=r"^laplacian: x=.* has dtype int.*floating"):
        D.laplacian(f)(jnp.arange(3))
    with pytest.raises(ArgumentTypeError, match=r"^grad_laplacian: key=0 has type int"):
        D.grad_laplacian(f, method="hutchinson")(x, 0)
    with pytest.raises(ArgumentError, match=r"^laplacian: x=.* has d=2049 entries; expected "
                       r"d <= 2048 for method='exact'"):
        D.laplacian(lambda x: jnp.sum(x**2))(jnp.zeros(2049))
    for name in ("hessian_laplacian_contraction", "third_derivative_row_sqnorms"):
        for method in ("exact", "forward"):
            with pytest.raises(ArgumentError, match=rf"^{name}: x=.* has d=257 entries; expected "
                               rf"d <= 256 for method='{method}'\. use method='hutchinson'"):
                getattr(D, name)(lambda x: jnp.sum(x**3), method=method)(jnp.zeros(257))
    with pytest.raises(ArgumentError, match=r"^laplacian_power: x=.* has d=300 entries; expected "
                       r"d <= 256 for method='forward' and k=2\. use method='hutchinson'"):
        D.laplacian_power(lambda x: jnp.sum(x**3), 2, method="forward")(jnp.zeros(300))
    # k = 1 forward is chunked: no limit, so the same d passes
    assert D.laplacian_power(lambda x: jnp.sum(x**3), 1, method="forward")(jnp.zeros(300)) == 0


def test_registry_covers_every_quantity_and_method():
    """Every public builder x every method has exactly one registered implementation."""
    from jaxattr.derivatives import _core

    quantities = {"laplacian", "grad_laplacian", "laplacian_power", "grad_laplacian_power",
                  "hessian_row_sqnorms", "hessian_laplacian_contraction",
                  "third_derivative_row_sqnorms"}
    assert set(_core.registered()) == {(q, m) for q in quantities for m in D.METHODS}


def test_no_warnings_on_smooth_forward():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        D.laplacian(sine_net, method="forward")(jnp.asarray(X))
