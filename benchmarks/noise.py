"""Benchmark: jaxattr smoothgrad / vargrad vs a plain hand-written JAX loop (and Captum if present).

CIFAR-sized CNN (benchmarks/_cnn.py), batch B, N noise samples evaluated `chunk` at a time. The
baseline is what a user would write: `lax.map` over chunks of `vmap(vmap(grad))`, one noise draw
per chunk, summing (SmoothGrad) or summing values and squares (VarGrad, one-pass formula). Ratios
are against that baseline measured in the same run; compile time is reported separately; times
are the median of --repeats runs after one warm-up. Goal: <= 1.05x the plain loop.

    python benchmarks/noise.py                       # B=32, N=50, chunk=10 on CPU
    python benchmarks/noise.py --batch 8 --n 20      # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cnn  # noqa: E402

import jaxattr as ja  # noqa: E402


def plain_loop(params, n, chunk, sigma, stat):
    """The hand-written baseline: lax.map over chunks of vmap(grad) on a batch."""
    grad1 = jax.grad(lambda x: _cnn.logit_score(params, x))
    grads = jax.vmap(jax.vmap(grad1))

    def run(xs, key):
        def one_chunk(c):
            z = jax.random.normal(jax.random.fold_in(key, c), (chunk,) + xs.shape, xs.dtype)
            g = grads(xs[None] + sigma * z)
            return (g.sum(0), (g * g).sum(0)) if stat == "var" else g.sum(0)

        parts = lax.map(one_chunk, jnp.arange(n // chunk))
        if stat == "var":
            s1, s2 = parts[0].sum(0), parts[1].sum(0)
            return (s2 - s1 * s1 / n) / (n - 1)
        return parts.sum(0) / n

    return jax.jit(run)


def jaxattr_fn(params, n, chunk, sigma, stat, unroll=1):
    a = ja.saliency(lambda x: _cnn.logit_score(params, x))
    transform = ja.vargrad if stat == "var" else ja.smoothgrad
    g = transform(a, sigma=sigma, n=n, chunk=chunk, relative=False, unroll=unroll)
    batched = jax.jit(jax.vmap(g))
    return lambda xs, key: batched(xs, jax.random.split(key, xs.shape[0]))


def timed_interleaved(fns, *args, repeats):
    """First call of each (compile = first call minus the median), a warm-up round, then timed
    rounds that run every function once (so load drift hits all alike).

    Returns [(median seconds, compile seconds)] in the order of fns."""
    first = []
    for fn in fns:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first.append(time.perf_counter() - t0)
    for fn in fns:
        jax.block_until_ready(fn(*args))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts.append(time.perf_counter() - t0)
    medians = [statistics.median(ts) for ts in times]
    return [(m, f - m) for m, f in zip(medians, first, strict=True)]


def captum_times(params, xs_np, n, chunk, sigma, repeats):
    try:
        import torch
        from captum.attr import NoiseTunnel, Saliency
    except ImportError:
        print("captum: torch/captum not installed, skipped")
        return {}
    torch.set_num_threads(os.cpu_count() or 1)
    model = _cnn.to_torch(params)
    x = torch.from_numpy(np.transpose(xs_np, (0, 3, 1, 2)).copy())
    with torch.no_grad():
        target = model(x).argmax(1)  # the max logit, as logit_score
    nt = NoiseTunnel(Saliency(model))
    out = {}
    for stat, nt_type in (("mean", "smoothgrad"), ("var", "vargrad")):

        def run(nt_type=nt_type):
            return nt.attribute(
                x,
                nt_type=nt_type,
                nt_samples=n,
                nt_samples_batch_size=chunk,
                stdevs=sigma,
                target=target,
                abs=False,
            )

        run()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        out[stat] = statistics.median(times)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument(
        "--sigma", type=float, default=0.15, help="absolute noise level (inputs in [0, 1])"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--unroll", action="store_true",
                   help="jaxattr with unroll=True (straight-line chunks; fast on XLA:CPU)")
    args = p.parse_args(argv)
    if args.n % args.chunk:
        p.error("the plain loop needs chunk to divide n")

    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; CIFAR CNN, B={args.batch}, "
        f"N={args.n}, chunk={args.chunk}, jaxattr unroll={args.unroll}, "
        f"median of {args.repeats} after warm-up"
    )
    key = jax.random.key(0)
    params = _cnn.init_params(key)
    xs = jax.random.uniform(jax.random.key(1), (args.batch,) + _cnn.IMAGE_SHAPE, jnp.float32)
    cfg = (params, args.n, args.chunk, args.sigma)

    names = ("smoothgrad", "vargrad")
    fns = [
        f
        for stat in ("mean", "var")
        for f in (plain_loop(*cfg, stat), jaxattr_fn(*cfg, stat, unroll=args.unroll or 1))
    ]
    results = timed_interleaved(fns, xs, key, repeats=args.repeats)
    rows = [(name, *results[2 * i], *results[2 * i + 1]) for i, name in enumerate(names)]
    captum = captum_times(params, np.asarray(xs), args.n, args.chunk, args.sigma, args.repeats)

    print(
        f"{'method':12s} {'plain ms':>10s} {'jaxattr ms':>11s} {'ratio':>7s} "
        f"{'captum ms':>10s} {'compile s, plain / jaxattr':>27s}"
    )
    for (name, base, bc, ours, oc), stat in zip(rows, ("mean", "var"), strict=True):
        cap = f"{1e3 * captum[stat]:10.1f}" if stat in captum else f"{'-':>10s}"
        print(
            f"{name:12s} {1e3 * base:10.1f} {1e3 * ours:11.1f} {ours / base:7.3f} {cap} "
            f"{bc:14.2f} / {oc:.2f}"
        )


if __name__ == "__main__":
    main()
