"""Tests for jaxattr.path.integrated_gradients: exactness on linear functions, Captum node
placement, convergence orders of the completeness error (fitted log-log slopes), chunking,
composition with vmap/jit and modified backprop, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.errors import ArgumentError
from jaxattr.path import _quadrature

METHODS = ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]

U = np.array([0.3, -0.7, 0.5])
V = np.array([1.5, 2.0, -1.0])


def f_jax(x):
    return jnp.sum(jnp.sin(jnp.asarray(V) * x)) + (jnp.asarray(U) @ x) ** 2


def grad_np(x):
    return V * np.cos(V * x) + 2 * (U @ x) * U


def f_np(x):
    return np.sum(np.sin(V * x)) + (U @ x) ** 2


X = np.array([0.9, -1.1, 1.6])
X0 = np.array([0.2, 0.1, -0.3])


@pytest.mark.parametrize("method", METHODS)
def test_linear_function_is_exact(method):
    """Weights summing to 1 make IG exact for f = w.x + c (Captum's trapezoid weights do not)."""
    w = jnp.array([0.5, -2.0, 3.0])
    ig = ja.integrated_gradients(
        lambda x: w @ x + 4.0, baseline=X0, steps=5, method=method, return_delta=True
    )
    attr, delta = ig(jnp.asarray(X))
    np.testing.assert_allclose(attr, (X - X0) * np.asarray(w), rtol=1e-14)
    assert abs(float(delta)) < 1e-13


def test_nodes_and_weights_follow_captum_with_correct_trapezoid():
    n = 5
    k = np.arange(n)
    expected = {
        "riemann_left": (k / n, np.full(n, 1 / n)),
        "riemann_right": ((k + 1) / n, np.full(n, 1 / n)),
        "riemann_middle": ((k + 0.5) / n, np.full(n, 1 / n)),
        "riemann_trapezoid": (k / (n - 1), np.array([0.5, 1, 1, 1, 0.5]) / (n - 1)),
        # Gauss-Legendre on [0, 1]: roots of the shifted Legendre polynomial P5(2t - 1)
        "gausslegendre": (
            0.5
            + 0.5
            * np.array(
                [
                    -0.9061798459386640,
                    -0.5384693101056831,
                    0.0,
                    0.5384693101056831,
                    0.9061798459386640,
                ]
            ),
            0.5
            * np.array(
                [
                    0.2369268850561891,
                    0.4786286704993665,
                    0.5688888888888889,
                    0.4786286704993665,
                    0.2369268850561891,
                ]
            ),
        ),
    }
    for method, (nodes, weights) in expected.items():
        got_nodes, got_weights = _quadrature(method, n)
        np.testing.assert_allclose(got_nodes, nodes, rtol=1e-14, atol=1e-15, err_msg=method)
        np.testing.assert_allclose(got_weights, weights, rtol=1e-14, err_msg=method)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_trapezoid"])
def test_attribution_equals_hand_written_quadrature(method):
    n = 7
    nodes, weights = _quadrature(method, n)
    avg = sum(w * grad_np(X0 + t * (X - X0)) for t, w in zip(nodes, weights, strict=True))
    attr, delta = ja.integrated_gradients(
        f_jax, baseline=X0, steps=n, method=method, chunk=3, return_delta=True
    )(jnp.asarray(X))
    np.testing.assert_allclose(attr, (X - X0) * avg, rtol=1e-13)
    np.testing.assert_allclose(delta, f_np(X) - f_np(X0) - np.sum((X - X0) * avg), atol=1e-13)


@pytest.mark.parametrize(
    "method, order",
    [("riemann_left", 1), ("riemann_right", 1), ("riemann_middle", 2), ("riemann_trapezoid", 2)],
)
def test_completeness_error_order(method, order):
    """|delta| ~ C steps^-order: fitted log-log slope within 0.1 of the documented order."""
    steps = np.array([16, 32, 64, 128])
    deltas = [
        abs(
            float(
                ja.integrated_gradients(
                    f_jax, baseline=X0, steps=int(s), method=method, return_delta=True
                )(jnp.asarray(X))[1]
            )
        )
        for s in steps
    ]
    slope = np.polyfit(np.log(steps), np.log(deltas), 1)[0]
    assert abs(slope + order) < 0.1, (slope, deltas)


def test_gauss_legendre_converges_exponentially_and_is_exact_for_polynomials():
    deltas = [
        abs(
            float(
                ja.integrated_gradients(f_jax, baseline=X0, steps=s, return_delta=True)(
                    jnp.asarray(X)
                )[1]
            )
        )
        for s in (2, 4, 8)
    ]
    assert deltas[1] < 1e-2 * deltas[0] and deltas[2] < 1e-6 * deltas[1] and deltas[2] < 1e-12
    # degree-5 path integrand (f of degree 6): exact with 3 nodes, not with 2
    poly = lambda x: jnp.sum(x**6) + jnp.prod(x) * x[0]
    exact = lambda s: ja.integrated_gradients(poly, baseline=X0, steps=s, return_delta=True)(
        jnp.asarray(X)
    )[1]
    assert abs(float(exact(3))) < 1e-12 < 1e-6 < abs(float(exact(2)))


def test_chunk_does_not_change_result_and_float32_keeps_precision():
    ref = ja.integrated_gradients(f_jax, baseline=X0, steps=20)(jnp.asarray(X))
    for chunk in (3, 20):
        got = ja.integrated_gradients(f_jax, baseline=X0, steps=20, chunk=chunk)(jnp.asarray(X))
        np.testing.assert_allclose(got, ref, rtol=1e-13)
    x32 = jnp.asarray(X, jnp.float32)
    f32 = lambda x: jnp.sum(jnp.sin(jnp.asarray(V, jnp.float32) * x))
    attr32 = ja.integrated_gradients(f32, steps=20, chunk=7)(x32)
    assert attr32.dtype == jnp.float32
    np.testing.assert_allclose(attr32, np.sin(V * X), rtol=1e-5)  # IG of sin(v x) from 0: exact


def test_vmap_per_example_baseline_and_jit():
    xs = jnp.stack([jnp.asarray(X), jnp.asarray(X0)])
    bs = jnp.stack([jnp.asarray(X0), jnp.zeros(3)])
    batched = jax.jit(jax.vmap(lambda x, b: ja.integrated_gradients(f_jax, baseline=b)(x)))(xs, bs)
    for i in range(2):
        single = ja.integrated_gradients(f_jax, baseline=bs[i])(xs[i])
        np.testing.assert_allclose(batched[i], single, rtol=1e-13)
    scalar_baseline = ja.integrated_gradients(f_jax, baseline=0.5, steps=6)(jnp.asarray(X))
    full_baseline = ja.integrated_gradients(f_jax, baseline=np.full(3, 0.5), steps=6)(
        jnp.asarray(X)
    )
    np.testing.assert_allclose(scalar_baseline, full_baseline, rtol=1e-14)


def test_modified_backprop_gradient():
    """gradient= swaps jax.grad for a transform: IG with guided backprop equals the quadrature of
    guided-backprop maps at the same nodes, and a scaled gradient scales IG."""
    w1 = jnp.array([[1.0, -2.0, 0.5], [-0.3, 0.8, 1.2], [0.7, 0.1, -1.0]])
    net = lambda x: jnp.sum(jnp.array([1.0, -1.0, 2.0]) @ jax.nn.relu(w1 @ x))
    x, x0 = jnp.asarray(X), jnp.asarray(X0)
    nodes, weights = _quadrature("riemann_middle", 9)
    gb = ja.guided_backprop(net)
    avg = sum(w * np.asarray(gb(x0 + t * (x - x0))) for t, w in zip(nodes, weights, strict=True))
    got = ja.integrated_gradients(
        net, baseline=x0, steps=9, method="riemann_middle", gradient=ja.guided_backprop
    )(x)
    np.testing.assert_allclose(got, (X - X0) * avg, rtol=1e-12)
    doubled = ja.integrated_gradients(
        f_jax, steps=6, gradient=lambda f: lambda x: 2 * jax.grad(f)(x)
    )
    plain = ja.integrated_gradients(f_jax, steps=6)
    np.testing.assert_allclose(doubled(x), 2 * plain(x), rtol=1e-14)


def test_rectgrad_gradient():
    """RectGrad with tau=0 is Guided Backprop on a ReLU net, so their IGs agree."""
    w1 = jnp.asarray(np.random.default_rng(0).normal(size=(40, 3)))
    net = lambda x: jnp.sum(jnp.linspace(-1.0, 1.0, 40) @ jax.nn.relu(w1 @ x))
    x = jnp.asarray(X)
    rect = ja.integrated_gradients(net, steps=5, gradient=lambda f: ja.rectgrad(f, tau=0.0))(x)
    guided = ja.integrated_gradients(net, steps=5, gradient=ja.guided_backprop)(x)
    np.testing.assert_allclose(rect, guided, rtol=1e-12)
    plain = ja.integrated_gradients(net, steps=5)(x)
    assert not np.allclose(guided, plain)  # the swap really happened


@pytest.mark.parametrize(
    "opts, error, match",
    [
        (dict(steps=0), ArgumentError, "integrated_gradients: steps=0 is < 1"),
        (
            dict(steps=1, method="riemann_trapezoid"),
            ArgumentError,
            r"steps=1 is < 2; expected an int >= 2 for method='riemann_trapezoid'",
        ),
        (dict(steps=2.0), TypeError, "integrated_gradients: steps=2.0 has type float"),
        (dict(method="simpson"), ArgumentError, "method='simpson' is not a known option"),
        (dict(steps=10, chunk=11), ArgumentError, "chunk=11 is larger than steps=10"),
        (dict(steps=10, chunk=0), ArgumentError, "chunk=0 is < 1"),
        (dict(gradient="guided"), TypeError, "gradient='guided' has type str"),
        (dict(gradient=np.ones(3)), TypeError, r"gradient=<array.* not gradient=ja.rectgrad\(f\)"),
        (dict(gradient=ja.rectgrad(f_jax)), TypeError, "is a map function.*gradient=ja.rectgrad"),
    ],
)
def test_bad_options(opts, error, match):
    with pytest.raises(error, match=match):
        ja.integrated_gradients(f_jax, **opts)


def test_bad_input():
    with pytest.raises(TypeError, match="integrated_gradients: f=3.0 has type float"):
        ja.integrated_gradients(3.0)
    with pytest.raises(ArgumentError, match=r"baseline=.* has shape \(2,\); expected a scalar"):
        ja.integrated_gradients(f_jax, baseline=jnp.zeros(2), steps=2)(jnp.asarray(X))
    with pytest.raises(TypeError, match="integrated_gradients: x=.* has dtype int"):
        ja.integrated_gradients(f_jax, steps=2)(jnp.arange(3))
    bad_gradient = lambda f: lambda x: jnp.zeros(2)
    with pytest.raises(ArgumentError, match=r"gradient=.* returns maps of shape \(2,\)"):
        ja.integrated_gradients(f_jax, steps=2, gradient=bad_gradient)(jnp.asarray(X))
