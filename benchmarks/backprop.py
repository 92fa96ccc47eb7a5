"""Modified-backprop throughput vs the plain gradient, measured in one run.

    python benchmarks/backprop.py                 # CIFAR CNN, B=32 (CPU default)
    python benchmarks/backprop.py --resnet --batch 32   # ResNet-50 at 224x224 (GPU sizes)

Prints ms per batch (median of --repeats interleaved rounds after warm-up; compile time
separately) and the ratio to plain ``jax.jit(jax.vmap(jax.grad(score)))`` paired within each
round (median and [min, max] over rounds), and the peak compiled memory (XLA's
``memory_analysis``: arguments + outputs + temporaries) with its ratio to the plain gradient's.
``--only lrp`` restricts the methods (substrings, comma-separated). Not a test.
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


def paired(fns: dict, x, repeats: int) -> dict:
    """Compile each, then time them interleaved (one call each per round): per-method ms per
    round, so ratios to the first entry are paired within a round."""
    compiled, compile_s = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        compile_s[name] = time.perf_counter() - t0
        compiled[name] = fn
    rounds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in compiled.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(x))
            rounds[name].append((time.perf_counter() - t) * 1e3)
    return {name: (np.asarray(ms), compile_s[name]) for name, ms in rounds.items()}


def peak_mb(fn, x) -> float | None:
    """Peak compiled memory of ``fn(x)`` (arguments + outputs + temporaries), from XLA."""
    try:
        m = fn.lower(x).compile().memory_analysis()
        return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20
    except Exception:  # pragma: no cover - a backend without memory_analysis
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnet", action="store_true", help="ResNet-50 at 224x224 instead")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", default="", help="comma-separated substrings of method names")
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
        "deconvnet": ja.deconvnet(score),
        "rectgrad q=98 (auto)": ja.rectgrad(score),
        "rectgrad q=98 (host)": ja.rectgrad(score, select="host"),
        "rectgrad q=98 (bracket)": ja.rectgrad(score, select="bracket"),
        "rectgrad q=98 (radix)": ja.rectgrad(score, select="radix"),
        "rectgrad tau=0": ja.rectgrad(score, tau=0.0),
        "rectgrad q=98 prr+padding": ja.rectgrad(score, maxpool="prr", padding_trick=True),
        "lrp epsilon_plus_flat": ja.lrp(score, "epsilon_plus_flat"),
        "lrp epsilon_alpha2_beta1": ja.lrp(score, "epsilon_alpha2_beta1"),
        "lrp epsilon (LRP-eps everywhere)": ja.lrp(score, ja.relevance.Epsilon()),
        # DeepLIFT has no rule for a max over the logits (reduce_max): one logit instead
        "deeplift (zero baseline, logit 0)": ja.deeplift(lambda xi: model.apply(params,
                                                                              xi[None])[0, 0]),
    }
    if not args.resnet:  # the CIFAR CNN's last convolution is the Flax module "Conv_3"
        methods["grad_cam (last conv)"] = ja.grad_cam(score, "Conv_3")
        methods["guided_grad_cam (last conv)"] = ja.guided_grad_cam(score, "Conv_3")
    if args.only:
        methods = {k: v for k, v in methods.items()
                   if k.startswith("plain") or any(o in k for o in args.only.split(","))}
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{'ResNet-50' if args.resnet else 'CIFAR CNN'}, batch {batch}, input {shape}, "
          f"{args.repeats} interleaved rounds")
    jitted = {k: jax.jit(jax.vmap(g)) for k, g in methods.items()}
    results = paired(jitted, x, args.repeats)
    base = results["plain jit(vmap(grad))"][0]
    mem = {k: peak_mb(f, x) for k, f in jitted.items()}
    print(f"{'method':34s} {'median ms':>10s} {'ratio':>7s} {'[min, max] paired':>18s}"
          f"   {'peak MB (ratio)':>16s}")
    for name, (ms, comp) in results.items():
        r = ms / base
        m = mem[name]
        m_text = "n/a" if m is None else f"{m:7.1f} ({m / mem['plain jit(vmap(grad))']:.2f})"
        print(f"{name:34s} {np.median(ms):10.2f} {np.median(r):7.2f}   "
              f"[{r.min():.2f}, {r.max():.2f}]   {m_text:>16s}   (compile {comp:5.1f} s)")


if __name__ == "__main__":
    main()
