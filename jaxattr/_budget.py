"""``chunk="auto"``: how many evaluations of an attribution function fit in a memory budget.

The budget is ``max_memory`` bytes if the user gives one, else half of the free memory the
device reports (``Device.memory_stats()``: GPU, TPU), else a quarter of the host's available
physical memory on the CPU backend, else 1 GiB with a warning. The cost of one evaluation is an
upper bound read off its jaxpr: the bytes of every intermediate value, as if none were freed or
fused (XLA's real peak is lower), times the ``jax.vmap`` batch the transform is called under.

On the CPU backend the pass is also kept small for speed: XLA:CPU computes a gradient fastest
when a pass's working set stays near the caches. On the paper's CIFAR CNN (2-core Xeon, 4 MiB of
L2 per core) one input gradient cost 1.46 ms in passes of 4 to 8 images, 2.2 ms in passes of 32
to 128 and 2.7 ms in one pass of 512 (``benchmarks/noise.py --rows``), so on CPU a pass holds at
most ``CPU_PASS_BYTES`` of (upper-bound) intermediates, and at least one evaluation. Accelerators
get the largest pass that fits: a bigger batch fills the device.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from ._checks import check_int, fail
from ._compat import jaxprs_in_params
from .errors import warn

__all__ = [
    "CPU_PASS_BYTES", "auto_chunk", "check_max_memory", "itemsize", "jaxpr_bytes", "vmap_batch",
]

CPU_PASS_BYTES = 32 << 20  # the fastest pass size on XLA:CPU, measured (module docstring)


def check_max_memory(max_memory: Any, fn: str) -> int | None:
    if max_memory is None:
        return None
    return check_int(max_memory, "max_memory", fn=fn, minimum=1, hint=" (bytes)")


def jaxpr_bytes(jaxpr) -> int:
    """Bytes of every value a jaxpr (and the jaxprs nested in it) computes: an upper bound."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            aval = v.aval
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                total += int(np.prod(aval.shape, dtype=np.int64)) * itemsize(aval.dtype)
        for sub in jaxprs_in_params(eqn.params):
            total += jaxpr_bytes(sub)
    return total


@functools.lru_cache(maxsize=64)
def itemsize(dtype: Any) -> int:
    """Bytes per element of ``dtype``, extended dtypes included.

    A typed PRNG key (``key<fry>``, as ``jax.random.key`` and Flax's dropout derive) is stored as
    its key data (``uint32[2]`` for threefry, ``uint32[4]`` for rbg): its size is read off
    ``jax.random.key_data``'s output shape. Any other extended dtype counts its declared
    ``itemsize``; one without (none is public today) counts 16 bytes, the largest key data of
    JAX's PRNG implementations.

    >>> itemsize(jax.random.key(0).dtype), itemsize(np.float32)
    (8, 4)
    """
    if not jnp.issubdtype(dtype, jax.dtypes.extended):
        return np.dtype(dtype).itemsize
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct((), dtype))
        return int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize
    size = getattr(dtype, "itemsize", None)
    return int(size) if isinstance(size, (int, np.integer)) else 16


def vmap_batch(x: Any) -> int:
    """The product of the ``jax.vmap`` batch sizes ``x`` is traced under (1 if none)."""
    batch = 1
    while isinstance(x, jax.core.Tracer):
        val, dim = getattr(x, "val", None), getattr(x, "batch_dim", None)
        if val is None:
            break
        if isinstance(dim, int):
            batch *= int(np.shape(val)[dim])
        x = val
    return batch


def _device_budget(fn: str) -> int:
    device = jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # pragma: no cover - backend without the API
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(0.5 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    if device.platform == "cpu":
        try:
            return int(0.25 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            pass
    warn(f"{fn}: chunk='auto' found no memory statistics for the {device.platform} backend; "
         "assuming a budget of 1 GiB. Pass max_memory= (bytes) or an explicit chunk.")
    return 1 << 30


def auto_chunk(evaluate: Callable, x: Any, n: int, *, max_memory: int | None, batch: int,
               fn: str) -> int:
    """Evaluations of ``evaluate(x)`` per pass: ``budget // (bytes per evaluation * batch)``,
    clamped to ``[1, n]``, the budget capped at ``CPU_PASS_BYTES`` on the CPU backend. A user
    budget too small for one evaluation is an error."""
    per_eval = max(1, jaxpr_bytes(jax.make_jaxpr(evaluate)(x))) * batch
    if max_memory is not None and per_eval > max_memory:
        fail(fn, "max_memory", max_memory, "is too small for one evaluation",
             f"max_memory >= {per_eval} bytes (one evaluation of the attribution function"
             f"{f' for each of the {batch} vmapped examples' if batch > 1 else ''})")
    budget = max_memory if max_memory is not None else _device_budget(fn)
    if jax.devices()[0].platform == "cpu":
        budget = min(budget, CPU_PASS_BYTES)
    return int(min(n, max(1, budget // per_eval)))
