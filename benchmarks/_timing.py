"""Paired, interleaved timing shared by the benchmarks (not a test)."""

from __future__ import annotations

import time

import jax


def paired_rounds(fns: dict, repeats: int) -> tuple[dict, dict, dict]:
    """One warm-up call each (compile), then ``repeats`` rounds running each once, the order
    rotated every round so no method always runs first. Outputs are waited for with
    ``jax.block_until_ready`` (other objects pass through it unchanged).

    Returns ({name: [seconds per round]}, {name: first-call seconds}, {name: first output}).
    """
    first, outs = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        outs[name] = jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name]())
            times[name].append(time.perf_counter() - t0)
    return times, first, outs
