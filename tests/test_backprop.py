"""Exact properties of the modified-backprop transforms (rules: REFERENCE.md section 1).

The independent numpy reference (hand-written backward passes) lives in
test_backprop_reference.py; here: properties that follow from the rules, every way of writing a
ReLU, control flow, frameworks, composition, and bad input.
"""

import warnings

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

import jaxattr as ja
from jaxattr.errors import (
    ArgumentError,
    AttributionWarning,
    ForwardModeError,
    UnsupportedPrimitiveError,
)

RNG = np.random.default_rng(0)
W1 = jnp.asarray(RNG.normal(size=(60, 7)))
W2 = jnp.asarray(RNG.normal(size=(40, 60)) / 8)
C = jnp.asarray(RNG.normal(size=(40,)))
X = jnp.asarray(RNG.normal(size=(7,)))


def mlp_relu(x):
    return C @ jax.nn.relu(W2 @ jax.nn.relu(W1 @ x))


def mlp_maximum(x):
    h = jnp.maximum(W1 @ x, 0.0)
    return C @ jnp.maximum(0.0, W2 @ h)


def mlp_zeros_like(x):
    h = W1 @ x
    h = jnp.maximum(h, jnp.zeros_like(h))
    h = W2 @ h
    return C @ jnp.maximum(jnp.zeros(h.shape), h)


ZEROS60, ZEROS40 = np.zeros(60), np.zeros(40)


def mlp_const_zeros(x):  # zeros captured from the closure: constants of the jaxpr
    return C @ jnp.maximum(W2 @ jnp.maximum(W1 @ x, ZEROS60), ZEROS40)


def mlp_checkpoint(x):
    return jax.checkpoint(mlp_relu)(x)


def mlp_cond(x):
    h = lax.cond(jnp.sum(x) > -1e9, jax.nn.relu, jnp.tanh, W1 @ x)
    return C @ jax.nn.relu(W2 @ h)


def mlp_jit(x):
    return jax.jit(mlp_relu)(x)


def mlp_flax_relu(x):
    return C @ nn.relu(W2 @ nnx.relu(W1 @ x))


SPELLINGS = [mlp_relu, mlp_maximum, mlp_zeros_like, mlp_const_zeros, mlp_checkpoint, mlp_cond,
             mlp_jit, mlp_flax_relu]
RAW_MAX = (mlp_maximum, mlp_zeros_like, mlp_const_zeros)  # ReLUs only with raw_max=True


def methods():
    return {
        "guided": ja.guided_backprop,
        "deconv": ja.deconvnet,
        "rect98": lambda f: ja.rectgrad(f),
        "rect50": lambda f: ja.rectgrad(f, q=50.0),
        "tau": lambda f: ja.rectgrad(f, tau=0.05),
    }


@pytest.mark.parametrize("method", list(methods()))
@pytest.mark.parametrize("spelling", SPELLINGS[1:], ids=lambda f: f.__name__)
def test_every_relu_spelling_gives_the_same_map(method, spelling):
    m = methods()[method]  # same maths; XLA may reorder float64 sums (checkpoint, cond)
    if spelling in RAW_MAX:  # a raw max(x, 0) is a ReLU by the user's explicit opt-in only
        m = _with_raw_max(method)
    np.testing.assert_allclose(m(spelling)(X), m(mlp_relu)(X), rtol=1e-12, atol=1e-14)


def _with_raw_max(method):
    return {
        "guided": lambda f: ja.guided_backprop(f, raw_max=True),
        "deconv": lambda f: ja.deconvnet(f, raw_max=True),
        "rect98": lambda f: ja.rectgrad(f, raw_max=True),
        "rect50": lambda f: ja.rectgrad(f, q=50.0, raw_max=True),
        "tau": lambda f: ja.rectgrad(f, tau=0.05, raw_max=True),
    }[method]


@pytest.mark.parametrize("method", list(methods()))
@pytest.mark.parametrize("spelling", RAW_MAX, ids=lambda f: f.__name__)
def test_raw_max_without_opt_in_is_the_plain_gradient_and_warns_with_its_lines(method, spelling):
    with pytest.warns(AttributionWarning, match=r"(?s)no ReLU.*max\(x, 0\) at .*test_backprop"
                      r"\.py:\d+.*raw_max=True"):
        got = methods()[method](spelling)(X)
    np.testing.assert_allclose(got, jax.grad(spelling)(X), rtol=1e-12, atol=1e-14)


def test_rules_are_applied_not_the_plain_gradient():
    plain = ja.saliency(mlp_relu)(X)
    for name, m in methods().items():
        assert not np.allclose(m(mlp_relu)(X), plain), name


def test_saliency_is_jax_grad():
    np.testing.assert_array_equal(ja.saliency(mlp_relu)(X), jax.grad(mlp_relu)(X))


def test_tau_zero_equals_guided_backprop():
    guided = ja.guided_backprop(mlp_relu)(X)
    np.testing.assert_array_equal(ja.rectgrad(mlp_relu, tau=0.0)(X), guided)


def test_q100_gives_zeros():
    np.testing.assert_array_equal(ja.rectgrad(mlp_relu, q=100.0)(X), np.zeros(7))


def _single_layer(c):
    """f = sum(c * relu(x)): the map is exactly the rule's R_in at that one ReLU."""
    return lambda x: jnp.sum(c * jax.nn.relu(x))


@pytest.mark.parametrize("q", [0.0, 10.0, 50.0, 80.0, 90.0, 98.0, 99.5])
@pytest.mark.parametrize("n", [101, 200, 1000])
def test_exactly_round_n_minus_1_times_1_minus_q_units_pass(q, n):
    x = jnp.asarray(RNG.uniform(0.5, 2.0, size=n))  # all alive, distinct products
    c = jnp.asarray(RNG.uniform(0.5, 2.0, size=n))
    m = ja.rectgrad(_single_layer(c), q=q)(x)
    expected = int(np.round((n - 1) * (1 - q / 100)))
    assert int(jnp.sum(m != 0)) == expected
    # and the ones that pass are the largest products, with their gradient unchanged
    v = np.asarray(x * c)
    top = np.argsort(-v)[:expected]
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(m)), np.sort(top))
    np.testing.assert_array_equal(np.asarray(m)[top], np.asarray(c)[top])


def test_threshold_is_tf_nearest_on_half_ranks():
    # n = 5, q = 50: (n-1)(1-q/100) = 2 exactly -> sort_desc[2]; two units pass.
    # n = 4, q = 50: 1.5 rounds half-to-even to 2 -> sort_desc[2], two units pass
    # (numpy's 'nearest' would take sort_asc[2] = sort_desc[1]: one unit).
    for n, passing in [(5, 2), (4, 2), (6, 2)]:
        x = jnp.arange(1.0, n + 1.0)
        m = ja.rectgrad(_single_layer(jnp.ones(n)), q=50.0)(x)
        assert int(jnp.sum(m != 0)) == passing, n


def test_q0_is_not_the_plain_gradient_dead_units_pass():
    x = jnp.array([1.0, 2.0, -1.0, 3.0, -2.0])  # units 2 and 4 are dead
    c = jnp.array([-1.0, 1.0, 5.0, 2.0, -3.0])  # a*R = [-1, 2, 0, 6, 0]: min -1 < 0
    m = ja.rectgrad(_single_layer(c), q=0.0)(x)
    plain = ja.saliency(_single_layer(c))(x)
    np.testing.assert_array_equal(plain, [-1.0, 1.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(m, [0.0, 1.0, 5.0, 2.0, -3.0])


def test_signed_strict_comparison():
    x = jnp.array([1.0, 1.0, 1.0])
    c = jnp.array([-3.0, 0.5, 2.0])
    np.testing.assert_array_equal(ja.rectgrad(_single_layer(c), tau=0.5)(x), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(ja.rectgrad(_single_layer(c), tau=-4.0)(x), c)


def test_batch_invariance_under_vmap():
    xs = jnp.asarray(RNG.normal(size=(5, 7)))
    g = jax.jit(jax.vmap(ja.rectgrad(mlp_relu)))
    full = g(xs)
    other = g(xs.at[1:].set(jnp.asarray(RNG.normal(size=(4, 7)) * 10)))
    np.testing.assert_array_equal(full[0], other[0])
    for i in range(5):
        np.testing.assert_allclose(full[i], ja.rectgrad(mlp_relu)(xs[i]), rtol=1e-12, atol=0)


def test_jit_and_eager_agree_and_no_retrace():
    traces = []

    def f(x):
        traces.append(1)
        return mlp_relu(x)

    g = jax.jit(jax.vmap(ja.rectgrad(f)))
    xs = jnp.asarray(RNG.normal(size=(3, 7)))
    a = g(xs)
    n_traces = len(traces)
    b = g(xs + 1.0)
    assert len(traces) == n_traces  # cached on shapes: no second trace
    assert not np.allclose(a, b)
    np.testing.assert_allclose(a, jax.vmap(ja.rectgrad(mlp_relu))(xs), rtol=1e-12)


def test_scan_over_layers_equals_unrolled_loop():
    ws = jnp.asarray(RNG.normal(size=(3, 30, 30)) / 5)
    x = jnp.asarray(RNG.normal(size=30))

    def scanned(x):
        h, _ = lax.scan(lambda h, w: (jax.nn.relu(w @ h), None), x, ws)
        return jnp.sum(h * jnp.arange(30.0))

    def unrolled(x):
        h = x
        for w in ws:
            h = jax.nn.relu(w @ h)
        return jnp.sum(h * jnp.arange(30.0))

    for q in (60.0, 90.0):
        np.testing.assert_allclose(ja.rectgrad(scanned, q=q)(x), ja.rectgrad(unrolled, q=q)(x),
                                   rtol=1e-12, atol=1e-14)


def test_closure_over_traced_params_under_jit():
    def score(w1, x):
        return C @ jax.nn.relu(W2 @ jax.nn.relu(w1 @ x))

    xs = jnp.asarray(RNG.normal(size=(3, 7)))
    inside = jax.jit(lambda w, xs: jax.vmap(ja.rectgrad(lambda x: score(w, x)))(xs))(W1, xs)
    np.testing.assert_allclose(inside, jax.vmap(ja.rectgrad(mlp_relu))(xs), rtol=1e-12)


def test_argnums_and_has_aux():
    def f(w, x):
        s = C @ jax.nn.relu(W2 @ jax.nn.relu(w @ x))
        return s, {"score": s}

    gx, aux = ja.rectgrad(f, argnums=1, has_aux=True)(W1, X)
    np.testing.assert_array_equal(gx, ja.rectgrad(mlp_relu)(X))
    np.testing.assert_allclose(aux["score"], mlp_relu(X))
    gw = ja.guided_backprop(lambda w, x: f(w, x)[0], argnums=0)(W1, X)
    assert gw.shape == W1.shape


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_dtype_and_shape_preserved(dtype):
    x = X.astype(dtype)

    def f(x):
        return (C.astype(dtype) @ jax.nn.relu(W2.astype(dtype) @ jax.nn.relu(W1.astype(dtype) @ x)))

    for m in methods().values():
        out = m(f)(x)
        assert out.shape == x.shape and out.dtype == dtype


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        f64 = {"param_dtype": jnp.float64}
        x = nn.relu(nn.Conv(6, (3, 3), padding="SAME", **f64)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(6, (3, 3), padding="SAME", **f64)(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(4, **f64)(nn.relu(nn.Dense(32, **f64)(x)))


def _linen_and_plain_cnn():
    model = LinenCNN()
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(3, 8, 8, 2)))  # not the shared RNG:
    # the input must not depend on which tests ran before (with the padding trick an 8x8 input
    # can leave no kept unit inside the ring, a correct all-zero map this test cannot use)
    params = model.init(jax.random.key(0), x[:1])
    p = params["params"]

    def plain(xi):  # the same network by hand in jax.lax, with raw maximum(x, 0) ReLUs
        def conv(h, layer):
            out = lax.conv_general_dilated(h[None], p[layer]["kernel"], (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return out[0] + p[layer]["bias"].reshape(1, 1, -1)

        h = jnp.maximum(conv(xi, "Conv_0"), 0.0)
        h = lax.reduce_window(h, -jnp.inf, lax.max, (2, 2, 1), (2, 2, 1), "VALID")
        h = jnp.maximum(conv(h, "Conv_1"), 0.0).reshape(-1)
        # flax names submodules in construction order: Dense(4) is Dense_0, Dense(32) Dense_1
        h = jnp.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0.0)
        return jnp.max(h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])

    def linen(xi):
        return jnp.max(model.apply(params, xi[None])[0])

    return linen, plain, x


@pytest.mark.parametrize("kw", [{}, {"q": 80.0}, {"maxpool": "prr"}, {"padding_trick": True}])
def test_flax_linen_model_unchanged_matches_hand_written_net(kw):
    linen, plain, x = _linen_and_plain_cnn()
    a = jax.jit(jax.vmap(ja.rectgrad(linen, **kw)))(x)
    b = jax.vmap(ja.rectgrad(plain, raw_max=True, **kw))(x)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert float(jnp.abs(a).sum()) > 0


def test_flax_nnx_and_equinox_models():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(7, 60, rngs=rngs, param_dtype=jnp.float64)
            self.l2 = nnx.Linear(60, 1, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))[0]

    net = Net(nnx.Rngs(0))

    def by_hand(x):
        h = jnp.maximum(x @ net.l1.kernel[...] + net.l1.bias[...], 0.0)
        return (h @ net.l2.kernel[...] + net.l2.bias[...])[0]

    for name, m in methods().items():
        np.testing.assert_allclose(m(net)(X), _with_raw_max(name)(by_hand)(X), rtol=1e-12)

    mlp = eqx.nn.MLP(7, "scalar", 50, 2, activation=jax.nn.relu, key=jax.random.key(0))

    def eqx_by_hand(x):
        h = x
        for layer in mlp.layers[:-1]:
            h = jnp.maximum(layer.weight @ h + layer.bias, 0.0)
        return jnp.reshape(mlp.layers[-1].weight @ h + mlp.layers[-1].bias, ())

    np.testing.assert_allclose(ja.rectgrad(mlp, q=90.0)(X),
                               ja.rectgrad(eqx_by_hand, q=90.0, raw_max=True)(X), rtol=1e-10)


def test_prr_conserves_relevance_over_non_overlapping_windows():
    x = jnp.asarray(RNG.uniform(0.1, 1.0, size=(8, 8, 3)))
    c = jnp.asarray(RNG.normal(size=(4, 4, 3)))

    def f(x):
        pooled = lax.reduce_window(jax.nn.relu(x), -jnp.inf, lax.max, (2, 2, 1), (2, 2, 1), "VALID")
        return jnp.sum(c * pooled)

    m = ja.rectgrad(f, tau=-1e30, maxpool="prr")(x)  # tau=-1e30: every unit passes the ReLU
    window_sums = m.reshape(4, 2, 4, 2, 3).sum(axis=(1, 3))
    np.testing.assert_allclose(window_sums, c, rtol=1e-12)
    # proportional: inside a window, R_i / x_i is constant
    ratio = (m / x).reshape(4, 2, 4, 2, 3)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1, :, :1], ratio.shape), rtol=1e-10)
    # the default routes everything to the window's winner instead
    winner = ja.rectgrad(f, tau=-1e30)(x)
    assert int(jnp.sum(winner != 0)) == 4 * 4 * 3


def test_padding_trick_zeros_outer_ring_of_same_conv_output_gradient():
    k = jnp.asarray(RNG.normal(size=(3, 3, 2, 4)))
    c = jnp.asarray(RNG.normal(size=(6, 6, 4)))
    x = jnp.asarray(RNG.uniform(size=(6, 6, 2)))

    def conv(x):
        return lax.conv_general_dilated(x[None], k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]

    def f(x):  # tau=-1e30 lets everything through the ReLU: only the trick acts
        return jnp.sum(c * jax.nn.relu(conv(x)))

    ring = np.ones((6, 6, 1))
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = 0
    _, vjp = jax.vjp(conv, x)
    expected = vjp(c * ring)[0]
    np.testing.assert_allclose(ja.rectgrad(f, tau=-1e30, padding_trick=True)(x), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(ja.rectgrad(f, tau=-1e30)(x), vjp(c)[0], rtol=1e-12)

    def valid(x):  # VALID convs are untouched by the trick
        out = lax.conv_general_dilated(x[None], k, (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        return jnp.sum(jax.nn.relu(out))

    np.testing.assert_array_equal(ja.rectgrad(valid, tau=-1e30, padding_trick=True)(x),
                                  ja.rectgrad(valid, tau=-1e30)(x))


def test_not_relus_are_left_alone():
    def f(x):
        y = jax.nn.relu6(x) + jnp.clip(x, 0.0, 6.0) + jax.nn.leaky_relu(x)
        y = y + lax.reduce_window(x, -jnp.inf, lax.max, (2,), (1,), "VALID").sum()
        return jnp.sum(y * jnp.maximum(x, x[::-1]))

    x = jnp.linspace(-3.0, 8.0, 7)
    with pytest.warns(AttributionWarning, match="contains no ReLU"):
        out = ja.guided_backprop(f)(x)
    np.testing.assert_allclose(out, jax.grad(f)(x), rtol=1e-12)


def test_times_input_is_rectgrad_times_x():
    g = ja.times_input(ja.rectgrad(mlp_relu))
    np.testing.assert_array_equal(g(X), ja.rectgrad(mlp_relu)(X) * X)


def test_user_custom_vjp_keeps_its_rule_and_warns():
    @jax.custom_vjp
    def block(h):
        return jax.nn.relu(h)

    block.defvjp(lambda h: (block(h), h), lambda h, g: (2.0 * g,))

    def f(x):
        return C @ jax.nn.relu(W2 @ block(W1 @ x))

    with pytest.warns(AttributionWarning, match="keep that function's own backward rule"):
        out = ja.guided_backprop(f)(X)

    def expected(x):
        def relu_then_guided(h):
            return C @ jax.nn.relu(W2 @ h)

        h = W1 @ x
        r = ja.guided_backprop(relu_then_guided)(jax.nn.relu(h))
        return W1.T @ (2.0 * r)

    np.testing.assert_allclose(out, expected(X), rtol=1e-12)


def test_rectgrad_composes_with_checkpoint_and_scan_outside():
    xs = jnp.asarray(RNG.normal(size=(4, 7)))
    g = ja.rectgrad(mlp_relu)
    _, ys = lax.scan(lambda c, x: (c, jax.checkpoint(g)(x)), 0.0, xs)
    np.testing.assert_allclose(ys, jax.vmap(g)(xs), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Bad input


def test_non_scalar_score_rejected():
    with pytest.raises(TypeError, match="rectgrad: f=.* expected f to return a real floating"):
        ja.rectgrad(lambda x: jax.nn.relu(x))(X)
    with pytest.raises(TypeError, match="saliency: f=.* expected f to return a real floating"):
        ja.saliency(lambda x: x * 2)(X)


@pytest.mark.parametrize("bad", [jnp.arange(7), jnp.ones(7, bool)])
def test_integer_or_boolean_input_rejected(bad):
    for m in [ja.saliency, *methods().values()]:
        with pytest.raises(TypeError, match="argument 0=.* has dtype .* floating-point"):
            m(mlp_relu)(bad)


@pytest.mark.parametrize("q", [-1.0, 100.5, float("nan"), "98"])
def test_q_outside_range_rejected(q):
    with pytest.raises(ArgumentError, match="rectgrad: q=.* expected a percentile in \\[0, 100\\]"):
        ja.rectgrad(mlp_relu, q=q)


def test_q_and_tau_together_rejected():
    with pytest.raises(ArgumentError, match="rectgrad: tau=0.0 was given together with q=90.0"):
        ja.rectgrad(mlp_relu, q=90.0, tau=0.0)
    with pytest.raises(ArgumentError, match="rectgrad: tau=inf is not finite"):
        ja.rectgrad(mlp_relu, tau=float("inf"))
    with pytest.raises(ArgumentError, match="rectgrad: maxpool='avg' is not a known option"):
        ja.rectgrad(mlp_relu, maxpool="avg")


def test_no_relu_warns():
    with pytest.warns(AttributionWarning, match="contains no ReLU.*plain gradient"):
        out = ja.rectgrad(lambda x: jnp.sum(jnp.tanh(x)))(X)
    np.testing.assert_allclose(out, 1 - jnp.tanh(X) ** 2)


def test_tiny_layer_warns_and_gives_zero():
    f = _single_layer(jnp.arange(1.0, 21.0))
    with pytest.warns(AttributionWarning, match=r"shape \(20,\) has only 20 units"):
        out = ja.rectgrad(f, q=98.0)(jnp.ones(20))
    np.testing.assert_array_equal(out, np.zeros(20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ja.rectgrad(f, q=100.0)(jnp.ones(20))  # asked for zeros: no warning


def test_tiny_layer_warning_is_true_on_a_residual_block():
    # w @ (x + W2 @ relu(W1 @ x)), 8 hidden units: at q=98 the ReLU passes nothing, but the skip
    # connection still carries the gradient, so the map is exactly w (not zero).
    w1, w2 = jnp.asarray(RNG.normal(size=(8, 7))), jnp.asarray(RNG.normal(size=(7, 8)))
    w = jnp.asarray(RNG.normal(size=(7,)))

    def f(x):
        return w @ (x + w2 @ jax.nn.relu(w1 @ x))

    with pytest.warns(AttributionWarning, match=r"only 8 units.*no gradient flows back through "
                      r"that layer \(only around it") as record:
        out = ja.rectgrad(f, q=98.0)(X)
    assert not any("map will be zero" in str(r.message) for r in record)
    np.testing.assert_allclose(out, w, rtol=1e-12)


@pytest.mark.parametrize("transform", [jax.jacfwd, jax.hessian, jax.grad])
def test_forward_mode_nesting_explained(transform):
    g = ja.rectgrad(mlp_relu)
    target = (lambda x: jnp.sum(g(x))) if transform is jax.grad else g
    with pytest.raises(ForwardModeError, match="backward-only"):
        transform(target)(X)
    with pytest.raises(ForwardModeError, match="backward-only"):
        jax.jvp(ja.guided_backprop(mlp_relu), (X,), (X,))


def test_saliency_stays_differentiable():
    h = jax.hessian(lambda x: jnp.sum(jnp.sin(x) ** 2))(X)
    np.testing.assert_allclose(jax.jacfwd(ja.saliency(lambda x: jnp.sum(jnp.sin(x) ** 2)))(X), h)


def test_unsupported_higher_order_primitive_named():
    # custom_linear_solve is a higher-order primitive the engine does not rebuild: a ReLU in its
    # solve must raise, not keep its plain rule (mutation: bind it unchanged -> no raise).
    def f(x):
        b = W1 @ x
        sol = lax.custom_linear_solve(lambda v: 2.0 * v, b, lambda mv, r: jax.nn.relu(r) / 2.0)
        return jnp.sum(sol)

    with pytest.raises(UnsupportedPrimitiveError, match="'custom_linear_solve'.*contains a ReLU"):
        ja.rectgrad(f)(X)


def test_while_loop_bodies_are_followed():
    def scale(x):  # a data-dependent while loop (forward only) holding a ReLU
        return lax.while_loop(lambda s: s < 10.0, lambda s: s + jnp.sum(jax.nn.relu(x)) + 1.0, 0.0)

    def f(x):
        return mlp_relu(x) * lax.stop_gradient(scale(x))

    s = scale(X)
    assert float(s) >= 10.0
    np.testing.assert_allclose(ja.rectgrad(f, q=90.0)(X), s * ja.rectgrad(mlp_relu, q=90.0)(X),
                               rtol=1e-12)
    np.testing.assert_allclose(ja.guided_backprop(f)(X), s * ja.guided_backprop(mlp_relu)(X),
                               rtol=1e-12)


def test_composes_with_noise_transforms_under_jit_and_vmap(key):
    rect = ja.rectgrad(mlp_relu, q=90.0)
    sg = jax.jit(jax.vmap(ja.smoothgrad(rect, sigma=0.1, n=4, chunk=2, relative=False)))
    xs = jnp.asarray(RNG.normal(size=(2, 7)))
    keys = jax.random.split(key, 2)
    out = sg(xs, keys)
    for b in range(2):
        noisy = [xs[b] + 0.1 * jax.random.normal(jax.random.fold_in(keys[b], i), (7,))
                 for i in range(4)]
        expected = np.mean([np.asarray(rect(z)) for z in noisy], axis=0)
        np.testing.assert_allclose(out[b], expected, rtol=1e-10, atol=1e-12)
