"""LRP (jaxattr.lrp, jaxattr.relevance) against Zennit and a hand-written AttnLRP, float64.

Parity is checked against reference files (weights and maps as .npz) that committed scripts
wrote by running the reference library: tests/reference/make_zennit_references.py (Zennit 0.5.1,
torch 2.13.0+cpu; the versions are stored in the files) and tests/attnlrp_numpy.py (numpy only).
CI needs neither torch nor Zennit.
"""

import inspect
import warnings

import attnlrp_numpy as attn_ref
import flax.linen as nn
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import lrp_models
import numpy as np
import pytest

import jaxattr as ja
from jaxattr import relevance as rl
from jaxattr.errors import ArgumentError, ArgumentTypeError, UnsupportedPrimitiveError

VGG = np.load(lrp_models.VGG_NPZ)
RESNET = np.load(lrp_models.RESNET_NPZ)


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _per_example(apply, variables):
    def f(x, t):  # one example, one logit
        return apply(variables, x[None])[0, t]

    return f


def _maps(apply, variables, x, targets, composite, relevance="one"):
    f = _per_example(apply, variables)
    return lrp_models.nchw(jax.vmap(ja.lrp(f, composite, relevance=relevance))(x, targets))


VGG_COMPOSITES = {
    "EpsilonPlusFlat": rl.epsilon_plus_flat(),
    "EpsilonGammaBox": rl.epsilon_gamma_box(0.0, 1.0),  # the reference's input bounds
    "EpsilonAlpha2Beta1": rl.epsilon_alpha2_beta1(),
    "EpsilonPlus": rl.epsilon_plus(),
    "rule_Epsilon_0.25": rl.Epsilon(0.25),
    # rule_ZPlus: the same map as AlphaBeta(1, 0) (Zennit's own maps agree to 3e-16)
    "rule_AlphaBeta_2_1": rl.AlphaBeta(2.0, 1.0),
    "rule_AlphaBeta_1_0": rl.AlphaBeta(1.0, 0.0),
    "rule_Flat": rl.Flat(),
    "rule_WSquare": rl.WSquare(),
    "rule_Gamma_0.25": rl.Gamma(0.25),
}


@pytest.fixture(scope="module")
def vgg():
    return lrp_models.load_vgg()


@pytest.mark.parametrize("name", list(VGG_COMPOSITES))
def test_vgg_equals_zennit(vgg, name):
    apply, variables, x = vgg
    got = _maps(apply, variables, x, jnp.asarray(VGG["targets"]), VGG_COMPOSITES[name])
    assert rel(got, VGG[f"map/{name}"]) <= 1e-8, name


@pytest.mark.parametrize("name", ["EpsilonGammaBox"])
def test_vgg_score_relevance_equals_zennit_logit_relevance(vgg, name):
    # relevance="score" (the default) starts from the logit's value, as map_logit does
    apply, variables, x = vgg
    got = _maps(apply, variables, x, jnp.asarray(VGG["targets"]), VGG_COMPOSITES[name],
                relevance="score")
    assert rel(got, VGG[f"map_logit/{name}"]) <= 1e-8


def test_module_path_selectors_reproduce_a_composite(vgg):
    # "conv1" is the first layer: naming it by its Flax module path gives EpsilonPlusFlat
    apply, variables, x = vgg
    comp = rl.Composite([("conv1", rl.Flat()), ("conv", rl.ZPlus()), ("*/fc*", rl.Epsilon())])
    got = _maps(apply, variables, x, jnp.asarray(VGG["targets"]), comp)
    assert rel(got, VGG["map/EpsilonPlusFlat"]) <= 1e-8
    other = rl.Composite([("conv2", rl.Flat()), ("conv", rl.ZPlus())])  # not the first layer
    assert rel(_maps(apply, variables, x, jnp.asarray(VGG["targets"]), other),
               VGG["map/EpsilonPlusFlat"]) > 1e-2


def test_selectors_see_kind_path_first_and_last(vgg):
    apply, variables, x = vgg
    f = lambda xi: apply(variables, xi[None])[0, 3]  # noqa: E731
    seen = []

    def spy(layer):
        seen.append((layer.path.rsplit("/", 1)[-1], layer.kind, layer.first, layer.last))
        return False

    ja.lrp(f, rl.Composite([(spy, rl.Flat())]))(x[0])
    assert seen[len(seen) // 2:] == [  # the second walk (the first finds the last layers)
        ("conv1", "conv", True, False), ("conv2", "conv", False, False),
        ("conv3", "conv", False, False), ("fc1", "dense", False, False),
        ("fc2", "dense", False, True)]
    by_last = ja.lrp(f, rl.Composite([("last", rl.Epsilon(0.5))]))(x[0])
    by_path = ja.lrp(f, rl.Composite([("fc2", rl.Epsilon(0.5))]))(x[0])
    default = ja.lrp(f, rl.Composite([]))(x[0])
    np.testing.assert_array_equal(by_last, by_path)
    assert rel(by_last, default) > 1e-3


@pytest.mark.parametrize("name, original", [("EpsilonPlusFlat", False),
                                            ("EpsilonAlpha2Beta1", True)])
def test_resnet_with_batchnorm_and_residual_sums_equals_zennit(name, original):
    comp = VGG_COMPOSITES[name]
    t = jnp.asarray(RESNET["targets"])
    # Zennit attributes its canonized network, whose BNs keep eps: x / sqrt(1 + 1e-5) after each
    # merged conv. The same forward pass, written in Flax, with no canonizer on our side:
    apply, variables, x = lrp_models.load_resnet(zennit_canonized=True)
    assert rel(_maps(apply, variables, x, t, comp), RESNET[f"map/{name}"]) <= 1e-8
    if original:  # BatchNorm modules, merged exactly by the engine: differs from Zennit by that
        apply, variables, x = lrp_models.load_resnet()  # eps only, ~1e-5 in the forward pass
        assert rel(_maps(apply, variables, x, t, comp), RESNET[f"map/{name}"]) <= 1e-4


# --------------------------------------------------------------------------- transformers


def _ln(x, g, b):
    return nn.LayerNorm(epsilon=attn_ref.LN_EPS).apply({"params": {"scale": g, "bias": b}}, x)


def _encoder(p, X):
    """tests/attnlrp_numpy.py's model in JAX: Flax LayerNorm, jax.nn.softmax and gelu."""
    dh = attn_ref.D // attn_ref.HEADS
    act = jax.nn.relu if p["act"] == "relu" else (lambda t: jax.nn.gelu(t, approximate=True))
    x = X
    for b in p["blocks"]:
        a = _ln(x, b["ln1_g"], b["ln1_b"])
        q, k, v = (a @ b[f"W{n}"] + b[f"b{n}"][None] for n in "qkv")
        heads = []
        for h in range(attn_ref.HEADS):
            sl = slice(h * dh, (h + 1) * dh)
            att = jax.nn.softmax(q[:, sl] @ k[:, sl].T / np.sqrt(dh), axis=-1)
            heads.append(att @ v[:, sl])
        x = x + (jnp.concatenate(heads, axis=1) @ b["Wo"] + b["bo"][None])
        m = _ln(x, b["ln2_g"], b["ln2_b"])
        x = x + (act(m @ b["W1"] + b["b1"][None]) @ b["W2"] + b["b2"][None])
    return _ln(x, p["lnf_g"], p["lnf_b"])[0] @ p["Wh"] + p["bh"]


@pytest.mark.parametrize("act, bias, eps", [("gelu", True, 1e-12), ("gelu", False, 1e-12),
                                            ("relu", False, 0.0), ("relu", True, 1e-2)])
def test_transformer_equals_numpy_attnlrp(act, bias, eps):
    p = attn_ref.init_params(0, bias=bias, act=act)
    pj = {**p, "blocks": [{k: jnp.asarray(v) for k, v in b.items()} for b in p["blocks"]],
          **{k: jnp.asarray(v) for k, v in p.items() if isinstance(v, np.ndarray)}}
    X = np.random.default_rng(1000).normal(size=(5, attn_ref.D))
    logits = _encoder(pj, jnp.asarray(X))
    np.testing.assert_allclose(logits, attn_ref.forward(p, X), rtol=0, atol=1e-12)
    t = int(np.argmax(logits))
    want, absorbed = attn_ref.attnlrp(p, X, t, eps=eps, return_absorbed=True)
    got = ja.lrp(lambda x: _encoder(pj, x)[t], rl.attn_lrp(eps))(jnp.asarray(X))
    assert rel(got, want) <= 1e-8
    if not bias and eps <= 1e-12:  # conservation: all but the softmax's Taylor bias
        assert abs(float(got.sum()) + absorbed["softmax"] - float(logits[t])) <= 1e-6


# --------------------------------------------------------------------------- conservation


def _relu_mlp(seed, bias):
    rng = np.random.default_rng(seed)  # numpy: no random-number program to compile per shape
    ws = [jnp.asarray(rng.normal(size=s) / np.sqrt(s[1])) for s in [(16, 8), (16, 16), (3, 16)]]
    bs = [jnp.asarray(0.1 * rng.normal(size=w.shape[0]) * bias) for w in ws]

    def f(x):
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            x = jax.nn.relu(w @ x + b)
        return (ws[-1] @ x + bs[-1])[1]

    return f


def _relu_cnn(seed):
    """conv-ReLU-avgpool-conv-ReLU-mean-dense, bias-free, in plain JAX (HWC input)."""
    rng = np.random.default_rng(seed)
    w1, w2, w3 = (jnp.asarray(rng.normal(size=s)) for s in [(3, 3, 3, 6), (3, 3, 6, 8), (8, 4)])

    def conv(x, w):
        return jax.lax.conv_general_dilated(x[None], w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]

    def f(x):
        h = jax.nn.relu(conv(x, w1))
        h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (2, 2, 1), (2, 2, 1), "VALID") / 4
        h = jnp.mean(jax.nn.relu(conv(h, w2)), axis=(0, 1))
        return (h @ w3)[2]

    return f, jnp.asarray(rng.uniform(size=(8, 8, 3)))


@pytest.mark.parametrize("rule", [rl.Epsilon(0.0), rl.ZPlus(0.0), rl.AlphaBeta(1.0, 0.0, 0.0)])
def test_conservation_on_bias_free_relu_networks(rule):
    f = _relu_mlp(0, bias=0.0)
    x = jnp.asarray(np.random.default_rng(7).uniform(size=8))
    r = ja.lrp(f, rule)(x)
    assert abs(float(r.sum()) - float(f(x))) <= 1e-6 * abs(float(f(x)))
    g, x = _relu_cnn(3)
    r = ja.lrp(g, rl.Composite.of(rule, sum=rl.Norm(0.0)))(x)
    assert abs(float(r.sum()) - float(g(x))) <= 1e-6 * abs(float(g(x)))


def test_lrp0_is_gradient_times_input_on_bias_free_relu_networks():
    f = _relu_mlp(1, bias=0.0)
    x = jnp.asarray(np.random.default_rng(2).normal(size=8))
    np.testing.assert_allclose(ja.lrp(f, rl.Epsilon(0.0))(x), jax.grad(f)(x) * x, rtol=1e-10,
                               atol=1e-12)


def test_epsilon_absorbs_a_share_that_grows_with_epsilon():
    f = _relu_mlp(0, bias=0.0)
    x = jnp.asarray(np.random.default_rng(7).uniform(size=8))
    shares = [float(f(x) - ja.lrp(f, rl.Epsilon(e))(x).sum()) / float(f(x))
              for e in (0.0, 0.01, 0.1, 1.0)]
    assert abs(shares[0]) <= 1e-10
    assert 0 < shares[1] < shares[2] < shares[3] < 1


# --------------------------------------------------------------------------- as a transform


def test_vmap_jit_and_calling_convention(vgg):
    apply, variables, x = vgg
    t = jnp.asarray(VGG["targets"])
    f = _per_example(apply, variables)
    g = ja.lrp(f, "epsilon_plus")
    batched = jax.jit(jax.vmap(g))(x, t)
    for i in range(2):
        np.testing.assert_allclose(batched[i], g(x[i], t[i]), rtol=1e-12, atol=1e-14)
    g2 = ja.lrp(lambda v, xi, ti: apply(v, xi[None])[0, ti], "epsilon_plus", argnums=1)
    np.testing.assert_allclose(g2(variables, x[0], int(t[0])), batched[0], rtol=1e-12, atol=1e-14)


def test_inside_smoothgrad_and_with_bfloat16(vgg):
    apply, variables, x = vgg
    f = lambda xi: apply(variables, xi[None])[0, 3]  # noqa: E731
    g = ja.lrp(f, "epsilon_plus_flat")
    sg = ja.smoothgrad(g, sigma=1e-9, n=4)(x[0], jax.random.key(0))
    np.testing.assert_allclose(sg, g(x[0]), rtol=1e-6, atol=1e-9)
    x32 = x[0].astype(jnp.float32)
    ref32 = ja.lrp(f, "epsilon_plus_flat")(x32)
    bf = ja.lrp(f, "epsilon_plus_flat", dtype=jnp.bfloat16)(x32)
    assert bf.dtype == jnp.float32
    assert rel(bf, ref32) < 0.1  # bfloat16 keeps 8 bits: a few per cent
    assert np.corrcoef(np.ravel(bf), np.ravel(ref32))[0, 1] > 0.99


def test_map_is_backward_only():
    f = _relu_mlp(0, bias=1.0)
    with pytest.raises(ja.errors.ForwardModeError):
        jax.jvp(ja.lrp(f), (jnp.ones(8),), (jnp.ones(8),))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("score, prim", [
    (lambda x: jax.nn.log_softmax(x)[0], "log_softmax"),
    (lambda x: (x / jnp.sum(x))[0], "div"),
    (lambda x: jnp.cumsum(x)[1], "cumsum"),
])
def test_no_rule_raises_naming_the_primitive_and_line(score, prim):
    with pytest.raises(UnsupportedPrimitiveError, match=prim) as e:
        ja.lrp(score)(jnp.arange(1.0, 4.0))
    assert "test_lrp.py" in str(e.value) or prim == "log_softmax"


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="alpha - beta = 1"):
        rl.AlphaBeta(3.0, 1.0)
    with pytest.raises(ArgumentError, match="epsilon"):
        rl.Epsilon(-1.0)
    with pytest.raises(ArgumentTypeError, match="composite"):
        ja.lrp(lambda x: x.sum(), "epsilon_gamma_box")
    with pytest.raises(ArgumentTypeError, match="not an LRP rule"):
        rl.Composite([("conv", "zplus")])
    with pytest.raises(ArgumentError, match="relevance"):
        ja.lrp(lambda x: x.sum(), relevance="logit")
    with pytest.raises(ArgumentTypeError, match="non-scalar"):
        ja.lrp(lambda x: x)(jnp.ones(3))
    with pytest.raises(ArgumentTypeError, match="dtype int"):
        ja.lrp(lambda x: x.sum())(jnp.ones(3, jnp.int32))


NEW_NNX = "copy" in inspect.signature(nnx.merge).parameters  # the conformance models' NNX API


@pytest.mark.parametrize("name", [
    "linen.GroupNorm-exact_var", "linen.BatchNorm-training-fast_var",
    "linen.encoder-block-cls-token",
    pytest.param("nnx.ViT-gelu", marks=pytest.mark.skipif(not NEW_NNX, reason="flax")),
    "eqx.GroupNorm", "jax.nn.dot_product_attention"])
def test_every_normalisation_and_attention_layer_has_a_rule(name):
    from conformance_models import NO_RELU

    f, x = NO_RELU[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ja.lrp(f, "attn_lrp")(x)
    assert r.shape == x.shape and bool(jnp.all(jnp.isfinite(r)))
    assert float(jnp.abs(r).max()) > 0
