"""Flax (linen) twins of the torch models in tests/reference/captum_layer_{cnn,vit}.npz.

The npz files (Captum 0.9.0 layer / neuron attributions, float64) are written by
``tests/reference/make_captum_layer_references.py``, whose docstring states what every stored
map is. Weights are stored in torch layout (``param/<state_dict name>``) and converted here as
in tests/lrp_models.py:

* Conv2d weight ``(O, I, kH, kW)`` -> Flax ``kernel`` ``(kH, kW, I, O)``
  (``w.transpose(2, 3, 1, 0)``); Linear weight ``(out, in)`` -> Dense ``kernel`` ``(in, out)``;
  LayerNorm ``weight/bias`` -> ``scale/bias`` (``epsilon=1e-5`` as torch);
* the ViT's separate q/k/v/out Linear layers -> ``nn.MultiHeadDotProductAttention`` kernels
  ``(in, heads, head_dim)`` / ``(heads, head_dim, out)`` (torch splits features as
  ``(head, head_dim)``);
* images NCHW -> NHWC; conv feature maps ``(N, C, H, W)`` -> ``(N, H, W, C)``; token maps
  ``(N, T, D)`` are the same in both (the patch tokens are row-major in both: torch's
  ``flatten(2)`` of ``(N, D, 4, 4)`` and Flax's ``reshape`` of ``(N, 4, 4, D)``);
* GELU is the exact (erf) one: ``jax.nn.gelu(x, approximate=False)`` (Flax's ``nn.gelu`` default
  is the tanh approximation).

Loaders return ``(apply_fn, variables, x_nhwc, meta)`` with ``apply_fn(variables, x_nhwc) ->
logits``; ``meta`` (a dict):

* ``target``: the labels explained (int array, one per input);
* ``layer``: the primary target layer's torch module name; ``layers``: per torch module name a
  dict with ``path`` (the Flax module path as it appears in the jaxpr's name stack,
  ``str(eqn.source_info.name_stack)`` of ``jax.make_jaxpr(apply_fn)(variables, x)``: the layer's
  output is the output of the *last* equation whose name stack is ``path`` or starts with
  ``path + "/"``), ``module_path`` (the same without the top-level class name, i.e. the keys in
  ``variables["params"]``), ``neuron`` (Captum's ``neuron_selector`` translated to the Flax layout
  of the layer output, no batch dim), ``torch_neuron`` (as stored), ``to_flax`` / ``to_torch``
  (converters of a layer-shaped map between torch's and Flax's layouts);
* ``nchw_to_nhwc`` / ``nhwc_to_nchw``: converters of input-shaped maps;
* ``ref``: the npz contents (a dict of numpy arrays).

Under transformations the name stack gains a prefix (``jax.vmap``: ``vmap(CNN)/conv3``).

``check_twins()`` checks (float64, x64 enabled at import as in tests/lrp_models.py) that the
logits, the input gradient of the target logits (``saliency``) and every target layer's output
(read twice: via ``capture_intermediates`` and as the last equation under its name-stack path)
equal torch's to 1e-10; run ``python tests/layer_models.py``. It also checks
:func:`captum_interpolate` (``jax.image.resize``) against Captum's upsampled GradCAM maps.
"""

from __future__ import annotations

import os

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

jax.config.update("jax_enable_x64", True)

REF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
CNN_NPZ = os.path.join(REF_DIR, "captum_layer_cnn.npz")
VIT_NPZ = os.path.join(REF_DIR, "captum_layer_vit.npz")
EPS = 1e-5


def nchw_to_nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


def nhwc_to_nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


def _identity(a):
    return np.asarray(a)


def captum_interpolate(attr_nhwc, size, mode: str = "bilinear"):
    """Captum's ``LayerAttribution.interpolate`` (``F.interpolate(attr, size, mode=mode)``,
    ``align_corners=False``) of an NHWC map, with ``jax.image.resize`` (half-pixel centres; for
    the integer upsampling factor 2 used here both agree at the borders too: torch clamps the
    source coordinate, jax renormalises the kernel over the in-range samples).
    ``mode``: ``"bilinear"`` or ``"nearest"`` (torch's legacy nearest, ``floor(dst * in / out)``,
    equals jax's ``floor((dst + 0.5) * in / out)`` for factor 2)."""
    n, _, _, c = attr_nhwc.shape
    method = {"bilinear": "linear", "nearest": "nearest"}[mode]
    return jax.image.resize(attr_nhwc, (n, *size, c), method=method)


def _conv(d, name):
    return {"kernel": jnp.asarray(d[f"param/{name}.weight"].transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(d[f"param/{name}.bias"])}


def _dense(d, name):
    return {"kernel": jnp.asarray(d[f"param/{name}.weight"].T),
            "bias": jnp.asarray(d[f"param/{name}.bias"])}


def _norm(d, name):
    return {"scale": jnp.asarray(d[f"param/{name}.weight"]),
            "bias": jnp.asarray(d[f"param/{name}.bias"])}


def _attention(d, prefix, heads):
    out = {}
    for t, f in (("q", "query"), ("k", "key"), ("v", "value")):
        kernel = d[f"param/{prefix}.{t}.weight"].T  # (in, out), out split as (head, head_dim)
        out[f] = {"kernel": jnp.asarray(kernel.reshape(kernel.shape[0], heads, -1)),
                  "bias": jnp.asarray(d[f"param/{prefix}.{t}.bias"].reshape(heads, -1))}
    kernel = d[f"param/{prefix}.out.weight"].T
    out["out"] = {"kernel": jnp.asarray(kernel.reshape(heads, -1, kernel.shape[1])),
                  "bias": jnp.asarray(d[f"param/{prefix}.out.bias"])}
    return out


def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- CNN
class CNN(nn.Module):
    """conv1(3->8)-ReLU-conv2(8->8)-ReLU-maxpool2-conv3(8->16)-ReLU-mean(H, W)-fc(16->10), NHWC.
    Target layer ``conv3`` (its output, before the ReLU)."""

    classes: int = 10

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        x = nn.relu(nn.Conv(8, (3, 3), padding=pad, name="conv1")(x))
        x = nn.relu(nn.Conv(8, (3, 3), padding=pad, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), padding=pad, name="conv3")(x))
        return nn.Dense(self.classes, name="fc")(x.mean(axis=(1, 2)))


def load_cnn(path=CNN_NPZ):
    d = _load(path)
    params = {k: _conv(d, k) for k in ("conv1", "conv2", "conv3")}
    params["fc"] = _dense(d, "fc")
    c, h, w = (int(i) for i in d["neuron/conv3"])
    meta = {
        "target": d["target"],
        "layer": "conv3",
        "layers": {"conv3": {"path": "CNN/conv3", "module_path": "conv3",
                             "neuron": (h, w, c), "torch_neuron": (c, h, w),
                             "to_flax": nchw_to_nhwc, "to_torch": nhwc_to_nchw}},
        "nchw_to_nhwc": nchw_to_nhwc, "nhwc_to_nchw": nhwc_to_nchw, "ref": d,
    }
    model = CNN(classes=d["param/fc.weight"].shape[0])
    return model.apply, {"params": params}, jnp.asarray(nchw_to_nhwc(d["x"])), meta


# --------------------------------------------------------------------------- ViT
class Block(nn.Module):
    """Pre-LN: t + attn(ln1(t)); t + fc2(gelu(fc1(ln2(t)))) (exact GELU)."""

    heads: int
    hidden: int

    @nn.compact
    def __call__(self, t):
        e = t.shape[-1]
        y = nn.LayerNorm(epsilon=EPS, name="ln1")(t)
        t = t + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(y)
        y = nn.LayerNorm(epsilon=EPS, name="ln2")(t)
        y = jax.nn.gelu(nn.Dense(self.hidden, name="fc1")(y), approximate=False)
        return t + nn.Dense(e, name="fc2")(y)


class ViT(nn.Module):
    """4x4 patches of a 16x16x3 image (16 tokens), class token, position embeddings, ``depth``
    pre-LN blocks, LayerNorm, head on the class token. Target layers ``blocks_0`` (the block's
    output, (N, 17, dim)) and ``blocks_0/fc1`` (the MLP's first Dense, before the GELU)."""

    dim: int = 8
    depth: int = 2
    heads: int = 2
    hidden: int = 16
    patch: int = 4
    classes: int = 10

    @nn.compact
    def __call__(self, x):
        b, p = x.shape[0], self.patch
        t = nn.Conv(self.dim, (p, p), strides=p, padding="VALID", name="patch")(x)
        t = t.reshape(b, -1, self.dim)  # patches row-major, as torch's flatten(2)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
        pos = self.param("pos", nn.initializers.zeros, (1, t.shape[1] + 1, self.dim))
        t = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)), t], axis=1) + pos
        for i in range(self.depth):
            t = Block(self.heads, self.hidden, name=f"blocks_{i}")(t)
        return nn.Dense(self.classes, name="head")(nn.LayerNorm(epsilon=EPS, name="ln")(t[:, 0]))


def load_vit(path=VIT_NPZ, heads=2):
    d = _load(path)
    depth = len({k.split(".")[1] for k in d if k.startswith("param/blocks.")})
    params = {"patch": _conv(d, "patch"), "cls": jnp.asarray(d["param/cls"]),
              "pos": jnp.asarray(d["param/pos"]), "ln": _norm(d, "ln"),
              "head": _dense(d, "head")}
    for i in range(depth):
        p = f"blocks.{i}"
        params[f"blocks_{i}"] = {"ln1": _norm(d, f"{p}.ln1"), "ln2": _norm(d, f"{p}.ln2"),
                                 "attn": _attention(d, p, heads),
                                 "fc1": _dense(d, f"{p}.fc1"), "fc2": _dense(d, f"{p}.fc2")}
    layers = {}
    for name in (str(s) for s in d["layers"]):
        module_path = name.replace("blocks.", "blocks_").replace(".", "/")
        neuron = tuple(int(i) for i in d[f"neuron/{name}"])
        layers[name] = {"path": f"ViT/{module_path}", "module_path": module_path,
                        "neuron": neuron, "torch_neuron": neuron,
                        "to_flax": _identity, "to_torch": _identity}
    meta = {"target": d["target"], "layer": "blocks.0", "layers": layers,
            "nchw_to_nhwc": nchw_to_nhwc, "nhwc_to_nchw": nhwc_to_nchw, "ref": d}
    model = ViT(dim=d["param/cls"].shape[-1], depth=depth, heads=heads,
                hidden=d["param/blocks.0.fc1.weight"].shape[0],
                patch=d["param/patch.weight"].shape[-1], classes=d["param/head.weight"].shape[0])
    return model.apply, {"params": params}, jnp.asarray(nchw_to_nhwc(d["x"])), meta


# --------------------------------------------------------------------------- checks
def layer_output_by_name_stack(apply_fn, variables, x, path):
    """The output of the last equation of ``jax.make_jaxpr(apply_fn)(variables, x)`` whose name
    stack is ``path`` or lies under it (evaluates the jaxpr equation by equation)."""
    closed = jax.make_jaxpr(apply_fn)(variables, x)
    jaxpr = closed.jaxpr
    stacks = [str(e.source_info.name_stack) for e in jaxpr.eqns]
    hits = [i for i, s in enumerate(stacks) if s == path or s.startswith(path + "/")]
    assert hits, (path, sorted(set(stacks)))
    (out,) = jaxpr.eqns[hits[-1]].outvars
    cut = jax.extend.core.ClosedJaxpr(jaxpr.replace(outvars=[out]), closed.consts)
    (value,) = jax.extend.core.jaxpr_as_fun(cut)(*jax.tree_util.tree_leaves((variables, x)))
    return value


def _abs(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _check(name, loader, tol=1e-10):
    apply_fn, variables, x, meta = loader()
    d, target = meta["ref"], jnp.asarray(meta["target"])
    logits = apply_fn(variables, x)
    assert logits.dtype == jnp.float64

    def target_sum(xx):
        return jnp.take_along_axis(apply_fn(variables, xx), target[:, None], axis=1).sum()

    res = {"logits": _abs(logits, d["logits"]),
           "saliency": _abs(nhwc_to_nchw(jax.grad(target_sum)(x)), d["saliency"])}
    _, inter = apply_fn(variables, x, capture_intermediates=True, mutable=["intermediates"])
    for lname, info in meta["layers"].items():
        node = inter["intermediates"]
        for part in info["module_path"].split("/"):
            node = node[part]
        ref = d[f"act/{lname}"]
        act = info["to_torch"](node["__call__"][0])
        res[f"act[{lname}]"] = _abs(act, ref)
        by_stack = layer_output_by_name_stack(apply_fn, variables, x, info["path"])
        res[f"act[{lname}] by name stack {info['path']!r}"] = _abs(info["to_torch"](by_stack), ref)
        # the neuron index in the Flax layout selects the same value as torch's
        sel = np.asarray(node["__call__"][0])[(slice(None), *info["neuron"])]
        res[f"neuron[{lname}]"] = _abs(sel, ref[(slice(None), *info["torch_neuron"])])
        if f"attr/{lname}/gradcam_upsampled" in d:
            for key, mode in (("gradcam_upsampled", "bilinear"), ("guided_gradcam", "nearest")):
                raw = jnp.asarray(nchw_to_nhwc(d[f"attr/{lname}/gradcam"]))
                up = nhwc_to_nchw(captum_interpolate(raw, x.shape[1:3], mode))
                if key == "guided_gradcam":
                    up = d["guided"] * up
                res[f"{key}[{lname}] via captum_interpolate"] = _abs(up, d[f"attr/{lname}/{key}"])
    print(f"{name}: " + ", ".join(f"{k}={v:.2e}" for k, v in res.items()))
    assert all(v <= tol for v in res.values()), (name, res)
    return res


def check_twins():
    """Flax twins vs torch (float64): logits, saliency and target-layer outputs to 1e-10."""
    return {"cnn": _check("cnn", load_cnn), "vit": _check("vit", load_vit)}


if __name__ == "__main__":
    check_twins()
