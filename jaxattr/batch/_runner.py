"""``explain_dataset``: the loop. Read -> place -> dispatch on the main thread; copy back, write and
commit on a bounded writer thread, so batch i+1 is read and transferred and batch i-1 written while
the devices compute batch i (JAX dispatches asynchronously)."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._checks import check_callable, check_int, check_key, fail, fail_type
from .._compat import add_note
from ..errors import ArgumentTypeError
from ._mesh import agree, allgather, barrier, mesh_for, process_rows
from ._output import (
    FORMAT,
    DiskSink,
    MemorySink,
    check_writable,
    describe_changes,
    file_dtype,
    leaf_names,
    read_manifest,
)
from ._progress import Progress
from ._source import Batch, call_args, make_source, shapes_only
from ._writer import Writer

FN = "explain_dataset"


def explain_dataset(
    attr_fn: Callable[..., Any],
    data: Any,
    *,
    batch_size: int = 32,
    mesh: Mesh | None = None,
    axis: str | None = None,
    key: jax.Array | None = None,
    progress: bool = True,
    callback: Callable[[int, int | None], Any] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Any:
    """Apply a per-example attribution function to every example of a dataset.

    Each step is one ``jax.jit(jax.vmap(attr_fn))`` call on a global batch sharded over a
    device ``mesh`` (default: every device of every process). JAX's async dispatch and a bounded
    writer thread overlap reading and transferring batch i+1 and writing batch i-1 with the
    computation of batch i. An example's map never depends on the batch, the mesh or the number
    of processes.

    **Calling rule.** ``data`` is split into examples along the leading axis of every leaf. If
    ``data`` (or, for an iterable, each batch) is a ``tuple`` or ``list``, its elements are the
    positional arguments: ``data=(images, labels)`` calls ``attr_fn(image, label)``; anything else
    (an array, a dict, a namedtuple) is the single argument ``attr_fn(example)``. With ``key``,
    example ``i`` (0-based, in dataset order) gets ``k = jax.random.fold_in(key, i)`` as the
    **second** argument: ``attr_fn(x, k, *rest)``, the convention of :func:`jaxattr.smoothgrad`
    and the other noise transforms ``g(x, key, *args)``.

    **Multi-host** (``jax.distributed``, no scheduler of ours): run the same script on every host
    after ``jax.distributed.initialize()``. Each process reads only its rows of each global batch
    (slices of numpy arrays or memmaps), batches are assembled with
    ``jax.make_array_from_process_local_data``, and each process writes only the rows it owns into
    the shared ``out`` directory (which must be on a filesystem all processes see); ``out`` is
    required. An iterable is consumed by every process, each keeping its own rows.

    **Output that cannot lie** (``out``): a directory with one ``<leaf>.npy`` per output leaf and
    ``manifest.json`` holding the run's fingerprint: data structure, shapes, dtypes, batch size,
    key, process layout and a hash of ``attr_fn``'s jaxpr and constants, traced on one example.
    Each process commits its progress atomically (``os.replace``) after its rows are written, with
    a content hash of its rows of every batch. Calling again with the same ``out`` resumes after
    the last committed batch, having re-read (not recomputed) the committed examples to prove the
    data is the same; any difference raises :class:`~jaxattr.errors.ArgumentError` naming what
    changed (``overwrite=True`` starts over). When all rows are written the manifest gets
    ``"complete": true`` and the data hashes. Any kill of a process (SIGKILL, OOM, preemption)
    loses at most the batches in flight; files are not ``fsync``-ed, so after a power loss of the
    host start over with ``overwrite=True``. Like ``jax.jit``, ``attr_fn`` is traced once per
    input shape: globals it reads are read then.

    Args:
      attr_fn: per-example attribution function (see the calling rule), e.g.
        ``jaxattr.rectgrad(f)``; its output may be any pytree of arrays.
      data: a pytree of arrays (numpy, ``np.memmap``, ``jax.Array``, or any sliceable array with
        ``shape``/``dtype``) with a common leading example axis, or an iterable of such batches
        (a generator or data loader, any batch sizes, unknown total length; re-cut into
        ``batch_size`` examples). Nothing larger than a batch is loaded at once.
      batch_size: real examples per step. When it is not a multiple of the mesh axis size, each
        batch is padded up to one and the padding is dropped.
      mesh: a ``jax.sharding.Mesh``; batches are sharded over ``axis`` (default: its first axis).
        Default: a 1-D mesh ``("data",)`` over ``jax.devices()`` grouped by process.
      axis: the mesh axis to shard examples over.
      key: PRNG key (``jax.random.key`` or a legacy ``PRNGKey``) for stochastic ``attr_fn``.
      progress: show progress on stderr (process 0 only): a tqdm bar with rate and ETA on a
        terminal, a plain line every 10 s otherwise.
      callback: ``callback(done, total)`` after each committed batch (``total`` is ``None`` for
        an iterable), called from the writer thread on every process.
      out: output directory (created if needed). ``None``: results are kept in memory (single
        process only).
      overwrite: discard a previous run in ``out`` instead of resuming it.

    Returns:
      A pytree like ``attr_fn``'s output whose leaves have a leading example axis: numpy arrays,
      or read-only memory maps of the ``.npy`` files when ``out`` is given. On disk (and so in
      the memory maps) a leaf of a dtype numpy cannot store in a ``.npy`` file, ``bfloat16``
      and the other ml_dtypes types, is float32 (every bfloat16 value exactly; int4 as int8), so
      ``np.load`` reads it without ml_dtypes; the manifest's ``outputs`` entry gives the stored
      ``dtype`` and the ``compute_dtype`` it was computed in.

    Raises:
      ArgumentError: bad ``batch_size``, ``key``, ``axis`` or ``data`` (leaves of different
        leading sizes, empty, an iterable whose batches change structure), an ``out`` that is not
        writable or is an existing file (raised before any compute), that holds another run (the
        error names what changed) or was written by another number of processes, or
        ``out=None`` with several processes.
      ArgumentTypeError: ``attr_fn`` returns only scalars per example for a non-scalar first
        argument (a score function ``f`` passed where ``ja.saliency(f)`` was meant), or uses a
        floating per-example leaf of ``data`` as an index (float labels); both at trace time.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxattr as ja
      >>> x, y = np.ones((5, 3), np.float32), np.array([0, 1, 2, 0, 1])
      >>> grad_of_label = lambda x, y: jax.grad(lambda x: (x ** 2)[y])(x)  # f(x)[label]
      >>> maps = ja.explain_dataset(grad_of_label, (x, y), batch_size=2, progress=False)
      >>> maps[1]
      array([0., 2., 0.], dtype=float32)
    """
    check_callable(attr_fn, "attr_fn", fn=FN, expected="a per-example attribution function")
    batch_size = check_int(batch_size, "batch_size", fn=FN, minimum=1)
    if key is not None:
        key = check_key(key, fn=FN)
    if callback is not None:
        check_callable(callback, "callback", fn=FN, expected="callback(done, total)")
    if not isinstance(progress, (bool, np.bool_)):
        fail_type(FN, "progress", progress, f"has type {type(progress).__name__}", "a bool",
                  "pass a function as callback=")
    if not isinstance(overwrite, (bool, np.bool_)):
        fail_type(FN, "overwrite", overwrite, f"has type {type(overwrite).__name__}", "a bool")
    nproc, pid = jax.process_count(), jax.process_index()
    path = None if out is None else os.path.abspath(os.fspath(out))
    if path is None and nproc > 1:
        fail(FN, "out", out, f"is required when running on {nproc} processes",
             "a directory on a filesystem shared by all processes")
    if path is not None:
        check_writable(path)

    source = make_source(data, batch_size)
    mesh, axis = mesh_for(mesh, axis)
    width = mesh.shape[axis]
    padded = -(-batch_size // width) * width
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    ranges = process_rows(sharding, padded, mesh)
    if pid not in ranges:
        fail(FN, "mesh", mesh, f"has no device of process {pid}",
             "a mesh spanning every process (jax.devices())")
    lo, hi = ranges[pid]

    key_data = None if key is None else np.asarray(jax.random.key_data(key))
    impl = None if key is None else jax.random.key_impl(key)

    per_example = _per_example(attr_fn, impl)

    example_args = call_args(jax.tree.unflatten(source.treedef, source.example))
    idx_aval = jax.ShapeDtypeStruct((), np.uint32)
    with warnings.catch_warnings():  # the jit trace below warns once; this trace need not
        warnings.simplefilter("ignore")
        try:
            closed, out_tree_shapes = jax.make_jaxpr(per_example, return_shape=True)(
                example_args, idx_aval, key_data)
        except (TypeError, ValueError) as e:
            _float_index(e, source)
            if not isinstance(e, TypeError):
                raise
            names = ["x", "key", *[f"arg{i}" for i in range(1, len(example_args))]] if key \
                is not None else ["x", *[f"arg{i}" for i in range(1, len(example_args))]]
            add_note(e, f"{FN} called attr_fn({', '.join(names)}): a tuple/list data is spread "
                        "into positional arguments, anything else is one argument; with key= the "
                        "per-example key is the second argument")
            raise
    out_paths, out_leaves = zip(*[(jax.tree_util.keystr(p), s) for p, s in
                                  jax.tree_util.tree_flatten_with_path(out_tree_shapes)[0]],
                                strict=True) if jax.tree.leaves(out_tree_shapes) else ((), ())
    if not out_leaves:
        fail(FN, "attr_fn", attr_fn, "returns no arrays", "a function returning array(s)")
    first_arg = jax.tree.leaves(example_args[0]) if example_args else []
    if all(s.shape == () for s in out_leaves) and any(a.shape != () for a in first_arg):
        fail_type(FN, "attr_fn", attr_fn, "returns a scalar per example (a score function?)",
                  "an attribution function returning a map per example, such as "
                  "ja.saliency(score)", "Pass ja.saliency(score) (or another method of it), "
                  "not the score itself")
    out_treedef = jax.tree.structure(out_tree_shapes)
    names = leaf_names(list(out_paths))
    shapes = [tuple(s.shape) for s in out_leaves]
    dtypes = [np.dtype(s.dtype) for s in out_leaves]
    stored = [file_dtype(d) for d in dtypes]  # bfloat16 -> float32: plain numpy reads the files

    fingerprint = {
        "format": FORMAT,
        "data": {"source": source.kind, "structure": str(source.treedef), "rows": source.n,
                 "shapes": [list(e.shape) for e in source.example],
                 "dtypes": [np.dtype(e.dtype).name for e in source.example]},
        "batch_size": batch_size,
        "key": None if key_data is None else {"impl": str(impl), "data": key_data.tolist()},
        "attr_fn": None if path is None else _jaxpr_hash(closed),
        "outputs": [{"name": n, "file": f"{n}.npy", "shape": list(s), "dtype": f.name,
                     **({"compute_dtype": d.name} if f != d else {})}
                    for n, s, d, f in zip(names, shapes, dtypes, stored, strict=True)],
        "layout": {"process_count": nproc,
                   "rows": [[min(a, batch_size), min(b, batch_size)]
                            for _, (a, b) in sorted(ranges.items())]},
    }

    if path is None:
        sink: Any = MemorySink(shapes, dtypes, source.n)
        complete_before = False
    else:
        sink = DiskSink(path, names, shapes, stored, source.n, pid)
        old = read_manifest(path)
        if old is not None and not overwrite:
            changes = describe_changes(old.get("fingerprint", {}), fingerprint)
            if changes:
                fail(FN, "out", path, "holds another run: " + "; ".join(changes),
                     "the same run to resume", "Pass overwrite=True to start over, or use "
                     "another out directory")
        if old is None:
            foreign = [e for e in os.listdir(path) if not e.startswith(".write-probe-")]
            if foreign:
                fail(FN, "out", path, f"is not empty and holds no {FORMAT} manifest "
                     f"({sorted(foreign)[:5]})", "a new or empty directory, or one written by "
                     "explain_dataset", "Choose another out directory")
        complete_before = bool(old and not overwrite and old.get("complete"))
        barrier("jaxattr.explain_dataset.checked", nproc)
        if pid == 0 and (old is None or overwrite):
            sink.create({"fingerprint": fingerprint, "outputs": fingerprint["outputs"],
                         "complete": False}, overwrite=overwrite)
        barrier("jaxattr.explain_dataset.created", nproc)
        seen = allgather(np.array([os.path.exists(os.path.join(path, "manifest.json"))],
                                   np.int32), nproc).reshape(-1)
        if not seen.all():
            fail(FN, "out", path, f"is not visible to process(es) "
                 f"{np.flatnonzero(seen == 0).tolist()} (no manifest there after process 0 wrote "
                 "it)", "a directory on a filesystem shared by all processes")
    sink.open()
    try:
        return _run(source, sink, per_example, sharding, padded, batch_size, lo, hi, key_data,
                    out_treedef, fingerprint, complete_before, progress, callback, path, nproc,
                    pid)
    finally:
        sink.close()


def _run(source, sink, per_example, sharding, padded, batch_size, lo, hi, key_data,
         out_treedef, fingerprint, complete_before, progress, callback, path, nproc, pid):
    mine, expected = sink.committed()
    start = int(allgather(np.array([mine], np.int64), nproc).min())
    total = source.n
    initial = start * batch_size if total is None else min(start * batch_size, total)
    reporter = Progress(total, initial, bool(progress) and pid == 0, callback)
    writer = Writer(sink, reporter, batch_size, total)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    kd = None if key_data is None else jax.make_array_from_process_local_data(
        replicated, key_data, key_data.shape)
    step = _step(per_example, sharding)
    chain = hashlib.blake2b(digest_size=16)
    verified = start == 0
    bad = None
    rows = seen = 0
    writer.start()
    try:
        for batch in source.batches():
            b = batch.index
            local = batch.rows(lo, hi)
            digest = _digest(local)
            chain.update(digest)
            rows, seen = b * batch_size + batch.valid, b + 1
            if b < start:
                if digest != expected[b]:
                    bad = (f"batch {b} (examples {b * batch_size}..{rows - 1}) of process {pid} "
                           "has another content hash")
                    break
                continue
            if not verified:
                agree(True, nproc, path)
                verified = True
            if complete_before:
                bad = "it has more examples than the completed run"
                break
            args = _global(batch, local, lo, hi, padded, sharding)
            idx = jax.make_array_from_process_local_data(
                sharding, np.arange(b * batch_size + lo, b * batch_size + hi, dtype=np.uint32),
                (padded,))
            res = step(call_args(jax.tree.unflatten(source.treedef, args)), idx, kd)
            writer.put((b, jax.tree.leaves(res), batch.valid, digest))
        else:
            if not verified and bad is None and seen < start:
                bad = f"it has fewer examples ({rows}) than the run already wrote"
        if not verified:
            agree(bad is None, nproc, path, bad)
        elif bad is not None:
            agree(False, 1, path, bad)
    except BaseException:
        writer.stop()
        reporter.close()
        raise
    writer.finish()
    reporter.close()
    finals = allgather(np.frombuffer(chain.digest(), np.uint8)[None], nproc).reshape(nproc, -1)
    if path is not None:
        if pid == 0:
            manifest = {"fingerprint": fingerprint, "outputs": fingerprint["outputs"],
                        "complete": True, "rows": rows,
                        "batches": -(-rows // batch_size),
                        "data_hash": [bytes(f).hex() for f in finals]}
            sink.finish(manifest, rows)
        barrier("jaxattr.explain_dataset.finished", nproc)
    return jax.tree.unflatten(out_treedef, sink.result())


_CACHE: dict = {}  # (attr_fn, key impl) -> per_example; (per_example, sharding) -> step


def _cached(key: Any, make: Callable[[], Any]) -> Any:
    try:
        hash(key)
    except TypeError:  # an unhashable callable: no reuse
        return make()
    if key not in _CACHE:
        if len(_CACHE) >= 32:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def _per_example(attr_fn: Callable, impl: Any) -> Callable:
    """``attr_fn`` on one example by the calling rule, the same object for the same ``attr_fn``
    so that JAX's tracing and compilation caches serve repeated calls (as for ``jax.jit(f)``,
    a function is traced once per input shape: globals it reads are read then)."""

    def make() -> Callable:
        def per_example(args: tuple, idx: jax.Array, kd: jax.Array | None) -> Any:
            if kd is None:
                return attr_fn(*args)
            k = jax.random.fold_in(jax.random.wrap_key_data(kd, impl=impl), idx)
            return attr_fn(args[0], k, *args[1:])

        return per_example

    return _cached(("per_example", attr_fn, str(impl)), make)


def _step(per_example: Callable, sharding: NamedSharding) -> Callable:
    """``jit(vmap(per_example))`` with results sharded like the batch, reused across calls."""
    return _cached(("step", per_example, sharding), lambda: jax.jit(
        jax.vmap(per_example, in_axes=(0, 0, None)), out_shardings=sharding))


def _digest(local: list[np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(struct.pack("<q", len(local[0])))
    for x in local:
        x = np.ascontiguousarray(x)
        h.update(str(x.dtype).encode())
        h.update(x.reshape(-1).view(np.uint8).data)
    return h.digest()


def _global(batch: Batch, local: list[np.ndarray], lo: int, hi: int, padded: int,
            sharding: NamedSharding) -> list[jax.Array]:
    """This process's rows, padded to its share of the padded batch, as global arrays."""
    want = hi - lo
    have = len(local[0])
    if have < want:
        filler = local if have else batch.rows(0, 1)
        local = [np.concatenate([x, np.repeat(f[-1:], want - have, axis=0)]) if have
                 else np.repeat(f[-1:], want, axis=0) for x, f in zip(local, filler,
                                                                     strict=True)]
    return [jax.make_array_from_process_local_data(sharding, x, (padded, *x.shape[1:]))
            for x in local]


_INDEX_ERROR = re.compile(r"(?i)\b(indexer|indices|index)\b[^.]*\binteger")
DATA_LEAF = "data_leaf"  # set on the ArgumentTypeError of float labels used as an index


def _float_index(e: Exception, source: Any) -> None:
    """Tracing ``attr_fn`` failed because a float was used as an index: if ``data`` has floating
    leaves of one value per example (labels), raise an error naming them; else return."""
    if not _INDEX_ERROR.search(str(e)):
        return
    labels = [(path, ex) for path, ex in zip(source.paths, source.example, strict=True)
              if ex.shape == () and np.issubdtype(ex.dtype, np.floating)]
    if not labels:
        return
    i = source.paths.index(labels[0][0])
    leaf = (source.leaves if source.kind == "arrays" else source.first)[i]
    try:
        fail_type(FN, source.paths[i], shapes_only(leaf),
                  f"holds floats (one per example) that attr_fn uses as an index (JAX: "
                  f"{str(e).splitlines()[0]})", "integer labels (an int dtype such as int32)",
                  "Cast them first, e.g. labels.astype(np.int32)")
    except ArgumentTypeError as err:
        setattr(err, DATA_LEAF, i)  # which leaf of data: the CLI names its DATA file
        raise err from e


def _jaxpr_hash(closed: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(closed.jaxpr)).encode())
    for c in closed.consts:
        if hasattr(c, "dtype") and jnp.issubdtype(c.dtype, jax.dtypes.prng_key):
            c = jax.random.key_data(c)
        c = np.ascontiguousarray(np.asarray(c))
        h.update(f"{c.dtype}{c.shape}".encode())
        h.update(c.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


