"""Modified-backprop throughput vs the plain gradient, measured in one run.

    python benchmarks/backprop.py                 # CIFAR CNN, B=32 (CPU default)
    python benchmarks/backprop.py --resnet --batch 32   # ResNet-50 at 224x224 (GPU sizes)

Prints ms per batch (median of --repeats after warm-up; compile time separately) and the ratio
to plain ``jax.jit(jax.vmap(jax.grad(score)))`` measured in the same process. Not a test.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxattr as ja


class CifarCNN(nn.Module):
    """The RectGrad paper's CIFAR-10 CNN: conv32-conv32-pool-conv64-conv64-pool-dense256-dense10."""

    @nn.compact
    def __call__(self, x):
        for feats in (32, 64):
            x = nn.relu(nn.Conv(feats, (3, 3), padding="SAME")(x))
            x = nn.relu(nn.Conv(feats, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(10)(x)


class Bottleneck(nn.Module):
    feats: int
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        bn = partial(nn.BatchNorm, use_running_average=True)
        y = nn.relu(bn()(nn.Conv(self.feats, (1, 1), use_bias=False)(x)))
        y = nn.Conv(self.feats, (3, 3), (self.strides,) * 2, padding="SAME", use_bias=False)(y)
        y = nn.relu(bn()(y))
        y = bn()(nn.Conv(self.feats * 4, (1, 1), use_bias=False)(y))
        if x.shape != y.shape:
            x = nn.Conv(self.feats * 4, (1, 1), (self.strides,) * 2, use_bias=False)(x)
            x = bn()(x)
        return nn.relu(x + y)


class ResNet50(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(64, (7, 7), (2, 2), padding="SAME", use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for i, (blocks, feats) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)):
            for b in range(blocks):
                x = Bottleneck(feats, strides=2 if (b == 0 and i > 0) else 1)(x)
        return nn.Dense(1000)(jnp.mean(x, axis=(1, 2)))


def timeit(fn, x, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    compile_s = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(x))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3, compile_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnet", action="store_true", help="ResNet-50 at 224x224 instead")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.resnet:
        model, shape, batch = ResNet50(), (224, 224, 3), args.batch or 2
    else:
        model, shape, batch = CifarCNN(), (32, 32, 3), args.batch or 32
    x = jax.random.uniform(jax.random.key(0), (batch, *shape), jnp.float32)
    params = model.init(jax.random.key(1), x[:1])

    def score(xi):
        return jnp.max(model.apply(params, xi[None])[0])

    methods = {
        "plain jit(vmap(grad))": jax.grad(score),
        "saliency": ja.saliency(score),
        "guided_backprop": ja.guided_backprop(score),
        "rectgrad q=98 (radix/bisection)": ja.rectgrad(score),
        "rectgrad q=98 (top_k)": ja.rectgrad(score, select="top_k"),
        "rectgrad q=98 (sort)": ja.rectgrad(score, select="sort"),
        "rectgrad tau=0": ja.rectgrad(score, tau=0.0),
        "rectgrad q=98 prr+padding": ja.rectgrad(score, maxpool="prr", padding_trick=True),
    }
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{'ResNet-50' if args.resnet else 'CIFAR CNN'}, batch {batch}, input {shape}")
    base = None
    for name, g in methods.items():
        ms, comp = timeit(jax.jit(jax.vmap(g)), x, args.repeats)
        base = base or ms
        print(f"{name:34s} {ms:9.2f} ms  x{ms / base:5.2f}   (compile {comp:5.1f} s)")


if __name__ == "__main__":
    main()
