"""DeepLIFT (rescale rule) and DeepLIFT-SHAP (jaxattr.difference, rule set jaxattr._rules_deeplift).

Parity with Captum 0.9.0 (tests/reference/deeplift_{mlp,cnn}.npz, written by
tests/reference/make_captum_deeplift.py; float64, x64 is on in tests/conftest.py), summation to
delta, the pairing of input and baseline rows, the errors, and jit/vmap/smoothgrad.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxattr as ja
from jaxattr.difference import deeplift, deeplift_shap
from jaxattr.errors import ArgumentError, ForwardModeError, UnsupportedPrimitiveError

REF = Path(__file__).parent / "reference"


# ---------------------------------------------------------------------------------------------
# The reference models in JAX (torch layouts: Linear (out, in), Conv2d OIHW, NCHW inputs).


def _mlp(w):
    def logits(x):
        h = jax.nn.relu(w["w/fc1.weight"] @ x + w["w/fc1.bias"])
        h = jax.nn.relu(w["w/fc2.weight"] @ h + w["w/fc2.bias"])
        return w["w/fc3.weight"] @ h + w["w/fc3.bias"]

    return logits


def _conv(x, k, b):
    y = lax.conv_general_dilated(x[None], k, (1, 1), ((1, 1), (1, 1)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]
    return y + b[:, None, None]


def _cnn(w):
    def logits(x):  # x: (2, 8, 8)
        h = jax.nn.relu(_conv(x, w["w/conv1.weight"], w["w/conv1.bias"]))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2), (1, 2, 2), "VALID")  # MaxPool2d
        h = jax.nn.relu(_conv(h, w["w/conv2.weight"], w["w/conv2.bias"]))
        h = lax.reduce_window(h, 0.0, lax.add, (1, 2, 2), (1, 2, 2), "VALID") / 4.0  # AvgPool
        return w["w/fc.weight"] @ h.reshape(-1) + w["w/fc.bias"]

    return logits


def _load(model):
    z = dict(np.load(REF / f"deeplift_{model}.npz"))
    w = {k: jnp.asarray(v) for k, v in z.items() if k.startswith("w/")}
    return z, (_mlp if model == "mlp" else _cnn)(w)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _score(logits):
    return lambda x, t: logits(x)[t]


# ---------------------------------------------------------------------------------------------
# Parity with Captum.


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_models_reproduce_the_reference_logits(model):
    z, logits = _load(model)
    got = jax.vmap(logits)(jnp.asarray(z["x"]))
    assert _rel(got, z["logits"]) < 1e-12


# Captum 0.9.0 skips its max-pool rule where a MaxPool module directly consumes a ReLU module's
# output (make_captum_deeplift.py): the CNN's plain maps are maxpool="gradient", the "_maxrule"
# maps (an extra tensor between the modules) Captum's max-pool rule, jaxattr's default.
CAPTUM_CASES = [("mlp", "", "deeplift"), ("cnn", "", "gradient"),
                ("cnn", "_maxrule", "deeplift")]


@pytest.mark.parametrize(("model", "suffix", "maxpool"), CAPTUM_CASES)
def test_deeplift_matches_captum(model, suffix, maxpool):
    z, logits = _load(model)
    x, t = jnp.asarray(z["x"]), jnp.asarray(z["target"])
    g = deeplift(_score(logits), jnp.asarray(z["baseline"][0]), maxpool=maxpool)
    got = jax.vmap(g)(x, t)
    assert got.dtype == jnp.float64
    assert _rel(got, z["deeplift" + suffix]) < 1e-6
    shap = jax.vmap(deeplift_shap(_score(logits), jnp.asarray(z["baselines_shap"]),
                                  maxpool=maxpool))(x, t)
    assert _rel(shap, z["deeplift_shap" + suffix]) < 1e-6
    if maxpool == "gradient":
        return  # summation-to-delta needs the max-pool rule
    # summation to delta: sum(map) = f(x) - f(x0), and f(x) - mean_k f(b_k) for SHAP
    rows, axes = np.arange(len(t)), tuple(range(1, x.ndim))
    f_x = z["logits"][rows, z["target"]]
    want = f_x - z["logits_baseline"][0, z["target"]]
    np.testing.assert_allclose(np.asarray(got.sum(axes)), want, rtol=1e-6, atol=1e-12)
    want = f_x - z["logits_baselines_shap"][:, z["target"]].mean(0)
    np.testing.assert_allclose(np.asarray(shap.sum(axes)), want, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Rules beyond the reference models.


def test_pairing_of_inputs_and_baselines():
    # Two baselines that differ: each pair's multiplier must come from its own baseline. The
    # map is (x - b_k) * m_k averaged; with m_k = (h(x) - h(b_k)) / (x - b_k) per coordinate.
    h = lambda x: jnp.sum(jnp.tanh(x) * jnp.array([1.0, 2.0, 3.0]))
    x = jnp.array([0.7, -1.2, 2.0])
    bs = jnp.array([[0.1, 0.2, -0.3], [-1.0, 1.5, 0.4]])
    want = np.mean([(np.tanh(x) - np.tanh(b)) * np.array([1.0, 2.0, 3.0]) for b in bs], 0)
    np.testing.assert_allclose(deeplift_shap(h, bs)(x), want, rtol=1e-12)
    for b in bs:
        np.testing.assert_allclose(deeplift(h, b)(x), (np.tanh(x) - np.tanh(b)) *
                                   np.array([1.0, 2.0, 3.0]), rtol=1e-12)


def test_rescale_rule_of_activations_and_the_gradient_fallback():
    w = jnp.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.3]])

    def f(x):
        z = w @ x
        return jnp.sum(jax.nn.gelu(z) + jax.nn.silu(z) + jnp.exp(0.1 * z)
                       + jnp.maximum(z, 0.2) + jax.nn.sigmoid(z) + jax.nn.softplus(z))

    x, b = jnp.array([0.3, -0.8]), jnp.array([-0.5, 0.25])
    a = deeplift(f, b)(x)
    np.testing.assert_allclose(float(a.sum()), float(f(x) - f(b)), rtol=1e-12)
    # x == baseline in one coordinate: the gradient there, the same as the plain gradient
    x2 = jnp.array([0.3, 0.25])
    a2 = deeplift(f, b)(x2)
    assert float(a2[1]) == 0.0 and np.isfinite(np.asarray(a2)).all()
    np.testing.assert_allclose(float(a2.sum()), float(f(x2) - f(b)), rtol=1e-12)
    # at x == baseline everywhere the multipliers are the gradient (eps fallback)
    np.testing.assert_allclose(deeplift(f, x)(x), 0.0)


def test_every_jax_nn_activation_sums_to_delta():
    from jaxattr._units import _ACTIVATIONS

    w = jnp.array([[1.0, -2.0, 0.3], [0.5, 1.0, -1.0], [-1.0, 0.3, 2.0], [0.2, 0.2, 0.2]])
    acts = [getattr(jax.nn, n) for n in sorted(_ACTIVATIONS)]

    def f(v):
        z = w @ v
        return sum(jnp.sum(act(z) * jnp.arange(1.0, 5.0)) for act in acts)

    x, b = jnp.array([0.3, -0.8, 1.1]), jnp.array([-0.5, 0.25, 0.1])
    a = deeplift(f, b)(x)
    np.testing.assert_allclose(float(a.sum()), float(f(x) - f(b)), rtol=1e-12)
    # two calls of one activation on one line are grouped by jaxattr._units: split again
    g = lambda v: jnp.sum(jax.nn.gelu(w @ v)) + jnp.sum(jax.nn.gelu(v - 1.0) + jax.nn.gelu(w[0]))
    np.testing.assert_allclose(float(deeplift(g, b)(x).sum()), float(g(x) - g(b)), rtol=1e-12)


def test_flax_model_with_inference_batchnorm_and_pooling():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(3, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=True)(x)  # affine: linear rule
            x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
            x = nn.avg_pool(nn.gelu(nn.Conv(3, (3, 3))(x)), (2, 2), (2, 2))
            return nn.Dense(2)(jnp.tanh(x.reshape(x.shape[0], -1)))

    net = Net()
    x = jax.random.normal(jax.random.key(0), (8, 8, 2))
    params = jax.jit(net.init)(jax.random.key(1), x[None])  # compiled once: faster than eager
    f = lambda v: net.apply(params, v[None])[0, 1]
    bs = 0.5 * jax.random.normal(jax.random.key(2), (2, *x.shape))
    a = deeplift_shap(f, bs)(x)
    want = jax.jit(lambda: f(x) - jnp.mean(jax.vmap(f)(bs)))()
    np.testing.assert_allclose(float(a.sum()), float(want), rtol=1e-5)  # float32 weights

    class LN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.LayerNorm()(nn.Dense(4)(x)))[0]

    ln = LN()
    p = jax.jit(ln.init)(jax.random.key(0), jnp.ones(3))
    with pytest.raises(UnsupportedPrimitiveError, match="normalisation layer 'LayerNorm"):
        deeplift(lambda v: ln.apply(p, v))(jnp.ones(3))


def test_linear_function_equals_gradient_times_delta():
    w = jnp.arange(6.0).reshape(2, 3)
    f = lambda x: jnp.sum(w @ x) + 2.0
    x, b = jnp.array([1.0, -2.0, 3.0]), jnp.array([0.5, 0.5, 0.5])
    np.testing.assert_allclose(deeplift(f, b)(x), jax.grad(f)(x) * (x - b))
    np.testing.assert_allclose(deeplift(f, lambda x: 0.5 * jnp.ones_like(x))(x),
                               jax.grad(f)(x) * (x - b))


def test_jit_and_vmap_equal_eager(key):
    z, logits = _load("mlp")
    x, t = jnp.asarray(z["x"]), jnp.asarray(z["target"])
    g = deeplift(_score(logits))
    eager = np.stack([g(xi, ti) for xi, ti in zip(x, t, strict=True)])  # traced labels
    np.testing.assert_allclose(jax.vmap(g)(x, t), eager, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(g))(x, t), eager, rtol=1e-12)
    np.testing.assert_allclose(g(x[1], int(t[1])), eager[1], rtol=1e-12)  # a static label
    # per-example baselines
    bs = 0.1 * x[::-1]
    per = jax.vmap(lambda xi, ti, bi: deeplift(_score(logits), bi)(xi, ti))(x, t, bs)
    np.testing.assert_allclose(per[2], deeplift(_score(logits), bs[2])(x[2], t[2]), rtol=1e-12)
    # inside smoothgrad (noise transform over any attribution function)
    sg = ja.smoothgrad(deeplift(lambda v: logits(v)[0]), sigma=0.1, n=4)(x[0], key)
    assert sg.shape == x[0].shape and np.isfinite(np.asarray(sg)).all()


def test_float32_and_has_aux_and_argnums():
    w = jnp.array([[1.0, -2.0], [0.5, 1.0]], jnp.float32)
    f = lambda s, x: (jnp.sum(jax.nn.relu(w @ x)) * s, {"h": w @ x})
    x = jnp.array([0.3, 0.9], jnp.float32)
    a, aux = deeplift(f, argnums=1, has_aux=True)(jnp.float32(2.0), x)
    assert a.dtype == jnp.float32 and a.shape == (2,)
    np.testing.assert_allclose(aux["h"], w @ x, rtol=1e-6)
    np.testing.assert_allclose(float(a.sum()), float(f(2.0, x)[0] - f(2.0, 0 * x)[0]),
                               rtol=1e-5)
    # two attributed arguments
    g = lambda u, v: jnp.sum(jnp.tanh(u * 2.0 + v))
    u, v = jnp.array([0.5, -1.0]), jnp.array([0.2, 0.1])
    au, av = deeplift(g, argnums=(0, 1))(u, v)
    np.testing.assert_allclose(float(au.sum() + av.sum()), float(g(u, v) - g(0 * u, 0 * v)),
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Errors.


def test_product_of_two_inputs_raises_naming_mul_and_line():
    f = lambda x: jnp.sum(x * jnp.sin(x))  # the line the error must name
    with pytest.raises(UnsupportedPrimitiveError, match=r"'mul'.*test_deeplift\.py:\d+"):
        deeplift(f)(jnp.array([1.0, 2.0]))


def test_unsupported_operations_raise():
    x = jnp.array([1.0, 2.0, 0.5])
    with pytest.raises(UnsupportedPrimitiveError, match="softmax"):
        deeplift(lambda v: jax.nn.softmax(v)[0])(x)
    with pytest.raises(UnsupportedPrimitiveError, match="reduce_max"):
        deeplift(lambda v: jnp.max(v))(x)
    with pytest.raises(UnsupportedPrimitiveError, match="step function"):
        deeplift(lambda v: jnp.sum(jnp.where(v > 1.0, v, 0.0)))(x)

    def rnn(v):
        return lax.scan(lambda c, xi: (jnp.tanh(c + xi), None), 0.0, v)[0]

    with pytest.raises(UnsupportedPrimitiveError, match=r"'scan'.*'tanh'"):
        deeplift(rnn)(x)
    c = lambda v: lax.cond(v[0] > 0, jnp.sum, lambda u: 2.0 * jnp.sum(u), v)
    with pytest.raises(UnsupportedPrimitiveError, match="'cond'"):
        deeplift(c)(x)
    # a linear loop is fine
    lin = lambda v: lax.scan(lambda c, xi: (0.5 * c + xi, None), 0.0, v)[0]
    np.testing.assert_allclose(deeplift(lin)(x), jax.grad(lin)(x) * x)


def test_argument_errors():
    f = lambda x: jnp.sum(jnp.tanh(x))
    x = jnp.ones(6)
    with pytest.raises(ArgumentError, match=r"deeplift: baseline=.* has shape \(5,\)"):
        deeplift(f, jnp.zeros(5))(x)
    with pytest.raises(ArgumentError, match="holds 0 baselines"):
        deeplift_shap(f, jnp.zeros((0, 6)))
    with pytest.raises(ArgumentError, match=r"deeplift_shap: baselines=.* has shape \(6,\)"):
        deeplift_shap(f, jnp.zeros(6))(x)
    with pytest.raises(ArgumentError, match="baselines=None is missing"):
        deeplift_shap(f, None)
    with pytest.raises(ArgumentError, match="eps=-1.0 is out of range"):
        deeplift(f, eps=-1.0)
    with pytest.raises(ArgumentError, match="maxpool='prr' is not a known option"):
        deeplift(f, maxpool="prr")
    with pytest.raises(ArgumentError, match="non-scalar"):
        deeplift(lambda v: jnp.tanh(v))(x)
    with pytest.raises(ArgumentError, match="has dtype int"):
        deeplift(f)(jnp.ones(6, jnp.int32))
    with pytest.raises(ForwardModeError, match="backward-only"):
        jax.jacfwd(deeplift(f))(x)
