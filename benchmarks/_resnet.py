"""ResNet-50 (v1.5) in pure JAX (no Flax), random He-normal weights, for benchmarks.

NHWC, ReLU via ``jax.nn.relu``, 3x3/2 max-pool, bottleneck blocks (3, 4, 6, 3) with the stride on
the 3x3 convolution, batch norm in inference mode with fixed statistics (running mean 0, variance
1, gamma 1 -- 0.5 on each block's last one, to keep activations moderate with random weights --
beta 0), global average pool, dense 1000. Paddings are explicit and equal to torchvision's (3 for
the 7x7 stem, 1 for 3x3), so ``to_torch`` builds the same network with the same weights in PyTorch
(optional: torch is never a dependency), for comparisons with Captum. ``blocks``/``width`` give
smaller networks of the same shape (for smoke tests).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BLOCKS = (3, 4, 6, 3)
WIDTH = 64
EPS = 1e-5


def _bn(c: int, gamma: float = 1.0) -> dict:
    return {"gamma": jnp.full(c, gamma), "beta": jnp.zeros(c), "mean": jnp.zeros(c),
            "var": jnp.ones(c)}


def _he(key, kh, kw, cin, cout):
    return jax.random.normal(key, (kh, kw, cin, cout)) * np.sqrt(2.0 / (kh * kw * cin))


def init_params(key: jax.Array, *, blocks=BLOCKS, width: int = WIDTH,
                num_classes: int = 1000) -> dict:
    """``{"stem": {w, bn}, "stages": [[block]], "fc": (w, b)}``; conv weights HWIO."""
    keys = iter(jax.random.split(key, 4 * sum(blocks) + 2))
    params = {"stem": {"w": _he(next(keys), 7, 7, 3, width), "bn": _bn(width)}, "stages": []}
    cin = width
    for i, nb in enumerate(blocks):
        f = width * 2**i
        stage = []
        for b in range(nb):
            blk = {"w1": _he(next(keys), 1, 1, cin, f), "bn1": _bn(f),
                   "w2": _he(next(keys), 3, 3, f, f), "bn2": _bn(f),
                   "w3": _he(next(keys), 1, 1, f, 4 * f), "bn3": _bn(4 * f, 0.5)}
            if b == 0:
                blk["wd"] = _he(next(keys), 1, 1, cin, 4 * f)
                blk["bnd"] = _bn(4 * f)
            stage.append(blk)
            cin = 4 * f
        params["stages"].append(stage)
    k = next(keys)
    params["fc"] = (jax.random.normal(k, (cin, num_classes)) * np.sqrt(1.0 / cin),
                    jnp.zeros(num_classes))
    return params


def _conv(x, w, stride=1, pad=0):
    return lax.conv_general_dilated(x, w.astype(x.dtype), (stride, stride),
                                    ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _batchnorm(x, p):
    scale = p["gamma"] * lax.rsqrt(p["var"] + EPS)
    return (x - p["mean"].astype(x.dtype)) * scale.astype(x.dtype) + p["beta"].astype(x.dtype)


def _block(x, p, stride):
    y = jax.nn.relu(_batchnorm(_conv(x, p["w1"]), p["bn1"]))
    y = jax.nn.relu(_batchnorm(_conv(y, p["w2"], stride, 1), p["bn2"]))
    y = _batchnorm(_conv(y, p["w3"]), p["bn3"])
    if "wd" in p:
        x = _batchnorm(_conv(x, p["wd"], stride), p["bnd"])
    return jax.nn.relu(x + y)


def logits(params: dict, x: jax.Array) -> jax.Array:
    """Logits of a batch ``(N, H, W, 3)`` -> ``(N, num_classes)``."""
    h = jax.nn.relu(_batchnorm(_conv(x, params["stem"]["w"], 2, 3), params["stem"]["bn"]))
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                          ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i, stage in enumerate(params["stages"]):
        for b, blk in enumerate(stage):
            h = _block(h, blk, 2 if (b == 0 and i > 0) else 1)
    w, bias = params["fc"]
    return jnp.mean(h, axis=(1, 2)) @ w.astype(h.dtype) + bias.astype(h.dtype)


def logit_score(params: dict, x: jax.Array, label: int | None = None) -> jax.Array:
    """Score of ONE example ``(H, W, 3)``: the max logit, or ``label``'s logit."""
    out = logits(params, x[None])[0]
    return jnp.max(out) if label is None else out[label]


def to_torch(params: dict):
    """The same network and weights as a ``torch.nn.Module`` taking NCHW input (needs torch)."""
    import torch
    from torch import nn

    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))

    def conv(w, stride=1, pad=0):
        w = np.asarray(w)
        m = nn.Conv2d(w.shape[2], w.shape[3], w.shape[0], stride, pad, bias=False)
        with torch.no_grad():
            m.weight.copy_(t(np.transpose(w, (3, 2, 0, 1))))  # HWIO -> OIHW
        return m

    def bn(p):
        m = nn.BatchNorm2d(p["gamma"].shape[0], eps=EPS)
        with torch.no_grad():
            for name in ("mean", "var"):
                getattr(m, f"running_{name}").copy_(t(p[name]))
            m.weight.copy_(t(p["gamma"]))
            m.bias.copy_(t(p["beta"]))
        return m

    class Bottleneck(nn.Module):
        def __init__(self, p, stride):
            super().__init__()
            self.c1, self.b1 = conv(p["w1"]), bn(p["bn1"])
            self.c2, self.b2 = conv(p["w2"], stride, 1), bn(p["bn2"])
            self.c3, self.b3 = conv(p["w3"]), bn(p["bn3"])
            self.down = (nn.Sequential(conv(p["wd"], stride), bn(p["bnd"])) if "wd" in p
                         else nn.Identity())
            # one ReLU module per use, so Captum's GuidedBackprop can hook each
            self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

        def forward(self, x):
            y = self.r1(self.b1(self.c1(x)))
            y = self.r2(self.b2(self.c2(y)))
            return self.r3(self.down(x) + self.b3(self.c3(y)))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(params["stem"]["w"], 2, 3), bn(params["stem"]["bn"]),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            self.blocks = nn.Sequential(*(
                Bottleneck(blk, 2 if (b == 0 and i > 0) else 1)
                for i, stage in enumerate(params["stages"]) for b, blk in enumerate(stage)))
            w, b = params["fc"]
            self.fc = nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                self.fc.weight.copy_(t(np.asarray(w).T))
                self.fc.bias.copy_(t(b))

        def forward(self, x):
            return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    return ResNet().eval()
