"""The RectGrad paper's CIFAR-10 CNN in pure JAX (no Flax), for benchmarks.

conv32-conv32-maxpool-conv64-conv64-maxpool-dense256-dense10, 3x3 SAME convolutions, 2x2 max-pools,
ReLU via ``jax.nn.relu``, NHWC, input 32x32x3. ``to_torch`` builds the same network with the same
weights in PyTorch (optional: torch is never a dependency), for comparisons with Captum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

CONV_CHANNELS = (32, 32, 64, 64)
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def init_params(key: jax.Array, num_classes: int = NUM_CLASSES) -> dict:
    """He-normal weights, zero biases: ``{"conv": [(w HWIO, b)] * 4, "dense": [(w, b)] * 2}``."""
    keys = jax.random.split(key, 6)
    conv, c_in = [], IMAGE_SHAPE[-1]
    for k, c_out in zip(keys[:4], CONV_CHANNELS, strict=True):
        w = jax.random.normal(k, (3, 3, c_in, c_out)) * np.sqrt(2.0 / (9 * c_in))
        conv.append((w, jnp.zeros(c_out)))
        c_in = c_out
    flat = (IMAGE_SHAPE[0] // 4) * (IMAGE_SHAPE[1] // 4) * CONV_CHANNELS[-1]
    dense = []
    for k, (d_in, d_out) in zip(keys[4:], ((flat, 256), (256, num_classes)), strict=True):
        dense.append((jax.random.normal(k, (d_in, d_out)) * np.sqrt(2.0 / d_in), jnp.zeros(d_out)))
    return {"conv": conv, "dense": dense}


def _conv(x, w, b):
    y = lax.conv_general_dilated(
        x, w.astype(x.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + b.astype(x.dtype)


def _maxpool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def logits(params: dict, x: jax.Array) -> jax.Array:
    """Logits of a batch ``(N, 32, 32, 3)`` -> ``(N, 10)``."""
    h = x
    for i, (w, b) in enumerate(params["conv"]):
        h = jax.nn.relu(_conv(h, w, b))
        if i % 2 == 1:
            h = _maxpool(h)
    h = h.reshape(h.shape[0], -1)  # flattened in (h, w, c) order
    (w1, b1), (w2, b2) = params["dense"]
    h = jax.nn.relu(h @ w1.astype(h.dtype) + b1.astype(h.dtype))
    return h @ w2.astype(h.dtype) + b2.astype(h.dtype)


def logit_score(params: dict, x: jax.Array, label: int | None = None) -> jax.Array:
    """Score of ONE example ``(32, 32, 3)``: the max logit (as RectGrad), or ``label``'s logit."""
    out = logits(params, x[None])[0]
    return jnp.max(out) if label is None else out[label]


def to_torch(params: dict):
    """The same network and weights as a ``torch.nn.Module`` taking NCHW input (needs torch)."""
    import torch
    from torch import nn

    class TorchCNN(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (IMAGE_SHAPE[-1],) + CONV_CHANNELS
            self.convs = nn.ModuleList(
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(4)
            )
            flat = params["dense"][0][0].shape[0]
            self.fc1 = nn.Linear(flat, 256)
            self.fc2 = nn.Linear(256, params["dense"][1][0].shape[1])
            self.pool = nn.MaxPool2d(2)
            # one ReLU module per use, so Captum's GuidedBackprop/Deconvolution can hook each
            self.relus = nn.ModuleList(nn.ReLU() for _ in range(5))

        def forward(self, x):
            h = x
            for i, conv in enumerate(self.convs):
                h = self.relus[i](conv(h))
                if i % 2 == 1:
                    h = self.pool(h)
            h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # JAX's (h, w, c) flatten order
            return self.fc2(self.relus[4](self.fc1(h)))

    model = TorchCNN()
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
    with torch.no_grad():
        for conv, (w, b) in zip(model.convs, params["conv"], strict=True):
            conv.weight.copy_(t(np.transpose(np.asarray(w), (3, 2, 0, 1))))  # HWIO -> OIHW
            conv.bias.copy_(t(b))
        for fc, (w, b) in zip((model.fc1, model.fc2), params["dense"], strict=True):
            fc.weight.copy_(t(np.asarray(w).T))
            fc.bias.copy_(t(b))
    return model.eval()
