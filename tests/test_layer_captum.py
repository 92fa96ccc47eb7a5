"""The layer and neuron methods equal Captum 0.9.0 on identical weights (float64, <= 1e-8).

Reference maps: tests/reference/captum_layer_{cnn,vit}.npz, written by
tests/reference/make_captum_layer_references.py (torch 2.13.0+cpu, captum 0.9.0; versions in the
files), whose docstring states Captum's semantics; Flax twins in tests/layer_models.py. The models
are called on one example at a time (``x[None]``) and batched with ``jax.vmap``. Captum rounds its
integration weights to float32 (3e-9 relative); its "riemann_trapezoid" weights sum to 1 - 1/n,
jaxattr's to 1, so the path methods are compared with Gauss-Legendre (the same nodes).
"""

import jax
import jax.numpy as jnp
import layer_models
import numpy as np
import pytest

import jaxattr as ja


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def cnn():
    return layer_models.load_cnn()


@pytest.fixture(scope="module")
def vit():
    return layer_models.load_vit()


def _score(apply, v):
    return lambda xi, ti: apply(v, xi[None])[0, ti]


def _batched(g, x, t):
    return jax.vmap(g)(x, jnp.asarray(t))


def _layer_map(out, info):
    """(N, 1, *layer) per-example maps -> Captum's layout."""
    return info["to_torch"](np.asarray(out)[:, 0])


CNN_LAYER = [
    ("grad", lambda f, at: ja.layer_gradient(f, at)),
    ("grad_x_act", lambda f, at: ja.layer_gradient_x_activation(f, at)),
    ("ig_gausslegendre", lambda f, at: ja.layer_integrated_gradients(f, at, steps=16)),
    ("conductance_gausslegendre", lambda f, at: ja.layer_conductance(f, at, steps=16)),
]


@pytest.mark.parametrize("key, make", CNN_LAYER, ids=[k for k, _ in CNN_LAYER])
def test_cnn_layer_methods(cnn, key, make):
    apply, v, x, meta = cnn
    info = meta["layers"]["conv3"]
    got = _layer_map(_batched(make(_score(apply, v), "conv3"), x, meta["target"]), info)
    assert rel(got, meta["ref"][f"attr/conv3/{key}"]) <= 1e-8


def test_cnn_grad_cam_guided_grad_cam_and_neurons(cnn):
    apply, v, x, meta = cnn
    d, t = meta["ref"], meta["target"]
    f = _score(apply, v)
    raw = _batched(ja.grad_cam(f, "conv3", upsample=None), x, t)  # (N, 1, 8, 8)
    assert rel(raw, d["attr/conv3/gradcam"]) <= 1e-8
    norelu = _batched(ja.grad_cam(f, "conv3", upsample=None, relu=False), x, t)
    assert rel(norelu, d["attr/conv3/gradcam_norelu"]) <= 1e-8
    up = _batched(ja.grad_cam(f, "conv3"), x, t)  # (N, 16, 16), bilinear
    assert rel(up, d["attr/conv3/gradcam_upsampled"][:, 0]) <= 1e-8
    ggc = _batched(ja.guided_grad_cam(f, "conv3"), x, t)
    assert rel(layer_models.nhwc_to_nchw(ggc), d["attr/conv3/guided_gradcam"]) <= 1e-8
    neuron = (0, *meta["layers"]["conv3"]["neuron"])  # the model's batch axis of 1 first
    model = lambda xi: apply(v, xi[None])  # noqa: E731
    ng = jax.vmap(ja.neuron_gradient(model, "conv3", neuron))(x)
    assert rel(layer_models.nhwc_to_nchw(ng), d["attr/conv3/neuron_grad"]) <= 1e-8
    nig = jax.vmap(ja.neuron_integrated_gradients(model, "conv3", neuron, steps=16))(x)
    assert rel(layer_models.nhwc_to_nchw(nig), d["attr/conv3/neuron_ig_gausslegendre"]) <= 1e-8


@pytest.mark.parametrize("layer", ["blocks.0", "blocks.0.fc1"])
def test_vit_layer_and_neuron_methods(vit, layer):
    apply, v, x, meta = vit
    d, t = meta["ref"], meta["target"]
    info = meta["layers"][layer]
    at = info["module_path"]
    f = _score(apply, v)
    # the path methods at the MLP layer only (the CNN checks them too; each costs 17 passes)
    methods = CNN_LAYER if layer == "blocks.0.fc1" else CNN_LAYER[:2]
    for key, make in methods:
        got = _layer_map(_batched(make(f, at), x, t), info)
        assert rel(got, d[f"attr/{layer}/{key}"]) <= 1e-8, key
    # Captum's LayerGradCam on a (N, T, D) output: tokens are the channels (axis 1 there)
    cam = _batched(ja.grad_cam(f, at, channel_axis=-2, relu=False, upsample=None), x, t)
    want = d[f"attr/{layer}/gradcam_norelu"]
    if layer == "blocks.0":  # zero in exact arithmetic (a LayerNorm follows): rounding noise
        assert np.abs(np.asarray(cam)).max() < 1e-12 and np.abs(want).max() < 1e-12
    else:
        assert rel(cam, want) <= 1e-8
    model = lambda xi: apply(v, xi[None])  # noqa: E731
    neuron = (0, *info["neuron"])
    ng = jax.vmap(ja.neuron_gradient(model, at, neuron))(x)
    assert rel(layer_models.nhwc_to_nchw(ng), d[f"attr/{layer}/neuron_grad"]) <= 1e-8
