"""grad Laplacian of a tanh MLP (batch 256): exact nested jax.hessian vs folx forward vs
Hutchinson. Prints time per batch (median of --reps after warm-up), the ratio against the
nested Hessian measured in the same run, and the max relative error against it.

    python benchmarks/derivatives.py                 # d = 64, 256 (CPU, a few minutes)
    python benchmarks/derivatives.py --dims 64 256 1024 --batch 256   # GPU sizes
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import derivatives as D


def mlp(d, width, depth, seed=0):
    r = np.random.default_rng(seed)
    Ws = [jnp.asarray(r.normal(size=(width, d)) / np.sqrt(d))]
    Ws += [jnp.asarray(r.normal(size=(width, width)) / np.sqrt(width)) for _ in range(depth - 1)]
    w_out = jnp.asarray(r.normal(size=width) / np.sqrt(width))

    def f(x):
        h = x
        for W in Ws:
            h = jnp.tanh(W @ h)
        return w_out @ h

    return f


def timeit(fn, *args, reps):
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--probes", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--x64", action="store_true")
    a = p.parse_args()
    if a.x64:
        jax.config.update("jax_enable_x64", True)
    print(f"device={jax.devices()[0].device_kind} batch={a.batch} width={a.width} "
          f"depth={a.depth} probes={a.probes}")
    print(f"{'d':>6} {'method':>10} {'ms/batch':>10} {'x hessian':>10} {'max rel err':>12}")
    key = jax.random.key(0)
    for d in a.dims:
        f = mlp(d, a.width, a.depth)
        x = jax.random.normal(key, (a.batch, d)) * 0.5
        exact = jax.jit(jax.vmap(D.grad_laplacian(f, method="exact")))
        forward = jax.jit(jax.vmap(D.grad_laplacian(f, method="forward")))
        hutch_fn = D.grad_laplacian(f, method="hutchinson", num_probes=a.probes)
        keys = jax.random.split(key, a.batch)
        hutch = jax.jit(jax.vmap(lambda x, k, h=hutch_fn: h(x, k).value))
        ref = exact(x)
        scale = jnp.max(jnp.abs(ref))
        t_ref = timeit(exact, x, reps=a.reps)
        for name, fn, args in (("hessian", exact, (x,)), ("forward", forward, (x,)),
                               ("hutchinson", hutch, (x, keys))):
            t = t_ref if name == "hessian" else timeit(fn, *args, reps=a.reps)
            err = float(jnp.max(jnp.abs(fn(*args) - ref)) / scale)
            print(f"{d:>6} {name:>10} {1e3 * t:>10.2f} {t_ref / t:>10.2f} {err:>12.2e}")


if __name__ == "__main__":
    main()
