"""Flax (linen) twins of the torch models in tests/reference/zennit_*.npz (Zennit LRP references).

The npz files are written by ``tests/reference/make_zennit_references.py``; weights are in
torch layout and are converted here:

* Conv2d weight ``(O, I, kH, kW)`` (OIHW)  -> Flax ``kernel`` ``(kH, kW, I, O)`` (HWIO), i.e.
  ``w.transpose(2, 3, 1, 0)``; bias unchanged.  Torch conv is cross-correlation, as is lax.
* Linear weight ``(out, in)`` -> Flax Dense ``kernel`` ``(in, out)`` (``w.T``).
* Inputs NCHW -> NHWC (``x.transpose(0, 2, 3, 1)``); maps/saliency compare after the
  inverse transpose (``.transpose(0, 3, 1, 2)``).
* Flatten: torch flattens NCHW in (C, H, W) order, so the VGG twin transposes NHWC -> NCHW
  before ``reshape`` and the Dense kernel is used unchanged.
* BatchNorm2d ``weight/bias/running_mean/running_var`` -> ``params[scale, bias]`` and
  ``batch_stats[mean, var]`` of ``nn.BatchNorm(use_running_average=True, epsilon=1e-5)``.
* MaxPool: ``nn.max_pool`` pads with -inf, as torch does.

Loaders return ``(apply_fn, variables, x_nhwc)`` where ``apply_fn(variables, x_nhwc) -> logits``.
``check_twins()`` checks logits (and ``logits_canonized`` of the ResNet, see below) and the
input gradient of the target logit against ``saliency``; run ``python tests/lrp_models.py``.

``load_resnet(path, zennit_canonized=True)`` returns the forward pass Zennit actually
attributes after ``ResNetCanonizer``: BN folded into the preceding conv (with a bias), and
every BN left behind as ``x / sqrt(1 + 1e-5)`` (Zennit keeps BN ``eps`` when it sets the
BN to "identity").
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

jax.config.update("jax_enable_x64", True)

REF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
VGG_NPZ = os.path.join(REF_DIR, "zennit_vgg.npz")
RESNET_NPZ = os.path.join(REF_DIR, "zennit_resnet.npz")
BN_EPS = 1e-5


def _conv_kernel(w):
    return jnp.asarray(np.asarray(w).transpose(2, 3, 1, 0))


def _dense_kernel(w):
    return jnp.asarray(np.asarray(w).T)


def nhwc(x):
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- VGG
class VGGTwin(nn.Module):
    """conv(3->8)-ReLU-conv(8->8)-ReLU-maxpool2-conv(8->16)-ReLU-maxpool2-flatten(CHW)-fc-ReLU-fc(->10)."""

    hidden: int = 16
    classes: int = 10

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        x = nn.relu(nn.Conv(8, (3, 3), padding=pad, name="conv1")(x))
        x = nn.relu(nn.Conv(8, (3, 3), padding=pad, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), padding=pad, name="conv3")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch (C, H, W) flatten order
        x = nn.relu(nn.Dense(self.hidden, name="fc1")(x))
        return nn.Dense(self.classes, name="fc2")(x)


def load_vgg(path=VGG_NPZ):
    d = np.load(path)
    params = {}
    for name in ("conv1", "conv2", "conv3"):
        params[name] = {
            "kernel": _conv_kernel(d[f"param/{name}.weight"]),
            "bias": jnp.asarray(d[f"param/{name}.bias"]),
        }
    for name in ("fc1", "fc2"):
        params[name] = {
            "kernel": _dense_kernel(d[f"param/{name}.weight"]),
            "bias": jnp.asarray(d[f"param/{name}.bias"]),
        }
    model = VGGTwin(hidden=d["param/fc1.weight"].shape[0], classes=d["param/fc2.weight"].shape[0])
    return model.apply, {"params": params}, nhwc(d["x"])


# --------------------------------------------------------------------------- ResNet
class _BN(nn.Module):
    """BatchNorm in inference mode; ``canonized``: Zennit's post-merge BN, x / sqrt(1 + eps)."""

    canonized: bool = False

    @nn.compact
    def __call__(self, x):
        if self.canonized:
            return x / jnp.sqrt(1.0 + BN_EPS)
        return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)


class BasicBlockTwin(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    canonized: bool = False

    @nn.compact
    def __call__(self, x):
        c = self.canonized
        pad = ((1, 1), (1, 1))
        out = nn.Conv(
            self.planes, (3, 3), strides=self.stride, padding=pad, use_bias=c, name="conv1"
        )(x)
        out = nn.relu(_BN(c, name="bn1")(out))
        out = nn.Conv(self.planes, (3, 3), padding=pad, use_bias=c, name="conv2")(out)
        out = _BN(c, name="bn2")(out)
        identity = x
        if self.downsample:
            identity = nn.Conv(
                self.planes,
                (1, 1),
                strides=self.stride,
                padding="VALID",
                use_bias=c,
                name="downsample_0",
            )(x)
            identity = _BN(c, name="downsample_1")(identity)
        return nn.relu(identity + out)  # Zennit: torch.stack([identity, out], -1) -> Sum


class ResNetTwin(nn.Module):
    """torchvision ResNet(BasicBlock, [1, 1, 1, 1]) with widths ``widths`` (NHWC)."""

    widths: tuple = (4, 8, 8, 16)
    classes: int = 10
    canonized: bool = False

    @nn.compact
    def __call__(self, x):
        c = self.canonized
        x = nn.Conv(
            self.widths[0], (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=c, name="conv1"
        )(x)
        x = nn.relu(_BN(c, name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # -inf padding
        inplanes = self.widths[0]
        for i, planes in enumerate(self.widths):
            stride = 1 if i == 0 else 2
            ds = stride != 1 or inplanes != planes
            x = BasicBlockTwin(planes, stride, ds, c, name=f"layer{i + 1}_0")(x)
            inplanes = planes
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        return nn.Dense(self.classes, name="fc")(x)


def _bn_merge(d, conv, bn):
    """Zennit MergeBatchNorm: W' = W * g / sqrt(var + eps),
    b' = (b_or_0 - mean) * g / sqrt(var + eps) + beta."""
    w = d[f"{conv}.weight"]
    b = d.get(f"{conv}.bias", np.zeros(w.shape[0]))
    scale = d[f"{bn}.weight"] / np.sqrt(d[f"{bn}.running_var"] + BN_EPS)
    return w * scale[:, None, None, None], (b - d[f"{bn}.running_mean"]) * scale + d[f"{bn}.bias"]


def load_resnet(path=RESNET_NPZ, zennit_canonized=False):
    z = np.load(path)
    d = {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
    widths = tuple(d[f"layer{i}.0.conv2.weight"].shape[0] for i in range(1, 5))
    c = zennit_canonized

    def conv_bn(torch_conv, torch_bn):
        if c:
            w, b = _bn_merge(d, torch_conv, torch_bn)
            return {"kernel": _conv_kernel(w), "bias": jnp.asarray(b)}, None, None
        return (
            {"kernel": _conv_kernel(d[f"{torch_conv}.weight"])},
            {
                "bn": {
                    "scale": jnp.asarray(d[f"{torch_bn}.weight"]),
                    "bias": jnp.asarray(d[f"{torch_bn}.bias"]),
                }
            },
            {
                "bn": {
                    "mean": jnp.asarray(d[f"{torch_bn}.running_mean"]),
                    "var": jnp.asarray(d[f"{torch_bn}.running_var"]),
                }
            },
        )

    params, stats = {}, {}

    def put(scope_p, scope_s, conv_name, bn_name, torch_conv, torch_bn):
        kp, bp, bs = conv_bn(torch_conv, torch_bn)
        scope_p[conv_name] = kp
        if bp is not None:
            scope_p[bn_name] = bp
            scope_s[bn_name] = bs

    put(params, stats, "conv1", "bn1", "conv1", "bn1")
    for i in range(1, 5):
        bp, bs = {}, {}
        t = f"layer{i}.0"
        put(bp, bs, "conv1", "bn1", f"{t}.conv1", f"{t}.bn1")
        put(bp, bs, "conv2", "bn2", f"{t}.conv2", f"{t}.bn2")
        if f"{t}.downsample.0.weight" in d:
            put(bp, bs, "downsample_0", "downsample_1", f"{t}.downsample.0", f"{t}.downsample.1")
        params[f"layer{i}_0"] = bp
        if bs:
            stats[f"layer{i}_0"] = bs
    params["fc"] = {"kernel": _dense_kernel(d["fc.weight"]), "bias": jnp.asarray(d["fc.bias"])}
    variables = {"params": params}
    if not c:
        variables["batch_stats"] = stats
    model = ResNetTwin(widths=widths, classes=d["fc.weight"].shape[0], canonized=c)
    return model.apply, variables, nhwc(z["x"])


# --------------------------------------------------------------------------- checks
def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _check(name, path, loader, tol=1e-10, **kw):
    z = np.load(path)
    apply_fn, variables, x = loader(path, **kw)
    targets = jnp.asarray(z["targets"])
    logits = apply_fn(variables, x)
    ref_logits = z["logits_canonized"] if kw.get("zennit_canonized") else z["logits"]

    def target_sum(xx):
        return jnp.take_along_axis(apply_fn(variables, xx), targets[:, None], axis=1).sum()

    grad = nchw(jax.grad(target_sum)(x))
    res = {
        "logits_abs": float(np.abs(np.asarray(logits) - ref_logits).max()),
        "logits_rel": _rel(logits, ref_logits),
    }
    if not kw.get("zennit_canonized"):
        res["saliency_abs"] = float(np.abs(grad - z["saliency"]).max())
        res["saliency_rel"] = _rel(grad, z["saliency"])
    print(f"{name}: " + ", ".join(f"{k}={v:.3e}" for k, v in res.items()))
    assert logits.dtype == jnp.float64
    assert all(v <= tol for k, v in res.items() if k.endswith("_abs")), (name, res)
    return res


def check_twins():
    """Flax twins vs torch (float64): logits and saliency to 1e-10 absolute."""
    return {
        "vgg": _check("vgg", VGG_NPZ, load_vgg),
        "resnet": _check("resnet", RESNET_NPZ, load_resnet),
        "resnet_zennit_canonized": _check(
            "resnet (Zennit-canonized forward)", RESNET_NPZ, load_resnet, zennit_canonized=True
        ),
    }


if __name__ == "__main__":
    check_twins()
