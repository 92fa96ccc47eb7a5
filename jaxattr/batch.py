"""Explain a whole dataset: batched, sharded over a device mesh, written incrementally, resumable.

No scheduler of our own: each batch is one ``jax.jit(jax.vmap(attr_fn))`` call whose input is
placed with a ``NamedSharding`` over the mesh's data axis, so XLA splits the work over devices.
Multi-host: call ``jax.distributed.initialize()`` first and build the mesh over
``jax.devices()``; every process runs the same loop over the same (global) data.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import ArgumentError

__all__ = ["explain_dataset"]


def explain_dataset(
    attr_fn: Callable,
    data: np.ndarray | jax.Array,
    *,
    batch_size: int = 32,
    mesh: Mesh | None = None,
    axis: str | None = None,
    key: jax.Array | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
) -> np.ndarray:
    """Apply a per-example attribution function to every example of ``data``.

    Args:
      attr_fn: ``x -> map`` for one example, or ``(x, key) -> map`` when ``key`` is given
        (e.g. ``smoothgrad(...)``). Example ``i`` gets ``fold_in(key, i)``, so results do not
        depend on ``batch_size`` or on the mesh.
      data: array of examples, leading axis = examples.
      batch_size: examples per compiled call (the last batch is padded, then trimmed). With a
        mesh it must be a multiple of the data axis size.
      mesh: optional ``jax.sharding.Mesh``; batches are sharded over ``axis`` (default: the
        mesh's first axis).
      axis: mesh axis name to shard the batch over.
      key: PRNG key for stochastic attribution functions.
      progress: print a progress line to stderr.
      out: optional ``.npy`` path. Results are written batch by batch into a memory-mapped file
        and a ``<out>.done`` counter; calling again with the same ``out`` resumes after the last
        finished batch.

    Returns:
      The maps as a numpy array shaped like ``attr_fn``'s output with a leading example axis
      (a read-only memmap when ``out`` is given).

    Raises:
      ArgumentError: batch_size < 1, batch not divisible by the mesh axis, bad key, or an
        ``out`` file whose shape does not match.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxattr as ja
      >>> maps = ja.explain_dataset(ja.saliency(lambda x: jnp.sum(x ** 2)), np.ones((5, 3)),
      ...                           batch_size=2, progress=False)
      >>> maps.shape, float(maps.sum())
      ((5, 3), 30.0)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size={batch_size!r} must be a positive int")
    data = np.asarray(data) if not isinstance(data, jax.Array) else data
    n = data.shape[0]
    if n == 0:
        raise ArgumentError("data is empty (leading axis has size 0)")
    if key is not None and not _is_key(key):
        raise ArgumentError(f"key must be a PRNG key (jax.random.key or PRNGKey), got {key!r}")

    sharding = None
    if mesh is not None:
        axis = axis or mesh.axis_names[0]
        if axis not in mesh.axis_names:
            raise ArgumentError(f"axis={axis!r} is not an axis of the mesh {mesh.axis_names}")
        if batch_size % mesh.shape[axis]:
            raise ArgumentError(
                f"batch_size={batch_size} must be a multiple of the mesh axis {axis!r} "
                f"size {mesh.shape[axis]}"
            )
        sharding = NamedSharding(mesh, PartitionSpec(axis))

    if key is None:
        step = jax.jit(jax.vmap(attr_fn))
    else:
        def per_example(x, i):
            return attr_fn(x, jax.random.fold_in(key, i))

        step = jax.jit(jax.vmap(per_example))

    def run(start: int) -> np.ndarray:
        stop = min(start + batch_size, n)
        xb = np.asarray(data[start:stop])
        pad = batch_size - (stop - start)
        if pad:
            xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
        idx = np.arange(start, start + batch_size, dtype=np.uint32)
        if sharding is not None:
            xb, idx = jax.device_put(xb, sharding), jax.device_put(idx, sharding)
        res = step(xb) if key is None else step(xb, idx)
        return np.asarray(res)[: stop - start]

    out_shape = jax.eval_shape(
        (lambda x: attr_fn(x)) if key is None else (lambda x: attr_fn(x, jax.random.key(0))),
        jax.ShapeDtypeStruct(data.shape[1:], data.dtype),
    )
    shape, dtype = (n, *out_shape.shape), np.dtype(out_shape.dtype)

    if out is None:
        result = np.empty(shape, dtype)
        done = 0
    else:
        result, done = _open_output(os.fspath(out), shape, dtype)

    t0 = time.perf_counter()
    for start in range(done, n, batch_size):
        result[start : start + batch_size] = run(start)
        if out is not None:
            result.flush()
            with open(os.fspath(out) + ".done", "w") as fh:
                fh.write(str(min(start + batch_size, n)))
        if progress:
            stop = min(start + batch_size, n)
            rate = (stop - done) / max(time.perf_counter() - t0, 1e-9)
            print(f"\rexplain_dataset: {stop}/{n} examples ({rate:.1f}/s)", end="",
                  file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    if out is not None:
        result.flush()
        return np.load(os.fspath(out), mmap_mode="r")
    return result


def _is_key(key) -> bool:
    try:
        dtype = jnp.asarray(key).dtype if not hasattr(key, "dtype") else key.dtype
    except TypeError:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return key.shape == ()
    return dtype == jnp.uint32 and getattr(key, "shape", None) == (2,)


def _open_output(path: str, shape: tuple, dtype: np.dtype):
    done_path = path + ".done"
    if os.path.exists(path) and os.path.exists(done_path):
        arr = np.load(path, mmap_mode="r+")
        if arr.shape != shape or arr.dtype != dtype:
            raise ArgumentError(
                f"out={path!r} holds {arr.dtype}{list(arr.shape)}, expected {dtype}{list(shape)}; "
                "remove it (and its .done file) to start again"
            )
        with open(done_path) as fh:
            return arr, int(fh.read().strip() or 0)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    with open(done_path, "w") as fh:
        fh.write("0")
    return arr, 0
