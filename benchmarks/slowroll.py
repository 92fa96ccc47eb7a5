"""Benchmark: slow-roll spectrum for many k on CPU.

Times the third-order formula and the Mukhanov-Sasaki reference for ``--n`` k-values
(compile time reported separately), and prints the ratio MS / formula.

    python benchmarks/slowroll.py            # 1000 k for the formula, 100 for MS
    python benchmarks/slowroll.py --n-ms 1000
"""

import argparse
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from jaxattr.slowroll import background, horizon_k, mukhanov_sasaki, power_spectrum  # noqa: E402


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kw))
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-ms", type=int, default=100)
    args = ap.parse_args()
    bg, t_bg = timed(background, lambda p: 0.5 * p**2, 17.0)
    print(f"background solve (incl. compile): {t_bg:.2f} s")
    n_star = float(bg.n_end) - 60
    k = horizon_k(bg, jnp.linspace(n_star - 5, n_star + 5, args.n))
    _, t_c = timed(power_spectrum, bg, k[:3], order=3)
    _, t_f = timed(power_spectrum, bg, k, order=3)
    _, t_f = timed(power_spectrum, bg, k, order=3)
    print(f"3rd-order formula: compile+first {t_c:.2f} s; {args.n} k-values {t_f * 1e3:.1f} ms")
    k_ms = k[:: max(1, args.n // args.n_ms)][: args.n_ms]
    _, t_mc = timed(mukhanov_sasaki, bg, k_ms[:2])
    _, t_m = timed(mukhanov_sasaki, bg, k_ms)
    print(f"Mukhanov-Sasaki: compile+first {t_mc:.2f} s; {len(k_ms)} k-values {t_m:.2f} s")
    per_f = t_f / args.n
    per_m = t_m / len(k_ms)
    print(f"per k: formula {per_f * 1e6:.1f} us, MS {per_m * 1e3:.2f} ms,"
          f" ratio {per_m / per_f:.0f}x")


if __name__ == "__main__":
    main()
