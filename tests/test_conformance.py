"""Conformance table: Guided Backprop, DeconvNet and RectGrad on today's architectures.

A. No ReLU anywhere (every normalisation layer of Flax linen, Flax NNX and Equinox, in both
   variance formulas where the layer has the option; attention; a ViT; a transformer block with a
   class token; softmax-like functions): the three maps must equal ``jax.grad`` (float64, 1e-12
   relative) and the user is told that there is no ReLU. Would catch: the engine taking the
   variance clamp ``max(0, E[x^2] - E[x]^2)`` of ``use_fast_variance=True`` (Flax's default) or
   Equinox's ``max(0, var)`` for a ReLU (measured on the old engine: 0.17 to 7.5 relative error
   on every fast-variance LayerNorm/GroupNorm/InstanceNorm/training-BatchNorm row, the Equinox
   LayerNorm/GroupNorm/training-BatchNorm rows, the ViT and the encoder block; 0.33 on the
   issue's linen Dense-LayerNorm-gelu-Dense).

B. With ReLUs (a Dense-LayerNorm-ReLU-Dense MLP, a GroupNorm+ReLU CNN, a ViT whose MLPs use ReLU):
   Guided Backprop and DeconvNet equal Captum's ``GuidedBackprop`` / ``Deconvolution`` on the same
   weights (reference files written by ``tests/reference/make_captum_references.py``; this file
   does not import torch), and all three maps equal a hand-written backward pass (numpy for the
   MLP and the CNN; for the ViT, the Flax model with a ``jax.custom_vjp`` ReLU that applies the
   rule). The hand-written passes are checked against torch's plain gradient and Captum's maps
   first, so they cannot share a mistake with the engine.

Rules at each ReLU (REFERENCE.md section 1), with ``x_in`` its input, ``a`` its output, ``R`` the
incoming gradient: guided ``where(x_in > 0, relu(R), 0)``, deconvnet ``relu(R)``, rectgrad
``where(a * R > tau, R, 0)`` with ``tau`` the TF 'nearest' 98th percentile of ``a * R`` over all
units of that layer, per example. Everything else keeps its ordinary gradient.
"""

from __future__ import annotations

import functools
import warnings

import conformance_models as cm
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as nref
import pytest

import jaxattr as ja
from jaxattr._jaxpr import find_relus
from jaxattr.errors import AttributionWarning

METHODS = {"guided_backprop": ja.guided_backprop, "deconvnet": ja.deconvnet,
           "rectgrad": ja.rectgrad}  # rectgrad at its default q = 98
RULE = {"guided_backprop": "guided", "deconvnet": "deconv", "rectgrad": "rectgrad",
        "saliency": "saliency"}  # numpy_reference's names
Q = 98.0
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def rel_err(a, b) -> float:
    """max |a - b| / max |b|; both must be finite."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.isfinite(a).all() and np.isfinite(b).all(), "non-finite values"
    return float(np.abs(a - b).max() / np.abs(b).max())


def _quiet(call):
    """``call()`` and the messages of the AttributionWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [str(w.message) for w in caught if issubclass(w.category, AttributionWarning)]


# =============================================================================================
# A. No ReLU: every map is the gradient.


def _maps_and_gradient(f, *, vmapped: bool = False):
    """``maps(*args) -> ({"grad": ..., method: map, ...}, {method: warning messages})``.

    The gradient and the three maps are computed in ONE ``jax.jit`` (each transform is inlined
    there: the same rewrite as an eager call, one compile instead of four), compiled at XLA
    backend optimisation level 0 (the same computation, ~40% less compile time): this file
    stays fast. The warnings each transform raised while being traced are recorded per method.
    """
    msgs: dict[str, list[str]] = {}

    def all_maps(*args):
        out = {"grad": (jax.vmap(jax.grad(f)) if vmapped else jax.grad(f))(*args)}
        for method, transform in METHODS.items():
            g = jax.vmap(transform(f)) if vmapped else transform(f)
            out[method], msgs[method] = _quiet(lambda g=g: g(*args))
        return out

    jitted = jax.jit(all_maps, compiler_options=FAST_COMPILE)
    return lambda *args: (jax.device_get(jitted(*args)), msgs)


@functools.cache
def _no_relu(name: str):
    f, x = cm.NO_RELU[name]()
    maps, msgs = _maps_and_gradient(f)(x)
    return x, maps, msgs


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("model", list(cm.NO_RELU))
def test_without_relu_the_map_is_the_gradient(model, method):
    x, maps, msgs = _no_relu(model)
    m = maps[method]
    assert m.dtype == np.float64 and m.shape == x.shape
    err = rel_err(m, maps["grad"])
    assert err <= 1e-12, f"{model}, {method}: max|map - grad| / max|grad| = {err:.3g}"
    assert any("contains no ReLU" in s for s in msgs[method]), msgs[method]


@pytest.mark.parametrize("model", list(cm.NO_RELU))
def test_without_relu_the_detector_finds_none_even_with_raw_max(model):
    # A max(x, 0) inside Flax, Equinox or JAX is a clamp, never a ReLU, with or without
    # raw_max=True; and there is no max(x, 0) in this file's own code to report.
    f, x = cm.NO_RELU[model]()  # tracing only: no compile
    for raw_max in (False, True):
        report = find_relus(f, x, raw_max=raw_max)
        assert (report.relus, report.raw_max) == (0, ()), (raw_max, report)


@functools.cache
def _issue_reproducer():
    f, x = cm.issue_reproducer()
    return f, x, jax.jit(jax.grad(f), compiler_options=FAST_COMPILE)(x)


@pytest.mark.parametrize("method", list(METHODS))
def test_issue_reproducer_linen_dense_layernorm_gelu_dense(method):
    # The report: Dense(32) - LayerNorm - gelu - Dense(1) on a 16-vector (key 0), init key 3.
    # Old engine: guided/deconvnet/rectgrad off by 0.33 relative in float64 (the LayerNorm's
    # variance clamp max(0, E[x^2] - E[x]^2) taken for a ReLU). Called eagerly, as a user would.
    f, x, grad = _issue_reproducer()
    m, _ = _quiet(lambda: METHODS[method](f)(x))
    assert float(jnp.max(jnp.abs(m - grad))) <= 1e-12 * float(jnp.max(jnp.abs(grad)))


# =============================================================================================
# B. With ReLUs: Captum and hand-written backward passes.

REFERENCES = ("mlp_layernorm", "cnn_groupnorm", "vit_relu")


@functools.cache
def _reference(name: str):
    """(npz arrays, logits, {"grad": ..., method: maps}) of the Flax twin, per example."""
    ref = cm.load_reference(name)
    module, params = cm.flax_model(name, ref)

    def f(x, y):
        return module.apply(params, x[None])[0, y]

    x, y = jnp.asarray(cm.to_nhwc(ref["x"])), jnp.asarray(ref["target"])
    logits = jax.jit(module.apply, compiler_options=FAST_COMPILE)(params, x)
    maps, _ = _maps_and_gradient(f, vmapped=True)(x, y)
    return ref, np.asarray(logits), maps


def test_reference_files_record_their_versions():
    for name in REFERENCES:
        versions = dict(v.split("=", 1) for v in cm.load_reference(name)["versions"])
        assert {"torch", "captum", "numpy", "python"} <= versions.keys(), versions
        print(name, versions)


@pytest.mark.parametrize("name", REFERENCES)
def test_weight_transfer_logits_and_plain_gradient_match_torch(name):
    ref, logits, maps = _reference(name)
    assert rel_err(logits, ref["logits"]) <= 1e-12
    assert rel_err(maps["grad"], cm.to_nhwc(ref["saliency"])) <= 1e-10


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("name", REFERENCES)
def test_matches_captum(name, method):
    ref, _, maps = _reference(name)
    captum = cm.to_nhwc(ref["guided" if method == "guided_backprop" else "deconvnet"])
    err = rel_err(maps[method], captum)
    assert err <= 1e-5, f"{name}, {method}: max|jaxattr - captum| / max|captum| = {err:.3g}"


# --------------------------------------------------------------------------- hand-written


def _layernorm_backward(r, xhat, inv_std):
    """d(xhat)/dz applied to r: inv_std * (r - mean(r) - xhat * mean(r * xhat)), last axis."""
    return inv_std * (r - r.mean(-1, keepdims=True)
                      - xhat * (r * xhat).mean(-1, keepdims=True))


def _mlp_hand(ref, rule: str) -> np.ndarray:
    """fc1 - LayerNorm - ReLU (rule) - fc2, forward and backward in numpy (torch's layouts)."""
    w = {k[2:]: v for k, v in ref.items() if k.startswith("w/")}
    x, y = ref["x"], ref["target"]
    z = x @ w["fc1.weight"].T + w["fc1.bias"]
    d = z - z.mean(-1, keepdims=True)
    inv_std = 1.0 / np.sqrt((d**2).mean(-1, keepdims=True) + cm.EPS)
    xhat = d * inv_std
    pre = w["norm.weight"] * xhat + w["norm.bias"]
    a = np.maximum(pre, 0.0)
    r = nref.relu_rule(pre, a, w["fc2.weight"][y], RULE[rule], q=Q)
    return _layernorm_backward(r * w["norm.weight"], xhat, inv_std) @ w["fc1.weight"]


def _groupnorm(z, gamma, beta, groups):
    b, h, wd, c = z.shape
    zg = z.reshape(b, h, wd, groups, c // groups)
    d = zg - zg.mean((1, 2, 4), keepdims=True)
    inv_std = 1.0 / np.sqrt((d**2).mean((1, 2, 4), keepdims=True) + cm.EPS)
    xhat = d * inv_std
    return (xhat.reshape(z.shape) * gamma + beta), (xhat, inv_std)


def _groupnorm_backward(r, gamma, cache):
    xhat, inv_std = cache
    rg = (r * gamma).reshape(xhat.shape)
    axes = (1, 2, 4)
    dz = inv_std * (rg - rg.mean(axes, keepdims=True)
                    - xhat * (rg * xhat).mean(axes, keepdims=True))
    return dz.reshape(r.shape)


def _cnn_hand(ref, rule: str) -> np.ndarray:
    """conv - GN - ReLU - conv - GN - ReLU - mean - fc in numpy, NHWC, rule at both ReLUs."""
    w = {k[2:]: v for k, v in ref.items() if k.startswith("w/")}
    hwio = {k: w[f"{k}.weight"].transpose(2, 3, 1, 0) for k in ("conv1", "conv2")}
    x, y = cm.to_nhwc(ref["x"]), ref["target"]
    groups = 4
    z1 = nref.conv_same(x, hwio["conv1"], w["conv1.bias"])
    p1, c1 = _groupnorm(z1, w["gn1.weight"], w["gn1.bias"], groups)
    a1 = np.maximum(p1, 0.0)
    z2 = nref.conv_same(a1, hwio["conv2"], w["conv2.bias"])
    p2, c2 = _groupnorm(z2, w["gn2.weight"], w["gn2.bias"], groups)
    a2 = np.maximum(p2, 0.0)
    hw = a2.shape[1] * a2.shape[2]
    r = np.broadcast_to(w["fc.weight"][y][:, None, None, :] / hw, a2.shape)  # mean-pool
    r = nref.relu_rule(p2, a2, r, RULE[rule], q=Q)
    r = nref.conv_same_backward(_groupnorm_backward(r, w["gn2.weight"], c2), hwio["conv2"])
    r = nref.relu_rule(p1, a1, r, RULE[rule], q=Q)
    return nref.conv_same_backward(_groupnorm_backward(r, w["gn1.weight"], c1), hwio["conv1"])


def _rule_relu(rule: str):
    """``jax.nn.relu`` forward with the rule as its backward (a test-local custom_vjp)."""

    @jax.custom_vjp
    def relu(z):
        return jnp.maximum(z, 0.0)

    def fwd(z):
        a = jnp.maximum(z, 0.0)
        return a, a

    def bwd(a, r):
        if rule == "saliency":
            return (jnp.where(a > 0, r, 0.0),)
        if rule == "guided_backprop":
            return (jnp.where(a > 0, jnp.maximum(r, 0.0), 0.0),)
        if rule == "deconvnet":
            return (jnp.maximum(r, 0.0),)
        v = a * r  # rectgrad: TF 'nearest' percentile over all units of the layer
        k = round((v.size - 1) * (1.0 - Q / 100.0))
        return (jnp.where(v > jnp.sort(v.ravel())[::-1][k], r, 0.0),)

    relu.defvjp(fwd, bwd)
    return relu


def _vit_hand(ref) -> dict[str, np.ndarray]:
    """The Flax ViT with the rule in a custom_vjp ReLU (everything else jax.grad's), all rules
    in one jit."""
    x, y = jnp.asarray(cm.to_nhwc(ref["x"])), jnp.asarray(ref["target"])

    def grads(x, y):
        out = {}
        for rule in RULE:
            module, params = cm.flax_model("vit_relu", ref, act=_rule_relu(rule))
            f = lambda x, y: module.apply(params, x[None])[0, y]  # noqa: B023
            out[rule] = jax.vmap(jax.grad(f))(x, y)
        return out

    return jax.device_get(jax.jit(grads, compiler_options=FAST_COMPILE)(x, y))


@functools.cache
def _hand(name: str) -> dict[str, np.ndarray]:
    """Hand-written maps of reference model ``name``, keyed by rule (saliency and METHODS)."""
    ref = cm.load_reference(name)
    if name == "vit_relu":
        return _vit_hand(ref)
    backward = {"mlp_layernorm": _mlp_hand, "cnn_groupnorm": _cnn_hand}[name]
    return {rule: backward(ref, rule) for rule in RULE}


@pytest.mark.parametrize("name", REFERENCES)
def test_hand_written_backward_matches_torch_and_captum(name):
    # The references themselves: plain gradient = torch's, guided/deconvnet = Captum's.
    ref, hand = cm.load_reference(name), _hand(name)
    assert rel_err(hand["saliency"], cm.to_nhwc(ref["saliency"])) <= 1e-10
    assert rel_err(hand["guided_backprop"], cm.to_nhwc(ref["guided"])) <= 1e-10
    assert rel_err(hand["deconvnet"], cm.to_nhwc(ref["deconvnet"])) <= 1e-10
    # and the four rules give four different maps (so each row of the table tests something)
    maps = list(hand.values())
    for i in range(len(maps)):
        for j in range(i):
            assert rel_err(maps[i], maps[j]) > 1e-2, (i, j)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", REFERENCES)
def test_matches_hand_written_backward(name, method):
    _, _, maps = _reference(name)
    err = rel_err(maps[method], _hand(name)[method])
    assert err <= 1e-10, f"{name}, {method}: max|jaxattr - hand| / max|hand| = {err:.3g}"


def test_rectgrad_passes_units_in_every_layer():
    # q = 98 keeps round((n-1) * 0.02) units per layer: >= 1 in each ReLU layer here (n > 25),
    # so the RectGrad rows of the table are not all-zero maps.
    for name, n in (("mlp_layernorm", 32), ("cnn_groupnorm", 8 * 8 * 8), ("vit_relu", 5 * 32)):
        assert round((n - 1) * (1 - Q / 100)) >= 1, name
        assert np.abs(_hand(name)["rectgrad"]).max() > 0, name
