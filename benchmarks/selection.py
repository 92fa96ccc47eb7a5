"""Micro-benchmark of the exact k-th-largest methods behind RectGrad's threshold.

    python benchmarks/selection.py                    # CIFAR CNN layer sizes + a ResNet-50 layer
    python benchmarks/selection.py --sizes 32768 --repeats 30 --methods bracket,radix
    python benchmarks/selection.py --sizes 256 --e2e radix,auto   # + rectgrad vs plain, paired

Each case times ``jit(vmap(lambda v: kth_largest(v, k, method=m)))`` on a (B, n) batch with
k = nearest_rank(n, q). The methods of one case are timed interleaved (round-robin, rotated start),
so load on a shared machine hits all of them alike; prints the median ms, the spread (25th-75th
percentile) and the median of the paired ratios to the first method. Data: the real ``a * R`` of
the paper's CIFAR CNN at its five ReLUs (random weights, random images; plain gradient), or, for
sizes the CNN lacks, a synthetic ``relu(z) * g * dropout`` with ~75% exact zeros. Not a test.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path and this file would shadow the
# standard library's ``select`` (imported by subprocess, hence by jax): move the folder last.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxattr as ja  # noqa: E402
from jaxattr._select import (  # noqa: E402
    _bracket_keys,
    _bracket_plan,
    _sortable_keys,
    kth_largest,
    nearest_rank,
)

_spec = importlib.util.spec_from_file_location("_cnn", os.path.join(_HERE, "_cnn.py"))
_cnn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cnn)

CNN_SIZES = {32 * 32 * 32: 0, 16 * 16 * 64: 2, 256: 4}  # n -> index of a ReLU with n units


def cnn_layer_values(batch: int, seed: int = 0) -> list[np.ndarray]:
    """``a * R`` at the CNN's five ReLUs for a batch: list of (B, n) arrays (plain gradient)."""
    params = _cnn.init_params(jax.random.key(seed))
    x = jax.random.uniform(jax.random.key(seed + 1), (batch, *_cnn.IMAGE_SHAPE))

    def score(x1, probes):
        h, acts, i = x1[None], [], 0
        for j, (w, b) in enumerate(params["conv"]):
            h = jax.nn.relu(_cnn._conv(h, w, b)) + probes[i]
            acts.append(h)
            i += 1
            if j % 2 == 1:
                h = _cnn._maxpool(h)
        h = h.reshape(1, -1)
        (w1, b1), (w2, b2) = params["dense"]
        h = jax.nn.relu(h @ w1 + b1) + probes[i]
        acts.append(h)
        return jnp.max((h @ w2 + b2)[0]), acts

    shapes = [(1, 32, 32, 32)] * 2 + [(1, 16, 16, 64)] * 2 + [(1, 256)]
    probes = [jnp.zeros(s) for s in shapes]

    def one(x1):
        grads, acts = jax.grad(score, argnums=1, has_aux=True)(x1, probes)
        return [(a * g).ravel() for a, g in zip(acts, grads, strict=True)]

    return [np.asarray(t) for t in jax.jit(jax.vmap(one))(x)]


def synthetic(batch: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = np.maximum(rng.normal(size=(batch, n)), 0) * rng.normal(size=(batch, n))
    return (z * (rng.random((batch, n)) < 0.5)).astype(np.float32)


def miss_rate(v: np.ndarray, k: int) -> float:
    """Fraction of rows whose sample bracket misses (they would take the radix fallback)."""
    keys = _sortable_keys(jnp.asarray(v))[0]
    _, missed = jax.jit(jax.vmap(lambda t: _bracket_keys(t, k)))(keys)
    return float(np.mean(np.asarray(missed)))


def bench_case(v: np.ndarray, k: int, methods: list[str], repeats: int) -> dict:
    fns = {}
    x = jnp.asarray(v)
    for m in methods:
        name, _, bits = m.partition(":")
        kw = {"digit_bits": int(bits)} if bits else {}
        f = jax.jit(jax.vmap(lambda t, name=name, kw=kw: kth_largest(t, k, method=name, **kw)))
        out = jax.block_until_ready(f(x))  # compile + warm-up
        fns[m] = f
        ref = np.sort(v, axis=1)[:, ::-1][:, k]
        assert np.array_equal(np.asarray(out), ref), m  # every candidate is exact
    ts = {m: [] for m in methods}
    for r in range(repeats):
        order = methods[r % len(methods):] + methods[: r % len(methods)]
        for m in order:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[m](x))
            ts[m].append(time.perf_counter() - t0)
    return {m: np.asarray(t) * 1e3 for m, t in ts.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--q", type=float, default=98.0)
    ap.add_argument("--sizes", default="32768,16384,256,802816")
    ap.add_argument("--methods", default="radix,bracket,top_k,sort,histogram,histogram:11")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--e2e", default="", metavar="M1,M2",
                    help="also time rectgrad(select=M) end to end against the plain gradient")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"batch {args.batch}, q={args.q}")
    layers = cnn_layer_values(args.batch) if any(n in CNN_SIZES for n in sizes) else None
    for n in sizes:
        v = layers[CNN_SIZES[n]] if n in CNN_SIZES else synthetic(args.batch, n)
        k = nearest_rank(n, args.q)
        zeros = float(np.mean(v == 0))
        plan = _bracket_plan(n, k)
        reps = max(3, args.repeats // 5) if n * args.batch > 4e6 else args.repeats
        print(f"\nn={n} ({'CNN a*R' if n in CNN_SIZES else 'synthetic'}), k={k}, "
              f"zeros {zeros:.0%}, bracket sample {plan[0].size} cap {plan[3]}, "
              f"bracket misses {miss_rate(v, k):.0%} of rows, {reps} paired repeats")
        res = bench_case(v, k, methods, reps)
        base = res[methods[0]]
        for m, t in res.items():
            q25, q50, q75 = np.percentile(t, [25, 50, 75])
            ratio = np.median(t / base)
            print(f"  {m:14s} {q50:9.3f} ms  [{q25:8.3f}, {q75:8.3f}]  "
                  f"x{ratio:5.2f} vs {methods[0]}")
    if args.e2e:
        end_to_end(args.batch, args.q, args.e2e.split(","), args.repeats)
    return 0


def end_to_end(batch: int, q: float, selects: list[str], repeats: int) -> None:
    """Paired, interleaved: plain ``jit(vmap(grad))`` vs ``rectgrad(select=m)`` on the CIFAR CNN."""
    params = _cnn.init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (batch, *_cnn.IMAGE_SHAPE))

    def score(xi):
        return _cnn.logit_score(params, xi)

    fns = {"plain": jax.jit(jax.vmap(jax.grad(score)))}
    for m in selects:
        try:
            fns[f"rectgrad q={q:g} {m}"] = jax.jit(jax.vmap(ja.rectgrad(score, q=q, select=m)))
        except ValueError as e:  # an older rectgrad that does not know this method
            print(f"  skipped select={m!r}: {e}")
    outs = {name: np.asarray(jax.block_until_ready(f(x))) for name, f in fns.items()}
    maps = [o for name, o in outs.items() if name != "plain"]
    assert all(np.array_equal(o, maps[0]) for o in maps), "select methods disagree"
    names = list(fns)
    ts = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name](x))
            ts[name].append(time.perf_counter() - t0)
    base = np.asarray(ts["plain"])
    print(f"\nend to end, CIFAR CNN, batch {batch}, {repeats} paired repeats "
          "(ratio: median and quartiles of the paired ratios to plain)")
    for name in names:
        t = np.asarray(ts[name])
        r25, r50, r75 = np.percentile(t / base, [25, 50, 75])
        print(f"  {name:26s} {np.median(t) * 1e3:9.2f} ms   x{r50:5.2f} [{r25:5.2f}, {r75:5.2f}]")


if __name__ == "__main__":
    sys.exit(main())
