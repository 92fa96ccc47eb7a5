"""Attribution at a named intermediate (jaxattr.layer): naming, and the methods' definitions.

Parity with Captum on identical weights is in tests/test_layer_captum.py; here: how a value is
named (Flax module path, suffix, checkpoint_name on Equinox/NNX/plain JAX, inside jit and remat,
errors listing the names), the layer gradient against a hand-split model, Grad-CAM++ against a
numpy implementation of the paper's formula, completeness of layer integrated gradients.
"""

import equinox as eqx
import flax.linen as nn
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import checkpoint_name

import jaxattr as ja
from jaxattr.errors import ArgumentError, ArgumentTypeError, UnsupportedPrimitiveError


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="c1")(x))
        x = nn.remat(nn.Conv)(6, (3, 3), name="c2")(x)  # a module under remat
        x = Block(name="blk")(nn.relu(x))
        return nn.Dense(3, name="fc")(x.mean((0, 1)))


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(5, (1, 1), name="inner")(x))


@pytest.fixture(scope="module")
def net():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 8, 2)))
    m = Net()
    v = m.init(jax.random.key(1), x)
    return m, v, x


def _split(m, v, x, y):
    """The same network, cut by hand at c2's output (the reference for the layer gradient)."""
    p = v["params"]

    def head(a):
        h = nn.relu(a)
        h = nn.relu(nn.Conv(5, (1, 1)).apply({"params": p["blk"]["inner"]}, h))
        return nn.Dense(3).apply({"params": p["fc"]}, h.mean((0, 1)))[y]

    a = nn.Conv(6, (3, 3)).apply({"params": p["c2"]},
                                 nn.relu(nn.Conv(4, (3, 3)).apply({"params": p["c1"]}, x)))
    return a, head


@pytest.mark.parametrize("at", ["c2", "Net/c2"])
def test_layer_gradient_is_the_gradient_at_the_module_output(net, at):
    m, v, x = net
    f = lambda x, y: m.apply(v, x)[y]  # noqa: E731
    a, head = _split(m, v, x, 1)
    np.testing.assert_allclose(ja.layer_gradient(f, at)(x, 1), jax.grad(head)(a), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(ja.layer.layer_activation(f, at)(x, 1), a, rtol=1e-12)
    np.testing.assert_allclose(ja.layer_gradient_x_activation(f, at)(x, 1),
                               a * jax.grad(head)(a), rtol=1e-12, atol=1e-14)


def test_a_module_inside_jit_is_found_by_its_joined_path():
    class J(nn.Module):  # the jit body's name stack is relative to the jit's: joined
        @nn.compact
        def __call__(self, x):
            return jnp.sum(nn.jit(Block)(name="blk")(x) * jnp.arange(5.0)[None, None])

    m, x = J(), jnp.ones((2, 2, 3))
    v = m.init(jax.random.key(0), x)
    g = ja.layer_gradient(lambda x: m.apply(v, x), "blk/inner")(x)
    assert g.shape == (2, 2, 5)
    np.testing.assert_allclose(g, jnp.where(ja.layer.layer_activation(
        lambda x: m.apply(v, x), "blk/inner")(x) > 0, jnp.arange(5.0)[None, None], 0.0))


def test_wrong_or_ambiguous_names_list_what_exists(net):
    m, v, x = net
    f = lambda x: m.apply(v, x)[0]  # noqa: E731
    with pytest.raises(ArgumentError, match=r"at='conv9' names no module.*Net/c1, Net/c2"):
        ja.grad_cam(f, "conv9")(x)
    with pytest.raises(ArgumentTypeError, match="at=3"):
        ja.grad_cam(f, 3)

    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return (Block(name="b1")(x) + Block(name="b2")(x)).sum()

    t = Two()
    x1 = jnp.ones((2, 2, 3))
    v2 = t.init(jax.random.key(0), x1)
    with pytest.raises(ArgumentError, match=r"at='inner' is ambiguous.*Two/b1/inner, Two/b2/inner"):
        ja.layer_gradient(lambda x: t.apply(v2, x), "inner")(x1)
    assert ja.layer_gradient(lambda x: t.apply(v2, x), "b2/inner")(x1).shape == (2, 2, 5)


def test_a_module_called_twice_is_taken_at_its_last_call():
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            d = nn.Dense(2, name="d")
            return jnp.sum(d(jnp.tanh(d(x))) * jnp.array([1.0, 2.0]))

    t = Twice()
    v = t.init(jax.random.key(0), jnp.ones(2))
    g = ja.layer_gradient(lambda x: t.apply(v, x), "d")(jnp.ones(2))
    np.testing.assert_allclose(g, [1.0, 2.0])  # the last call's output feeds the score directly


def test_checkpoint_name_on_equinox_nnx_and_plain_jax():
    key = jax.random.key(0)
    mlp = eqx.nn.MLP(3, 2, 8, 2, key=key)

    def eqx_score(x):
        h = checkpoint_name(mlp.layers[0](x), "hidden")
        for layer in mlp.layers[1:]:
            h = layer(jax.nn.relu(h))
        return h[1]

    g = ja.layer_gradient(eqx_score, "hidden")(jnp.ones(3))
    w = jax.grad(lambda h: mlp.layers[2](jax.nn.relu(mlp.layers[1](jax.nn.relu(h))))[1])(
        mlp.layers[0](jnp.ones(3)))
    np.testing.assert_allclose(g, w, rtol=1e-12)

    class N(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.b(checkpoint_name(nnx.relu(self.a(x)), "act"))[0]

    n = N(nnx.Rngs(0))
    gd, st = nnx.split(n)
    f = lambda x: nnx.merge(gd, st)(x)  # noqa: E731
    np.testing.assert_allclose(ja.layer_gradient(f, "act")(jnp.ones(3)), n.b.kernel[...][:, 0],
                               rtol=1e-12)
    with pytest.raises(ArgumentError, match="NNX and plain JAX push no module names"):
        ja.layer_gradient(lambda x: jnp.sum(x * 2.0), "a")(jnp.ones(2))


def test_a_value_inside_a_scan_body_raises():
    def f(x):
        def step(c, _):
            return checkpoint_name(jnp.tanh(c), "h"), None

        return jnp.sum(jax.lax.scan(step, x, None, length=3)[0])

    with pytest.raises(UnsupportedPrimitiveError, match="inside a 'scan' body"):
        ja.layer_gradient(f, "h")(jnp.ones(2))


def test_grad_cam_definition_and_vmap(net):
    m, v, x = net
    f = lambda x, y: m.apply(v, x)[y]  # noqa: E731
    a, head = _split(m, v, x, 2)
    g = jax.grad(head)(a)
    cam = jax.nn.relu(jnp.sum(g.mean((0, 1), keepdims=True) * a, axis=-1))
    np.testing.assert_allclose(ja.grad_cam(f, "c2", upsample=None)(x, 2), cam, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(ja.grad_cam(f, "c2")(x, 2), cam, rtol=1e-12, atol=1e-14)  # same
    xs = jnp.stack([x, -x])
    batched = jax.vmap(ja.grad_cam(f, "c2"))(xs, jnp.array([2, 0]))
    np.testing.assert_allclose(batched[1], ja.grad_cam(f, "c2")(-x, 0), rtol=1e-12, atol=1e-14)


def rel_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _gradcampp_numpy(a, g):
    """Chattopadhay et al. 2018, Eq. 19 with the score's derivatives (HWC arrays)."""
    a, g = np.asarray(a), np.asarray(g)
    num = g ** 2
    den = 2 * g ** 2 + np.sum(a * g ** 3, axis=(0, 1), keepdims=True)
    alpha = np.where(den != 0, num / np.where(den != 0, den, 1), 0)
    w = np.sum(alpha * np.maximum(g, 0), axis=(0, 1))
    return np.einsum("hwc,c->hw", a, w)  # before the final ReLU


def test_grad_cam_pp_equals_the_papers_formula(net):
    m, v, x = net
    f = lambda x, y: m.apply(v, x)[y]  # noqa: E731
    a, head = _split(m, v, x, 2)
    want = _gradcampp_numpy(a, jax.grad(head)(a))
    got = ja.grad_cam_pp(f, "c2", upsample=None, relu=False)(x, 2)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert want.max() > 0
    np.testing.assert_allclose(ja.grad_cam_pp(f, "c2", upsample=None)(x, 2), np.maximum(want, 0),
                               rtol=1e-10, atol=1e-14)
    plain = ja.grad_cam(f, "c2", upsample=None)(x, 2)  # a different weighting: not Grad-CAM
    assert rel_diff(got, plain) > 1e-3


def test_upsampling_is_bilinear_with_half_pixel_centres():
    def f(x):  # layer = a 2x2 average pool of a 4x4 input: upsampled back to 4x4
        a = checkpoint_name(jax.lax.reduce_window(x, 0.0, jax.lax.add, (2, 2, 1), (2, 2, 1),
                                                  "VALID") / 4, "pool")
        return jnp.sum(a * jnp.arange(1.0, 5.0).reshape(2, 2, 1))

    x = jnp.arange(16.0).reshape(4, 4, 1)
    cam = ja.grad_cam(f, "pool", upsample=None)(x)
    up = ja.grad_cam(f, "pool")(x)
    np.testing.assert_allclose(up, jax.image.resize(cam, (4, 4), "bilinear", antialias=False))
    assert up.shape == (4, 4)


def test_layer_integrated_gradients_complete_and_conductance(net):
    m, v, x = net
    f = lambda x, y: m.apply(v, x)[y]  # noqa: E731
    lig = ja.layer_integrated_gradients(f, "c2", steps=32)(x, 1)
    total = f(x, 1) - f(jnp.zeros_like(x), 1)
    np.testing.assert_allclose(lig.sum(), total, rtol=1e-3)  # ReLUs after it: O(1/steps^2)+
    cond = ja.layer_conductance(f, "c2", steps=64)(x, 1)
    assert cond.shape == (8, 8, 6)
    np.testing.assert_allclose(cond.sum(), total, rtol=2e-2)  # conductance completes in the limit


def test_neuron_methods(net):
    m, v, x = net
    f = lambda x: m.apply(v, x)  # noqa: E731
    act = lambda x: ja.layer.layer_activation(f, "c1")(x)[2, 3, 1]  # noqa: E731
    np.testing.assert_allclose(ja.neuron_gradient(f, "c1", (2, 3, 1))(x), jax.grad(act)(x),
                               rtol=1e-12)
    nig = ja.neuron_integrated_gradients(f, "c1", (2, 3, 1), steps=16)(x)
    np.testing.assert_allclose(nig.sum(), act(x) - act(jnp.zeros_like(x)), rtol=1e-6)  # linear
    with pytest.raises(ArgumentError, match="neuron"):
        ja.neuron_gradient(f, "c1", (2, 3))(x)


def test_token_attribution_sums_per_token():
    emb = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)))
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4,)))

    def f(tokens):  # the "embedding output" is named; the score is linear in it
        e = checkpoint_name(emb[tokens], "emb")
        return jnp.sum(jnp.tanh(e @ w))

    t = jnp.array([0, 3, 1])
    e = emb[t]
    want = jnp.sum(e * (jax.grad(lambda e: jnp.sum(jnp.tanh(e @ w)))(e)), axis=1)

    got = ja.token_attribution(f, "emb")(t)  # integer token ids: attributed at the embedding
    np.testing.assert_allclose(got, want, rtol=1e-12)
    l2 = ja.token_attribution(f, "emb", reduce="l2")(t)
    np.testing.assert_allclose(l2, jnp.linalg.norm(e * jax.grad(
        lambda e: jnp.sum(jnp.tanh(e @ w)))(e), axis=1), rtol=1e-12)
    with pytest.raises(ArgumentTypeError, match="dtype int"):
        ja.neuron_gradient(f, "emb", (0, 0))(t)  # differentiates with respect to x itself


def test_composes_with_lax_map_checkpoint_and_the_noise_transforms(net):
    m, v, x = net
    f = lambda x, y: m.apply(v, x)[y]  # noqa: E731
    g = ja.grad_cam(f, "c2")
    xs = jnp.stack([x, 0.5 * x])
    mapped = jax.lax.map(lambda xi: g(xi, 1), xs)  # the map inside a loop body
    np.testing.assert_allclose(mapped, jax.vmap(lambda xi: g(xi, 1))(xs), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.checkpoint(lambda xi: g(xi, 1)))(x), g(x, 1),
                               rtol=1e-12, atol=1e-14)
    sg = ja.smoothgrad(g, sigma=1e-9, n=3)(x, jax.random.key(0), 1)
    np.testing.assert_allclose(sg, g(x, 1), rtol=1e-5, atol=1e-9)
