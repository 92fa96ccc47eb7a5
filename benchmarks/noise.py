"""Benchmark: the noise and path transforms at every pass size against the straight-line limit.

The RectGrad paper's CIFAR CNN (benchmarks/_cnn.py), batch ``--batch``, ``--n`` samples (steps
for Integrated Gradients) evaluated ``chunk`` at a time. For each chunk the baseline is the
straight-line limit of issue 10: the same gradient evaluations as plain ``jit(vmap(grad))`` calls
over batch x chunk examples, one top-level call per pass, on inputs prepared beforehand. Printed
per chunk: the baseline's ms, each transform's ratio to it (median of the per-round ratios of
paired, interleaved rounds, with the min and max), and SmoothGrad's compiled temporary memory
(``memory_analysis``), which must stay bounded by the pass, flat in ``n``. ``auto`` is
``chunk="auto"`` (the default), compared with the straight line at the chunk it chose. Goal:
every ratio <= 1.15 at every chunk.

    python benchmarks/noise.py                 # B=8, N=50, chunks 1 2 5 10 25 50 auto (~5 min)
    python benchmarks/noise.py --chunks 5 auto --repeats 3
    python benchmarks/noise.py --rows          # ms per gradient by rows per top-level call

``--rows`` is the measurement behind ``chunk="auto"``'s pass size on CPU
(``jaxattr._budget.CPU_PASS_BYTES``): one gradient's cost when ``T`` gradients are computed in
calls of ``rows`` examples each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cnn  # noqa: E402
from _timing import paired_rounds  # noqa: E402

import jaxattr as ja  # noqa: E402
from jaxattr._budget import auto_chunk  # noqa: E402

SIGMA = 0.15  # absolute noise level (inputs in [0, 1])


def transforms(f, n: int, chunk) -> dict:
    """The four transforms, each as ``(xs, keys) -> maps`` over the batch, jitted."""
    a = ja.saliency(f)
    noise = dict(sigma=SIGMA, n=n, chunk=chunk, relative=False)
    ig = jax.jit(jax.vmap(ja.integrated_gradients(f, steps=n, chunk=chunk)))
    fns = {name: jax.jit(jax.vmap(t(a, **noise))) for name, t in (
        ("smoothgrad", ja.smoothgrad), ("smoothgrad_sq", ja.smoothgrad_sq),
        ("vargrad", ja.vargrad))}
    out = {name: (lambda xs, keys, g=g: g(xs, keys)) for name, g in fns.items()}
    out["integrated_gradients"] = lambda xs, keys: ig(xs)
    return out


def straight_line(f, xs, n: int, chunk: int):
    """``ceil(n / chunk)`` top-level ``jit(vmap(grad))`` calls over batch x pass examples."""
    grads = jax.jit(jax.vmap(jax.grad(f)))
    b = xs.shape[0]
    noisy = xs[:, None] + SIGMA * jax.random.normal(jax.random.key(7), (b, n) + xs.shape[1:])
    passes = [noisy[:, i:i + chunk].reshape((-1,) + xs.shape[1:]) for i in range(0, n, chunk)]
    jax.block_until_ready(passes)
    return lambda: [grads(p) for p in passes]


def resolved_auto(f, xs, n: int) -> int:
    a = ja.saliency(f)
    return auto_chunk(a, xs[0], n, max_memory=None, batch=xs.shape[0], fn="benchmark")


def chunk_table(args, f, xs, keys) -> None:
    print(f"{'chunk':>6s} {'rows':>5s} {'straight ms':>12s} "
          + " ".join(f"{name:>21s}" for name in ("smoothgrad", "smoothgrad_sq", "vargrad",
                                                   "integrated_gradients"))
          + f" {'SG temp MB':>11s}")
    for spec in args.chunks:
        chunk = "auto" if spec == "auto" else int(spec)
        c = resolved_auto(f, xs, args.n) if chunk == "auto" else chunk
        fns = {"straight": straight_line(f, xs, args.n, c)}
        ours = transforms(f, args.n, chunk)
        fns.update({name: (lambda g=g: g(xs, keys)) for name, g in ours.items()})
        times, _, _ = paired_rounds(fns, args.repeats)
        base = times["straight"]
        cells = []
        for name in ours:
            ratios = [t / b for t, b in zip(times[name], base, strict=True)]
            cells.append(f"{statistics.median(ratios):5.2f} [{min(ratios):4.2f}, "
                         f"{max(ratios):4.2f}]".rjust(21))
        sg = jax.jit(jax.vmap(ja.smoothgrad(ja.saliency(f), sigma=SIGMA, n=args.n, chunk=chunk,
                                            relative=False)))
        temp = sg.lower(xs, keys).compile().memory_analysis().temp_size_in_bytes / 2**20
        label = f"auto={c}" if chunk == "auto" else str(c)
        print(f"{label:>6s} {c * xs.shape[0]:5d} {1e3 * statistics.median(base):12.1f} "
              + " ".join(cells) + f" {temp:11.1f}", flush=True)


def rows_table(args, f) -> None:
    grads = jax.jit(jax.vmap(jax.grad(f)))
    total = 512
    xs = jax.random.uniform(jax.random.key(1), (total,) + _cnn.IMAGE_SHAPE)
    fns = {}
    for rows in (2, 4, 8, 16, 32, 64, 128, 256, 512):
        parts = [xs[i:i + rows] for i in range(0, total, rows)]
        fns[rows] = lambda parts=parts: [grads(p) for p in parts]
    times, _, _ = paired_rounds(fns, args.repeats)
    print(f"{total} input gradients in calls of `rows` examples: ms per gradient [min, max]")
    for rows, ts in times.items():
        print(f"rows {rows:4d}: {1e3 * statistics.median(ts) / total:6.3f} "
              f"[{1e3 * min(ts) / total:.3f}, {1e3 * max(ts) / total:.3f}]")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--chunks", nargs="+", default=["1", "2", "5", "10", "25", "50", "auto"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", action="store_true", help="the pass-size sweep instead")
    args = p.parse_args(argv)
    for spec in args.chunks:
        if spec != "auto" and not (spec.isdigit() and 1 <= int(spec) <= args.n):
            p.error(f"--chunks: {spec!r} is not 'auto' or an int in [1, n]")
    params = _cnn.init_params(jax.random.key(0))
    f = lambda x: _cnn.logit_score(params, x)  # noqa: E731
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; CIFAR CNN; paired rounds: "
          f"{args.repeats}")
    if args.rows:
        rows_table(args, f)
        return
    xs = jax.random.uniform(jax.random.key(1), (args.batch,) + _cnn.IMAGE_SHAPE, jnp.float32)
    keys = jax.random.split(jax.random.key(2), args.batch)
    print(f"B={args.batch}, N={args.n} (IG: {args.n} steps); ratio = transform / straight line")
    chunk_table(args, f, xs, keys)


if __name__ == "__main__":
    main()
