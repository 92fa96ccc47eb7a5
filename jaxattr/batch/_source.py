"""Data sources for :func:`explain_dataset`: a pytree of arrays, or an iterable of batches.

Both are seen as one sequence of *global batches* of exactly ``batch_size`` examples (the last may
hold fewer). A batch hands out only the rows a process asks for, so with memory-mapped arrays (or
any sliceable array: ``np.memmap``, h5py, zarr) a process reads only its own share, and nothing
larger than one batch is ever held in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from .._checks import array_text, fail, fail_type

FN = "explain_dataset"


def is_array_like(x: Any) -> bool:
    """An array we can slice without loading it: numpy (memmap), JAX, h5py/zarr-style arrays."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")


class _ArrayInfo:
    """Stands for an array in an error message: its shape and dtype, never its contents."""

    def __init__(self, x: Any):
        self.text = array_text(x)

    def __repr__(self) -> str:
        return self.text


def shapes_only(tree: Any) -> Any:
    """``tree`` with every array leaf replaced by its shape and dtype (for error messages: a
    tuple of arrays would otherwise print their contents)."""
    with warnings.catch_warnings():  # a generator is a leaf: jax warns
        warnings.simplefilter("ignore", DeprecationWarning)
        return jax.tree.map(lambda x: _ArrayInfo(x) if is_array_like(x) else x, tree)


def call_args(tree: Any) -> tuple:
    """The positional arguments of ``attr_fn`` for one example (or one batch) of ``data``.

    A top-level ``tuple`` or ``list`` is spread (``(images, labels)`` -> ``attr_fn(x, y)``);
    anything else (an array, a dict, a namedtuple) is the single argument.
    """
    return tuple(tree) if type(tree) in (tuple, list) else (tree,)


@dataclass
class Batch:
    """Global batch ``index`` of a source: ``valid`` real examples; ``rows(a, b)`` reads the
    examples at positions ``[a, min(b, valid))`` of the batch, one numpy array per leaf."""

    index: int
    valid: int
    rows: Callable[[int, int], list[np.ndarray]]


class ArraySource:
    """A pytree of arrays with a common leading (example) axis."""

    kind = "arrays"

    def __init__(self, leaves: list, treedef: Any, batch_size: int, data: Any):
        paths = [f"data{jax.tree_util.keystr(p)}"
                 for p, _ in jax.tree_util.tree_flatten_with_path(data)[0]]
        self.paths = paths
        shown = shapes_only(data)
        for path, leaf in zip(paths, leaves, strict=True):
            if len(leaf.shape) == 0:
                fail(FN, "data", shown, f"has a 0-d leaf {path}",
                     "arrays with a leading example axis")
            if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
                fail(FN, "data", shown, f"leaf {path} spans devices of other processes",
                     "numpy arrays or memmaps (each process reads its own rows)")
        sizes = [int(leaf.shape[0]) for leaf in leaves]
        if len(set(sizes)) > 1:
            each = ", ".join(f"{path} has shape {tuple(leaf.shape)}"
                             for path, leaf in zip(paths, leaves, strict=True))
            fail(FN, "data", shown, f"has leaves of different leading (example) sizes: {each}",
                 "one leading (example) size shared by every leaf")
        self.n = sizes[0]
        if self.n == 0:
            fail(FN, "data", shown, "is empty (leading axis has size 0)", "at least one example")
        self.leaves, self.treedef, self.batch_size = leaves, treedef, batch_size
        self.example = [jax.ShapeDtypeStruct(tuple(x.shape[1:]), np.dtype(x.dtype))
                        for x in leaves]

    @property
    def num_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def batches(self) -> Iterator[Batch]:
        for b in range(self.num_batches):
            start = b * self.batch_size
            valid = min(self.batch_size, self.n - start)

            def rows(lo: int, hi: int, start: int = start, valid: int = valid) -> list:
                hi = min(hi, valid)
                lo = min(lo, hi)
                return [np.asarray(x[start + lo:start + hi]) for x in self.leaves]

            yield Batch(b, valid, rows)


class IterableSource:
    """Any iterable of batches (a generator, a data loader) of unknown total length.

    Batches are re-cut into ``batch_size`` examples, so results never depend on the loader's own
    batch size. Every batch must have the first one's structure, per-example shapes and dtypes.
    """

    kind = "iterable"
    n = None
    num_batches = None

    def __init__(self, data: Iterable, batch_size: int):
        self.data, self.batch_size = data, batch_size
        self.iterator = iter(data)
        try:
            first = next(self.iterator)
        except StopIteration:
            fail(FN, "data", data, "is empty (the iterable yielded no batches)",
                 "at least one batch")
        self.first_tree = first
        leaves, self.treedef = jax.tree.flatten(first)
        self.paths = [f"data batch{jax.tree_util.keystr(p)}"
                      for p, _ in jax.tree_util.tree_flatten_with_path(first)[0]]
        leaves = self._check(leaves, self.treedef, 0, first=True)
        self.example = [jax.ShapeDtypeStruct(x.shape[1:], x.dtype) for x in leaves]
        self.first = leaves

    def _check(self, leaves: list, treedef: Any, i: int, first: bool = False) -> list:
        if not leaves:
            fail(FN, "data", self.data, f"yielded batch {i} with no arrays", "batches of arrays")
        try:
            leaves = [np.asarray(x) for x in leaves]
        except Exception as e:  # noqa: BLE001 - any conversion failure is the user's batch
            fail_type(FN, "data", self.data, f"yielded batch {i} with a non-array leaf ({e})",
                      "batches whose leaves are arrays")
        if any(x.ndim == 0 for x in leaves):
            fail(FN, "data", self.data, f"yielded batch {i} with a 0-d leaf",
                 "arrays with a leading example axis")
        sizes = [x.shape[0] for x in leaves]
        if len(set(sizes)) > 1:
            fail(FN, "data", self.data,
                 f"yielded batch {i} whose leaves have different leading sizes {sizes}",
                 "one leading size per batch")
        if not first:
            got = [(x.shape[1:], x.dtype) for x in leaves]
            want = [(e.shape, e.dtype) for e in self.example]
            if treedef != self.treedef or got != want:
                fail(FN, "data", self.data,
                     f"yielded batch {i} of structure {treedef} with per-example "
                     f"(shape, dtype) {_fmt(got)}",
                     f"every batch like batch 0: structure {self.treedef}, {_fmt(want)}")
        return leaves

    def _incoming(self) -> Iterator[list]:
        yield self.first
        for i, tree in enumerate(self.iterator, start=1):
            leaves, treedef = jax.tree.flatten(tree)
            yield self._check(leaves, treedef, i)

    def batches(self) -> Iterator[Batch]:
        size = self.batch_size
        pending: list[list[np.ndarray]] = []
        count = 0
        b = 0
        for leaves in self._incoming():
            if leaves[0].shape[0] == 0:
                continue
            pending.append(leaves)
            count += leaves[0].shape[0]
            while count >= size:
                chunk, pending, count = _take(pending, count, size)
                yield _memory_batch(b, chunk)
                b += 1
        if count:
            chunk, pending, count = _take(pending, count, count)
            yield _memory_batch(b, chunk)


def _take(pending: list, count: int, size: int) -> tuple[list, list, int]:
    """The first ``size`` rows of the pending loader batches, and what is left."""
    if len(pending[0][0]) == size:  # a loader batch of exactly batch_size: no copy
        return pending[0], pending[1:], count - size
    parts, need = [], size
    while need:
        head = pending[0]
        k = min(need, len(head[0]))
        parts.append([x[:k] for x in head])
        if k == len(head[0]):
            pending = pending[1:]
        else:
            pending = [[x[k:] for x in head], *pending[1:]]
        need -= k
    chunk = [cols[0] if len(cols) == 1 else np.concatenate(cols) for cols in zip(*parts,
                                                                                 strict=True)]
    return chunk, pending, count - size


def _memory_batch(b: int, leaves: list) -> Batch:
    valid = leaves[0].shape[0]

    def rows(lo: int, hi: int) -> list:
        hi = min(hi, valid)
        lo = min(lo, hi)
        return [x[lo:hi] for x in leaves]

    return Batch(b, valid, rows)


def _fmt(pairs: list) -> str:
    return "[" + ", ".join(f"({tuple(s)}, {np.dtype(d).name})" for s, d in pairs) + "]"


def make_source(data: Any, batch_size: int) -> ArraySource | IterableSource:
    """Classify ``data``: a pytree whose leaves are all arrays, else an iterable of batches."""
    with warnings.catch_warnings():  # jax warns that a generator is a leaf: we know
        warnings.simplefilter("ignore", DeprecationWarning)
        leaves, treedef = jax.tree.flatten(data)
    if leaves and all(is_array_like(x) for x in leaves):
        return ArraySource(leaves, treedef, batch_size, data)
    if (isinstance(data, Iterable) and not isinstance(data, (tuple, list, dict, str, bytes))
            and not is_array_like(data)):
        return IterableSource(data, batch_size)
    if not leaves:
        fail(FN, "data", data, "holds no arrays", "a pytree of arrays or an iterable of batches")
    bad = [type(x).__name__ for x in leaves if not is_array_like(x)]
    fail_type(FN, "data", shapes_only(data), f"has non-array leaves of type {sorted(set(bad))}",
              "a pytree of arrays (numpy, memmap, jax) with a common leading axis, or an "
              "iterable of such batches", "wrap Python lists with np.asarray")
    raise AssertionError  # unreachable
