"""The output directory of :func:`explain_dataset`: leaf files, manifest, atomic progress.

Layout of ``out/``::

    manifest.json            what was run (the fingerprint), the output leaves, the process layout,
                             and, once every row is written, "complete": true and the data hashes
    <leaf>.npy               one standard .npy file per output leaf, rows in example order
                             (np.load(path, mmap_mode="r") reads it without loading it); a
                             bfloat16 (or other ml_dtypes) leaf is stored as float32, exactly
                             (file_dtype), its "compute_dtype" recorded in the manifest
    progress/p00000.json     per process: batches committed (replaced atomically with os.replace
                             after the rows are written, so a kill loses at most the batches in
                             flight and never skips or duplicates a row)
    progress/p00000.hashes   per process: a 16-byte content hash of its rows of each batch, read
                             back on resume to prove the data is the one the rows came from

Every .npy header is padded to a fixed 256 bytes so that an iterable's row count, unknown until
the end, is written in place when the run completes.

Why plain .npy and not zarr or tensorstore: a row-major .npy is one contiguous byte range per
batch (one ``os.pwrite`` per leaf and batch, from any process, at an offset known in advance),
every numpy reads it, memory-mapped, with no dependency; chunked stores would add a dependency
and chunk-boundary coordination between processes for no gain in this write-once, append-order
pattern.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from typing import Any

import numpy as np

from .._checks import fail

FN = "explain_dataset"
FORMAT = "jaxattr.explain_dataset/1"
HEADER = 256
HASH = 16
MANIFEST = "manifest.json"


def check_writable(path: str) -> None:
    """Create ``path`` if needed and prove we can write a file in it (before any compute)."""
    probe = os.path.join(path, f".write-probe-{os.getpid()}")
    if os.path.exists(path) and not os.path.isdir(path):
        fail(FN, "out", path, "is an existing file, not a directory",
             "a directory (new, empty, or written by explain_dataset)",
             "Choose another out directory")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        os.remove(probe)
    except OSError as e:
        fail(FN, "out", path, f"is not writable ({e.strerror or e})",
             "a directory this process can create and write")


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_manifest(path: str) -> dict | None:
    try:
        with open(os.path.join(path, MANIFEST)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def file_dtype(dtype: Any) -> np.dtype:
    """The dtype an output of ``dtype`` is stored with: ``dtype`` itself when plain numpy reads
    it back from a ``.npy`` header, else the smallest numpy dtype that holds every value exactly.

    The ml_dtypes types JAX computes in (``bfloat16``, the ``float8``/``float4`` family, ``int4``)
    have no ``.npy`` type code: numpy writes them as raw bytes (``|V2``) or a code it cannot read
    back (``<f1``), and ``np.load`` without ml_dtypes returns bytes. Floating ones are stored as
    float32 (exact: they have at most 8 exponent and 7 mantissa bits), integer ones as int8/uint8.

    >>> import ml_dtypes
    >>> file_dtype(ml_dtypes.bfloat16), file_dtype(np.float16), file_dtype(ml_dtypes.int4)
    (dtype('float32'), dtype('float16'), dtype('int8'))
    """
    import jax.numpy as jnp

    dtype = np.dtype(dtype)
    try:
        if np.lib.format.descr_to_dtype(np.lib.format.dtype_to_descr(dtype)) == dtype:
            return dtype
    except (TypeError, ValueError):  # e.g. float8_e5m2's '<f1': not a numpy type code
        pass
    if jnp.issubdtype(dtype, jnp.floating):
        return np.dtype(np.float32)
    if jnp.issubdtype(dtype, jnp.signedinteger):
        return np.dtype(np.int8) if dtype.itemsize == 1 else np.dtype(np.int32)
    if jnp.issubdtype(dtype, jnp.unsignedinteger):
        return np.dtype(np.uint8) if dtype.itemsize == 1 else np.dtype(np.uint32)
    fail(FN, "attr_fn", dtype, "returns an output of a dtype no .npy file can hold",
         "outputs of numpy dtypes or JAX's bfloat16/float8/int4")
    raise AssertionError  # unreachable


def write_npy_header(fd: int, shape: tuple, dtype: np.dtype) -> None:
    """A .npy v1.0 header for ``shape``/``dtype`` padded to exactly ``HEADER`` bytes."""
    body = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": tuple(int(s) for s in shape)}).encode("latin1")
    magic = np.lib.format.magic(1, 0)
    room = HEADER - len(magic) - 2
    os.pwrite(fd, magic + struct.pack("<H", room) + body.ljust(room - 1) + b"\n", 0)


def describe_changes(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two fingerprints, most telling first."""
    changes = []
    lo, ln = old.get("layout", {}), new.get("layout", {})
    if lo.get("process_count") != ln.get("process_count"):
        changes.append(f"process count (the run was written by {lo.get('process_count')} "
                       f"process(es), this run has {ln.get('process_count')})")
    elif lo != ln and old.get("batch_size") == new.get("batch_size"):
        changes.append(f"process layout (rows per process {lo.get('rows')} -> {ln.get('rows')})")
    do, dn = old.get("data", {}), new.get("data", {})
    for field, label in (("source", "data source"), ("structure", "data structure"),
                         ("rows", "number of examples"), ("shapes", "data shapes"),
                         ("dtypes", "data dtypes")):
        if do.get(field) != dn.get(field):
            changes.append(f"{label} ({do.get(field)} -> {dn.get(field)})")
    if old.get("batch_size") != new.get("batch_size"):
        changes.append(f"batch_size ({old.get('batch_size')} -> {new.get('batch_size')})")
    if old.get("key") != new.get("key"):
        changes.append("key (another PRNG key, or a key given/omitted)")
    if old.get("attr_fn") != new.get("attr_fn"):
        changes.append("attr_fn (its traced jaxpr or constants differ)")
    if old.get("outputs") != new.get("outputs") and not changes:
        changes.append("outputs")
    if old.get("format") != new.get("format"):
        changes.append(f"format ({old.get('format')} -> {new.get('format')})")
    return changes


class DiskSink:
    """Rows of every output leaf written in place into ``out/<leaf>.npy``; progress per process.

    ``dtypes`` are the files' dtypes (:func:`file_dtype`): rows are cast to them when written.
    """

    def __init__(self, path: str, names: list[str], shapes: list[tuple], dtypes: list[np.dtype],
                 total: int | None, process_index: int):
        self.path, self.total = path, total
        self.names, self.shapes, self.dtypes = names, shapes, [np.dtype(d) for d in dtypes]
        self.row_bytes = [int(np.prod(s, dtype=np.int64)) * d.itemsize
                          for s, d in zip(shapes, self.dtypes, strict=True)]
        self.files = [os.path.join(path, f"{n}.npy") for n in names]
        pdir = os.path.join(path, "progress")
        self.progress_path = os.path.join(pdir, f"p{process_index:05d}.json")
        self.hash_path = os.path.join(pdir, f"p{process_index:05d}.hashes")
        self.fds: list[int] = []
        self.hash_fd = -1

    # ---- creation (process 0 only) and opening (every process)
    def create(self, manifest: dict, overwrite: bool) -> None:
        if overwrite:
            self.remove_run()
        atomic_write(os.path.join(self.path, MANIFEST), json.dumps(manifest, indent=1))
        os.makedirs(os.path.join(self.path, "progress"), exist_ok=True)
        rows = self.total if self.total is not None else 0
        for f, s, d, rb in zip(self.files, self.shapes, self.dtypes, self.row_bytes,
                               strict=True):
            if os.path.exists(f):
                continue
            fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                write_npy_header(fd, (rows, *s), d)
                os.ftruncate(fd, HEADER + rows * rb)
            finally:
                os.close(fd)

    def remove_run(self) -> None:
        old = read_manifest(self.path)
        shutil.rmtree(os.path.join(self.path, "progress"), ignore_errors=True)
        files = [o["file"] for o in old.get("outputs", [])] if old else []
        for f in files + [os.path.basename(f) for f in self.files] + [MANIFEST]:
            try:
                os.remove(os.path.join(self.path, f))
            except FileNotFoundError:
                pass

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.progress_path), exist_ok=True)
        missing = [f for f in self.files if not os.path.exists(f)]
        if missing:
            fail(FN, "out", self.path, f"has a manifest but no {os.path.basename(missing[0])}",
                 "an intact output directory", "pass overwrite=True to start over")
        self.fds = [os.open(f, os.O_RDWR) for f in self.files]
        self.hash_fd = os.open(self.hash_path, os.O_RDWR | os.O_CREAT, 0o644)

    def close(self) -> None:
        for fd in [*self.fds, self.hash_fd]:
            if fd >= 0:
                os.close(fd)
        self.fds, self.hash_fd = [], -1

    # ---- progress
    def committed(self) -> tuple[int, list[bytes]]:
        """Batches this process has committed, and the data hash of each."""
        try:
            with open(self.progress_path) as fh:
                k = int(json.load(fh)["batches"])
        except FileNotFoundError:
            return 0, []
        with open(self.hash_path, "rb") as fh:
            raw = fh.read(k * HASH)
        if len(raw) != k * HASH:
            fail(FN, "out", self.path, f"has a progress record of {k} batches but only "
                 f"{len(raw) // HASH} data hashes", "an intact output directory",
                 "pass overwrite=True to start over")
        return k, [raw[i * HASH:(i + 1) * HASH] for i in range(k)]

    def write_rows(self, leaf: int, first_row: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtypes[leaf])  # bfloat16 -> float32 (exact)
        off = HEADER + first_row * self.row_bytes[leaf]
        view = data.reshape(-1).view(np.uint8).data
        while view:
            written = os.pwrite(self.fds[leaf], view, off)
            view, off = view[written:], off + written

    def commit(self, batch: int, digest: bytes) -> None:
        """Batch ``batch``'s rows are written: record its hash, then the count (atomically)."""
        os.pwrite(self.hash_fd, digest, batch * HASH)
        atomic_write(self.progress_path, json.dumps({"batches": batch + 1}))

    # ---- completion (process 0 only)
    def finish(self, manifest: dict, rows: int) -> None:
        for f, s, d, rb in zip(self.files, self.shapes, self.dtypes, self.row_bytes,
                               strict=True):
            fd = os.open(f, os.O_RDWR)
            try:
                write_npy_header(fd, (rows, *s), d)
                os.ftruncate(fd, HEADER + rows * rb)
            finally:
                os.close(fd)
        atomic_write(os.path.join(self.path, MANIFEST), json.dumps(manifest, indent=1))

    def result(self) -> list[np.ndarray]:
        out = []
        for f in self.files:
            out.append(np.load(f, mmap_mode="r"))
        return out


class MemorySink:
    """The same interface, in memory (``out=None``, single process)."""

    def __init__(self, shapes: list[tuple], dtypes: list[np.dtype], total: int | None):
        self.total = total
        if total is None:
            self.chunks: list[list[tuple[int, np.ndarray]]] = [[] for _ in shapes]
        else:
            self.arrays = [np.empty((total, *s), d) for s, d in zip(shapes, dtypes, strict=True)]
        self.shapes, self.dtypes = shapes, dtypes

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def committed(self) -> tuple[int, list[bytes]]:
        return 0, []

    def write_rows(self, leaf: int, first_row: int, rows: np.ndarray) -> None:
        if self.total is None:
            self.chunks[leaf].append((first_row, np.array(rows)))
        else:
            self.arrays[leaf][first_row:first_row + len(rows)] = rows

    def commit(self, batch: int, digest: bytes) -> None:
        pass

    def result(self) -> list[np.ndarray]:
        if self.total is not None:
            return self.arrays
        out = []
        for chunks, s, d in zip(self.chunks, self.shapes, self.dtypes, strict=True):
            chunks.sort(key=lambda c: c[0])
            out.append(np.concatenate([c for _, c in chunks]) if chunks else np.empty((0, *s), d))
        return out


def leaf_names(paths: list[str]) -> list[str]:
    """File-system-safe, unique names for output leaves from their key paths."""
    import re

    names = []
    for p in paths:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", p).strip("_.")
        name = "attribution" if not name else (f"out_{name}" if name[0].isdigit() else name)
        while name in names:
            name += "_"
        names.append(name)
    return names


def fingerprint_digest(fp: dict[str, Any]) -> str:
    import hashlib

    return hashlib.blake2b(json.dumps(fp, sort_keys=True).encode(), digest_size=16).hexdigest()
