"""Benchmark: slow-roll spectrum for many k on CPU.

Times the third-order formula, second-order general slow roll and the Mukhanov-Sasaki
reference for ``--n`` k-values (compile time reported separately), and prints the ratios to the
formula.

    python benchmarks/slowroll.py            # 1000 k for the formula, 100 for MS
    python benchmarks/slowroll.py --n-ms 1000
"""

import argparse
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from jaxattr.slowroll import (  # noqa: E402
    background,
    gsr_power_spectrum,
    horizon_k,
    monomial,
    mukhanov_sasaki,
    power_spectrum,
)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kw))
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-ms", type=int, default=100)
    args = ap.parse_args()
    bg, t_bg = timed(background, monomial(2.0), 17.0)
    print(f"background solve (incl. compile): {t_bg:.2f} s")
    n_star = float(bg.n_end) - 60
    k = horizon_k(bg, jnp.linspace(n_star - 5, n_star + 5, args.n))
    _, t_c = timed(power_spectrum, bg, k, order=3)
    _, t_f = timed(power_spectrum, bg, k, order=3)
    print(f"3rd-order formula: compile+first {t_c:.2f} s; {args.n} k-values {t_f * 1e3:.1f} ms")
    k_ms = k[:: max(1, args.n // args.n_ms)][: args.n_ms]
    _, t_mc = timed(mukhanov_sasaki, bg, k_ms)  # same shape: the second call does not compile
    _, t_m = timed(mukhanov_sasaki, bg, k_ms)
    print(f"Mukhanov-Sasaki: compile+first {t_mc:.2f} s; {len(k_ms)} k-values {t_m:.2f} s")
    _, t_gc = timed(gsr_power_spectrum, bg, k_ms, order=2)
    _, t_g = timed(gsr_power_spectrum, bg, k_ms, order=2)
    print(f"GSR order 2: compile+first {t_gc:.2f} s; {len(k_ms)} k-values {t_g:.2f} s")
    per_f = t_f / args.n
    per_m = t_m / len(k_ms)
    per_g = t_g / len(k_ms)
    print(f"per k: formula {per_f * 1e6:.1f} us, MS {per_m * 1e3:.2f} ms"
          f" ({per_m / per_f:.0f}x), GSR2 {per_g * 1e3:.2f} ms ({per_g / per_f:.0f}x)")


if __name__ == "__main__":
    main()
