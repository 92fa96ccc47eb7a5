"""jaxattr.theory: series vs closed forms (hand-derived, re-written here in numpy), convergence
orders, and Monte Carlo (jaxattr.smoothgrad / jaxattr.vargrad) vs series within z*SE + bias."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr import derivatives as D
from jaxattr import theory as T
from jaxattr.errors import ArgumentError, ArgumentTypeError

Z = 5.0
RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ closed forms (numpy, by hand)
def test_closed_forms_match_numpy_formulas():
    x, s = np.array([0.2, -0.1, 0.4]), 0.3
    w = np.array([0.7, -1.2, 0.5])
    s2 = s**2 * w @ w
    u = w @ x + 0.1
    pw = T.plane_wave(jnp.asarray(w), 0.1)
    np.testing.assert_allclose(pw.smoothgrad(x, s), w * np.cos(u) * np.exp(-s2 / 2), rtol=1e-13)
    np.testing.assert_allclose(
        pw.vargrad(x, s), w**2 / 2 * (1 - np.exp(-s2)) * (1 - np.exp(-s2) * np.cos(2 * u)),
        rtol=1e-13)
    ex = T.exponential(jnp.asarray(w))
    np.testing.assert_allclose(ex.vargrad(x, s),
                               w**2 * np.exp(2 * w @ x) * np.exp(s2) * (np.exp(s2) - 1), rtol=1e-13)
    rc = T.ridge_cubic(jnp.asarray(w))
    v = w @ x
    np.testing.assert_allclose(rc.smoothgrad(x, s), 3 * w * (v**2 + s2), rtol=1e-13)
    np.testing.assert_allclose(rc.vargrad(x, s), w**2 * (36 * s2 * v**2 + 18 * s2**2), rtol=1e-13)
    # one-unit sine network == plane wave (two independent derivations)
    net = T.sine_network(jnp.ones(1), jnp.asarray(w)[None], jnp.array([0.1]))
    for name in ("smoothgrad", "vargrad", "covariance"):
        np.testing.assert_allclose(getattr(net, name)(x, s), getattr(pw, name)(x, s), rtol=1e-12)


def test_sine_network_closed_form_against_high_n_numpy_monte_carlo():
    c, W, b = RNG.normal(size=3), RNG.normal(size=(3, 2)), RNG.normal(size=3)
    x, s, n = np.array([0.3, -0.5]), 0.6, 400_000
    net = T.sine_network(jnp.asarray(c), jnp.asarray(W), jnp.asarray(b))
    eps = np.random.default_rng(1).normal(size=(n, 2)) * s
    g = (c * np.cos((x + eps) @ W.T + b)) @ W  # (n, 2) gradient samples
    mean, cov = g.mean(0), np.cov(g.T)
    assert T.compare(mean, g.std(0, ddof=1) / np.sqrt(n), net.smoothgrad(x, s), z=Z).passed
    # SE of a sample covariance entry: sd of the centred products / sqrt(n)
    prod = (g - mean)[:, :, None] * (g - mean)[:, None, :]
    se = prod.std(0, ddof=1) / np.sqrt(n)
    assert T.compare(cov, se, net.covariance(x, s), z=Z).passed
    # the derivation's cross terms matter: dropping them (diagonal K only) is rejected
    K = np.diag(np.diag(np.asarray(net.covariance(x, s))))
    assert not T.compare(cov, se, K, z=Z).passed


# ------------------------------------------------------------ series vs closed forms, exactness
def test_series_exact_for_quadratic_and_ridge_cubic():
    A = RNG.normal(size=(3, 3))
    A = A + A.T
    b = RNG.normal(size=3)
    x = jnp.asarray(RNG.normal(size=3))
    q = T.quadratic(jnp.asarray(A), jnp.asarray(b))
    for s in (0.1, 1.0):
        for K in (0, 1, 2):
            np.testing.assert_allclose(jax.jit(T.smoothgrad_series(q.f, s, order=K))(x), A @ x + b,
                                       atol=1e-10, rtol=0)
        for K in (1, 2):
            np.testing.assert_allclose(jax.jit(T.vargrad_series(q.f, s, order=K))(x),
                                       s**2 * np.sum(A**2, 1), atol=1e-10, rtol=0)
        np.testing.assert_allclose(jax.jit(T.vargrad_covariance_series(q.f, s, order=2))(x),
                                   s**2 * A @ A, atol=1e-10, rtol=0)
    a = jnp.array([0.5, -1.0, 2.0])
    rc = T.ridge_cubic(a)
    for s in (0.05, 0.7):
        for method in ("exact", "forward"):
            sg = jax.jit(T.smoothgrad_series(rc.f, s, order=1, method=method))(x)
            np.testing.assert_allclose(sg, rc.smoothgrad(x, s), atol=1e-10, rtol=0)
            vg = jax.jit(T.vargrad_series(rc.f, s, order=2, method=method))(x)
            np.testing.assert_allclose(vg, rc.vargrad(x, s), atol=1e-10, rtol=0)
        cov = jax.jit(T.vargrad_covariance_series(rc.f, s))(x)
        np.testing.assert_allclose(cov, rc.covariance(x, s), atol=1e-10, rtol=0)
    assert float(jnp.max(jax.jit(T.vargrad_series(rc.f, 0.7, order=0))(x))) == 0.0


def test_smoothgrad_series_converges_in_K():
    """Plane wave, exponential, sine network: the K-term error is below the first neglected
    term of the exponential series, sum_(k>K) (s^2/2)^k / k! times the scale."""
    w = jnp.array([0.8, -0.6])
    x = jnp.array([0.3, 0.2])
    s = 0.5
    Wn = jnp.array([[0.8, -0.6], [0.3, 0.9]])
    cases = [(T.plane_wave(w, 0.2), np.abs(w)), (T.exponential(w), np.abs(w) * np.exp(w @ x)),
             (T.sine_network(jnp.array([1.0, -0.5]), Wn, jnp.array([0.2, 0.1])),
              np.array([1.0, 0.5]) @ np.abs(Wn))]
    for cf, scale in cases:
        ref = np.asarray(cf.smoothgrad(x, s))
        errs = [np.max(np.abs(jax.jit(T.smoothgrad_series(cf.f, s, order=K))(x) - ref))
                for K in range(4)]
        h = s**2 / 2  # |w|^2 <= 1 for every unit here
        for K, e in enumerate(errs):
            tail = np.exp(h) - sum(h**k / math.factorial(k) for k in range(K + 1))
            assert e <= tail * np.max(scale) * (1 + 1e-9) + 1e-14
        assert errs[3] < 1e-4 * errs[0]


def _tanh_net(d, h, seed):
    r = np.random.default_rng(seed)
    W1, b1, w2 = (jnp.asarray(r.normal(size=(h, d))), jnp.asarray(r.normal(size=h)),
                  jnp.asarray(r.normal(size=h)))
    return lambda x: w2 @ jnp.tanh(W1 @ x + b1)


def test_error_slope_is_2K_plus_2_on_a_tanh_network():
    """True SmoothGrad by 2-D Gauss-Hermite quadrature (numpy nodes), exact to ~1e-15."""
    f = _tanh_net(2, 6, 0)
    x0 = jnp.array([0.3, -0.2])
    t, wt = np.polynomial.hermite_e.hermegauss(60)
    nodes = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    weights = np.outer(wt, wt).reshape(-1) / (2 * np.pi)
    grads = jax.jit(jax.vmap(jax.grad(f)))
    sigmas = np.geomspace(0.015, 0.06, 4)
    truth = [weights @ np.asarray(grads(x0[None] + s * jnp.asarray(nodes))) for s in sigmas]
    for K in (0, 1, 2):
        errs = [np.linalg.norm(jax.jit(T.smoothgrad_series(f, s, order=K))(x0) - tr)
                for s, tr in zip(sigmas, truth, strict=True)]
        slope = np.polyfit(np.log(sigmas), np.log(errs), 1)[0]
        assert abs(slope - (2 * K + 2)) <= 0.2, (K, slope, errs)


# ------------------------------------------------------------ Monte Carlo vs series (jaxattr API)
# Every standard error below comes from closed forms or numpy quadrature written in this file,
# never from ja.smoothgrad / ja.vargrad themselves.
F3 = _tanh_net(3, 5, 1)
X3 = jnp.array([0.2, -0.3, 0.1])
C3 = np.array([1.0, -0.8, 0.6])
W3 = np.array([[0.9, -0.5, 0.3], [0.2, 0.8, -0.6], [-0.4, 0.3, 1.0]])
B3 = np.array([0.3, -0.2, 0.5])
SINE = T.sine_network(jnp.asarray(C3), jnp.asarray(W3), jnp.asarray(B3))


def _sine_grad_cov(x, s, sign):
    """numpy: Cov(g(x + e), g(x + sign * e)) for the sine network, e ~ N(0, s^2 I), from
    Cov(cos(u_m + a), cos(u_n + b)) = e^(-(s_m^2 + s_n^2)/2) / 2 [cos(u_m - u_n)(e^rho - 1)
    + cos(u_m + u_n)(e^-rho - 1)], rho = Cov(a, b) (Gaussian a, b)."""
    u = W3 @ np.asarray(x) + B3
    r = sign * s**2 * W3 @ W3.T
    s2 = s**2 * np.sum(W3**2, 1)
    K = 0.5 * np.exp(-(s2[:, None] + s2[None, :]) / 2) * (
        np.cos(u[:, None] - u[None, :]) * np.expm1(r) + np.cos(u[:, None] + u[None, :])
        * np.expm1(-r))
    cw = C3[:, None] * W3
    return cw.T @ K @ cw


def _variance_se(samples_fn, x, s, n, d, nodes=16):
    """numpy: SE of the ddof=1 sample variance of g_i(x + e) from its exact kurtosis, by
    Gauss-Hermite quadrature over e ~ N(0, s^2 I_d): relative SE = sqrt((kappa - (n-3)/(n-1))/n).
    """
    t, wt = np.polynomial.hermite_e.hermegauss(nodes)
    grid = np.stack(np.meshgrid(*[t] * d, indexing="ij"), -1).reshape(-1, d)
    w = np.prod(np.stack(np.meshgrid(*[wt] * d, indexing="ij"), -1).reshape(-1, d), 1)
    w = w / w.sum()
    g = samples_fn(np.asarray(x)[None] + s * grid)  # (nodes^d, d)
    c = g - w @ g
    m2, m4 = w @ c**2, w @ c**4
    return m2, m2 * np.sqrt((m4 / m2**2 - (n - 3) / (n - 1)) / n)


@pytest.mark.parametrize("variant", ["correct", "factor2", "sign"])
def test_smoothgrad_monte_carlo_matches_series(variant, key):
    """Claim 1: SmoothGrad - grad f is the third-derivative term (sigma^2/2) grad Lap f.

    Sine network: the bias bound is the series' true truncation error, from the closed form
    (itself checked against numpy Monte Carlo above), with a 1.5x margin. SE of the antithetic
    mean in closed form: Var = (V + Cov(g(x+e), g(x-e))) / n. Mutations caught: reference x2,
    reference with the wrong sign."""
    s = 0.4
    grad = jax.grad(SINE.f)(X3)
    term1 = (s**2 / 2) * D.grad_laplacian(SINE.f)(X3)
    series = jax.jit(T.smoothgrad_series(SINE.f, s, order=1))(X3)
    np.testing.assert_allclose(series, grad + term1, rtol=1e-12)
    bias = 1.5 * np.abs(SINE.smoothgrad(X3, s) - series)
    V = np.diag(_sine_grad_cov(X3, s, +1))
    np.testing.assert_allclose(V, SINE.vargrad(X3, s), rtol=1e-12)  # two derivations agree
    C_anti = np.diag(_sine_grad_cov(X3, s, -1))
    # n from the formula: resolve 20% of the correction at z = 5
    n = T.samples_for_mean(float(np.sqrt(np.max(V + C_anti))), float(np.max(np.abs(term1))),
                           rel_err=0.2, z=Z)
    n += n % 2
    sg = ja.smoothgrad(jax.grad(SINE.f), sigma=s, n=n, relative=False, antithetic=True)(X3, key)
    se = np.sqrt((V + C_anti) / n)
    scale = {"correct": 1.0, "factor2": 2.0, "sign": -1.0}[variant]
    result = T.compare(sg - grad, se, scale * term1, bias_bound=bias, z=Z)
    assert result.passed == (variant == "correct"), result
    if variant == "correct":  # the third-derivative term dominates the difference
        assert np.linalg.norm(term1) > 3 * np.linalg.norm(Z * se + bias)
        assert np.linalg.norm(bias) < 0.1 * np.linalg.norm(term1)


@pytest.mark.parametrize("variant", ["correct", "factor2", "sign"])
def test_vargrad_monte_carlo_matches_series(variant, key):
    """Ridge cubic: the order-2 series is exact (B = 0). SE from the exact kurtosis of
    g = 3 a (v + t)^2, t ~ N(0, s^2 |a|^2), by quadrature. Mutations caught: leading term x2,
    quartic term with the wrong sign."""
    a = np.array([0.5, -1.0, 1.5])
    x = jnp.array([0.6, 0.1, 0.3])
    rc = T.ridge_cubic(jnp.asarray(a))
    s = 0.4
    n = T.samples_for_variance(0.1, z=Z, kurtosis=6.0)
    lead = s**2 * D.hessian_row_sqnorms(rc.f)(x)
    full = jax.jit(T.vargrad_series(rc.f, s, order=2))(x)
    quartic = full - lead
    ref = {"correct": full, "factor2": 2 * lead + quartic, "sign": lead - quartic}[variant]
    V = ja.vargrad(jax.grad(rc.f), sigma=s, n=n, relative=False)(x, key)
    m2, se = _variance_se(lambda y: 3 * a * ((y @ a) ** 2)[:, None], x, s, n, 3)
    np.testing.assert_allclose(m2, rc.vargrad(x, s), rtol=1e-10)  # quadrature is exact here
    assert T.compare(V, se, ref, z=Z).passed == (variant == "correct")


def test_vargrad_ddof_is_caught_by_averaging_small_samples(key):
    """Quadratic: gradient samples are Gaussian, E[V_hat(ddof=1)] = V exactly; ddof=0 is biased
    by (n-1)/n = 0.8 at n = 5, which R = 2000 replicates resolve at z = 5."""
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    q = T.quadratic(A, jnp.zeros(2))
    s, n, R = 0.3, 5, 2000
    Vtrue = np.asarray(jax.jit(T.vargrad_series(q.f, s, order=1))(jnp.zeros(2)))
    keys = jax.random.split(key, R)
    for ddof, ok in ((1, True), (0, False)):
        vg = jax.vmap(lambda k, d=ddof: ja.vargrad(jax.grad(q.f), sigma=s, n=n, relative=False,
                                                   ddof=d)(jnp.zeros(2), k))(keys)
        se = Vtrue * np.sqrt(2 / (n - 1)) / np.sqrt(R) * (n - 1) / (n - ddof)
        assert T.compare(np.mean(vg, 0), se, Vtrue, z=Z).passed == ok


def _sine_grads_np(y):
    return (C3 * np.cos(y @ W3.T + B3)) @ W3


def test_vargrad_ignores_linear_terms_and_leading_term(key):
    """Claim 2: VarGrad(f + a.x + b) == VarGrad(f) with the same noise; leading term matches
    sigma^2 sum_j H_ij^2 within z*SE + the true truncation error x1.5. SE from the exact
    kurtosis (3-D Gauss-Hermite quadrature in numpy). Mutation caught: leading term x2."""
    s, n = 0.1, 4000
    lin = jnp.array([3.0, -2.0, 7.0])
    g = jax.grad(F3)
    V = ja.vargrad(g, sigma=s, n=n, relative=False)(X3, key)
    V_lin = ja.vargrad(jax.grad(lambda x: F3(x) + lin @ x + 5.0), sigma=s, n=n,
                       relative=False)(X3, key)
    np.testing.assert_allclose(V_lin, V, rtol=1e-8)
    # leading term on the sine network: bias bound = 1.5 x the true truncation error
    s, n = 0.15, 8000
    g = jax.grad(SINE.f)
    V = ja.vargrad(g, sigma=s, n=n, relative=False)(X3, key)
    lead = s**2 * D.hessian_row_sqnorms(SINE.f)(X3)
    bias = 1.5 * np.abs(SINE.vargrad(X3, s) - lead)
    m2, se = _variance_se(_sine_grads_np, X3, s, n, 3)
    np.testing.assert_allclose(m2, SINE.vargrad(X3, s), rtol=1e-9)  # quadrature converged
    assert np.all(bias < 0.2 * lead)
    assert T.compare(V, se, lead, bias_bound=bias, z=Z).passed
    assert not T.compare(V, se, 2 * lead, bias_bound=bias, z=Z).passed


def test_relu_series_is_zero_but_monte_carlo_is_not(key):
    """The series of a ReLU net is its gradient (higher derivatives vanish a.e.), the true
    SmoothGrad is not. SE bound independent of jaxattr: each gradient entry lies in an interval
    of width D_i = sum_m |w2_m W1_mi|, so its sd is <= D_i / 2."""
    r = np.random.default_rng(4)
    W1, w2 = jnp.asarray(r.normal(size=(8, 2))), jnp.asarray(r.normal(size=8))

    def f(x):
        return w2 @ jax.nn.relu(W1 @ x)

    x, s, n = jnp.array([0.3, -0.1]), 0.5, 4000
    with pytest.warns(T.NonSmoothWarning, match=r"non-smooth operations \['relu'\]"):
        series = jax.jit(T.smoothgrad_series(f, s, order=2))(x)
    np.testing.assert_allclose(series, jax.grad(f)(x), atol=1e-14)
    with pytest.warns(T.NonSmoothWarning):
        assert float(jnp.max(jnp.abs(jax.jit(T.vargrad_series(f, s, order=2))(x)))) == 0.0
    V = ja.vargrad(jax.grad(f), sigma=s, n=n, relative=False)(x, key)
    sg = ja.smoothgrad(jax.grad(f), sigma=s, n=n, relative=False)(x, key)
    se_bound = np.abs(np.asarray(w2))[:, None] * np.abs(np.asarray(W1))
    se_bound = se_bound.sum(0) / 2 / np.sqrt(n)
    assert not T.compare(sg, se_bound, series, z=Z).passed
    assert np.all(V > 0)


def _hutchinson_tanh_moments(W1, w2, x, num_probes):
    """numpy, for f = w2 . tanh(W1 x) and Rademacher probes v (s_m = W1_m . v): means and
    standard errors of one-probe samples of grad Lap f (sum_m a_m s_m^2 W1_m, a = w2 tanh''')
    and of sum_j H_ij^2 ((H v)_i^2 = (q_i . v)^2, q_i the Hessian's row i), from
    Cov(s_m^2, s_n^2) = 2 (W1_m . W1_n)^2 - 2 sum_j W1_mj^2 W1_nj^2 and
    Var((q . v)^2) = 2 |q|^4 - 2 sum_j q_j^4 (E v^4 = 1)."""
    t = np.tanh(W1 @ x)
    a = w2 * (1 - t**2) * (6 * t**2 - 2)
    G = W1 @ W1.T
    C = 2 * G**2 - 2 * (W1**2) @ (W1**2).T
    gl_mean = (a * np.diag(G)) @ W1
    gl_se = np.sqrt(np.einsum("m,n,mi,ni,mn->i", a, a, W1, W1, C) / num_probes)
    H = W1.T @ ((w2 * -2 * t * (1 - t**2))[:, None] * W1)  # tanh'' = -2 t (1 - t^2)
    rn_mean = np.sum(H**2, 1)
    rn_se = np.sqrt((2 * rn_mean**2 - 2 * np.sum(H**4, 1)) / num_probes)
    return gl_mean, gl_se, rn_mean, rn_se


def test_hutchinson_series_beyond_the_exact_limit(key):
    """d = 32x32x3 = 3072 > EXACT_MAX_DIM: the Hutchinson SmoothGrad and VarGrad series agree
    with closed-form means within z * closed-form SEs (numpy, above); the means also equal the
    deterministic forward/streamed series. Mutations caught (asserted): the sigma^2 correction
    dropped from the SmoothGrad reference, the VarGrad reference set to zero or doubled."""
    shape, s, n = (32, 32, 3), 0.3, 128
    d = int(np.prod(shape))
    r = np.random.default_rng(5)
    W1, w2 = r.normal(size=(2, d)) * 2 / np.sqrt(d), np.array([1.0, -0.7])

    def f(x):
        return jnp.asarray(w2) @ jnp.tanh(jnp.asarray(W1) @ x.reshape(-1))

    x = r.normal(size=shape)
    xj = jnp.asarray(x)
    est = jax.jit(T.smoothgrad_series(f, s, order=1, method="hutchinson", num_probes=n))(xj, key)
    vg = jax.jit(T.vargrad_series(f, s, order=1, method="hutchinson", num_probes=n))(xj, key)
    assert est.value.shape == shape and vg.value.shape == shape
    gl, gl_se, rn, rn_se = _hutchinson_tanh_moments(W1, w2, x.reshape(-1), n)
    t = np.tanh(W1 @ x.reshape(-1))
    grad = ((w2 * (1 - t**2)) @ W1).reshape(shape)
    sg_ref, sg_se = grad + s**2 / 2 * gl.reshape(shape), s**2 / 2 * gl_se.reshape(shape)
    vg_ref, vg_se = s**2 * rn.reshape(shape), s**2 * rn_se.reshape(shape)
    sg_forward = jax.jit(T.smoothgrad_series(f, s, order=1, method="forward"))(xj)
    np.testing.assert_allclose(sg_forward, sg_ref, rtol=1e-10, atol=1e-14)
    vg_forward = jax.jit(T.vargrad_series(f, s, order=1, method="forward"))(xj)
    np.testing.assert_allclose(vg_forward, vg_ref, rtol=1e-10, atol=1e-16)
    # z = 5 over d entries: the probe means are a few random numbers (rank-2 structure)
    assert T.compare(est.value, sg_se, sg_ref, z=Z).passed
    assert T.compare(vg.value, vg_se, vg_ref, z=Z).passed
    assert not T.compare(est.value, sg_se, grad, z=Z).passed
    assert not T.compare(vg.value, vg_se, np.zeros(shape), z=Z).passed
    assert not T.compare(vg.value, vg_se, 2 * vg_ref, z=Z).passed


def test_compare_and_sample_sizes():
    res = T.compare(np.array([1.0, 2.0]), np.array([0.1, 0.1]), np.array([1.2, 2.0]))
    assert res.passed and res.zscore == pytest.approx(2.0) and res.excess == pytest.approx(-0.3)
    assert not T.compare(1.0, 0.0, 1.1, bias_bound=0.05).passed
    assert T.samples_for_variance(0.1, z=4.0) == 3201
    assert T.samples_for_mean(2.0, 1.0, rel_err=0.1, z=5.0) == 10000


def test_bad_input():
    f = lambda x: jnp.sum(jnp.sin(x))
    x = jnp.zeros(3)
    with pytest.raises(ArgumentError, match=r"^smoothgrad_series: sigma=0.0 is out of range; "
                       r"expected a finite absolute noise standard deviation > 0"):
        T.smoothgrad_series(f, 0.0)
    with pytest.raises(ArgumentError, match=r"^vargrad_series: sigma=-1 is out of range"):
        T.vargrad_series(f, -1)
    with pytest.raises(ArgumentTypeError, match=r"^smoothgrad_series: sigma=<array of shape"):
        T.smoothgrad_series(f, np.ones(2))
    with pytest.raises(ArgumentError, match=r"^smoothgrad_series: order=-1 is < 0"):
        T.smoothgrad_series(f, 0.1, order=-1)
    with pytest.raises(ArgumentTypeError, match=r"^smoothgrad_series: order=1.5 has type float"):
        T.smoothgrad_series(f, 0.1, order=1.5)
    with pytest.raises(ArgumentError, match=r"^vargrad_series: order=3 is not implemented; "
                       r"expected 0, 1 or 2"):
        T.vargrad_series(f, 0.1, order=3)
    with pytest.raises(ArgumentError, match=r"^vargrad_covariance_series: order=0 is < 1"):
        T.vargrad_covariance_series(f, 0.1, order=0)
    with pytest.raises(ArgumentError, match=r"^vargrad_series: method='jet' is not a known"):
        T.vargrad_series(f, 0.1, method="jet")
    with pytest.raises(ArgumentError, match=r"^smoothgrad_series: num_probes=0 is < 1"):
        T.smoothgrad_series(f, 0.1, method="hutchinson", num_probes=0)
    with pytest.raises(ArgumentError, match=r"^vargrad_series: x=.* has d=300 entries; expected "
                       r"d <= 256 for method='exact'\. use method='hutchinson'"):
        T.vargrad_series(f, 0.1, order=2)(jnp.zeros(300))
    with pytest.raises(ArgumentError, match=r"^smoothgrad_series: x=.* has d=3000 entries; "
                       r"expected d <= 2048 .* use method='forward' or method='hutchinson'"):
        T.smoothgrad_series(f, 0.1, order=1)(jnp.zeros(3000))
    with pytest.raises(ArgumentError, match=r"^vargrad_covariance_series: x=.* has d=300 "):
        T.vargrad_covariance_series(f, 0.1, order=2)(jnp.zeros(300))
    with pytest.raises(ArgumentTypeError, match=r"^vargrad_series: key=0 has type int"):
        T.vargrad_series(f, 0.1, method="hutchinson")(x, 0)
    with pytest.raises(ArgumentTypeError, match=r"^smoothgrad_series: key=None is missing"):
        T.smoothgrad_series(f, 0.1, method="hutchinson")(x, None)
    with pytest.raises(ArgumentTypeError, match=r"^smoothgrad_series: f=.* returns \(3,\)"):
        T.smoothgrad_series(lambda x: x, 0.1)(x)
    with pytest.raises(ArgumentError, match=r"^compare: z=0 is out of range"):
        T.compare(1.0, 0.1, 1.0, z=0)
    with pytest.raises(ArgumentError, match=r"^compare: stderr=-0.1 has a negative entry"):
        T.compare(1.0, -0.1, 1.0)
    with pytest.raises(ArgumentError, match=r"^compare: bias_bound=-1.0 has a negative entry"):
        T.compare(1.0, 0.1, 1.0, bias_bound=-1.0)
    with pytest.raises(ArgumentError, match=r"^samples_for_variance: kurtosis=0.5 is out of "):
        T.samples_for_variance(0.1, kurtosis=0.5)
    with pytest.raises(ArgumentError, match=r"^samples_for_mean: effect=0.0 is zero"):
        T.samples_for_mean(1.0, 0.0)


def test_kinks_use_the_engines_relu_detector():
    # jax.nn.relu is found by identity (jaxattr._jaxpr), not by a function's name: a smooth
    # function that happens to be called "relu" is not a kink (name-based detection said it was).
    from jaxattr.theory._smoothness import kinks

    @jax.jit
    def relu(x):  # a user's smooth function with an unlucky name
        return jnp.tanh(x)

    x = jnp.ones(3)
    assert kinks(jax.make_jaxpr(lambda x: jnp.sum(relu(x)))(x).jaxpr) == set()
    assert kinks(jax.make_jaxpr(lambda x: jnp.sum(jax.nn.relu(x)))(x).jaxpr) == {"relu"}
