"""Meshes and processes for :func:`explain_dataset`: the default mesh, which rows of a batch each
process owns, and the few collectives (all-gather, barrier, agreement) that keep processes in step
on ``jax.distributed``; all are no-ops in a single process."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from .._checks import check_choice, fail, fail_type
from ..errors import ArgumentError

FN = "explain_dataset"


def mesh_for(mesh: Mesh | None, axis: str | None) -> tuple[Mesh, str]:
    """The user's mesh and axis, checked; default: 1-D ``("data",)`` over every device of every
    process, grouped by process so that each process owns a contiguous block of each batch."""
    if mesh is None:
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        mesh = Mesh(np.array(devices), ("data",))
    elif not isinstance(mesh, Mesh):
        fail_type(FN, "mesh", mesh, f"has type {type(mesh).__name__}", "a jax.sharding.Mesh")
    axis = mesh.axis_names[0] if axis is None else axis
    return mesh, check_choice(axis, "axis", mesh.axis_names, fn=FN)


def process_rows(sharding: NamedSharding, padded: int, mesh: Mesh) -> dict[int, tuple[int, int]]:
    """Positions ``[lo, hi)`` of the padded batch held by each process (must be contiguous)."""
    spans: dict[int, set] = {}
    for dev, index in sharding.devices_indices_map((padded,)).items():
        s = index[0]
        spans.setdefault(dev.process_index, set()).add((s.start or 0, padded if s.stop is None
                                                        else s.stop))
    out = {}
    for p, parts in spans.items():
        a, b = min(s for s, _ in parts), max(e for _, e in parts)
        if sum(e - s for s, e in parts) != b - a:
            fail(FN, "mesh", mesh, f"gives process {p} non-contiguous rows {sorted(parts)}",
                 "a mesh whose data axis groups each process's devices together",
                 "build it from jax.devices() sorted by process_index (the default mesh)")
        out[p] = (a, b)
    return out


def allgather(x: np.ndarray, nproc: int) -> np.ndarray:
    if nproc == 1:
        return x[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def barrier(name: str, nproc: int) -> None:
    if nproc > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(ok: bool, nproc: int, path: str | None, what: str | None = None) -> None:
    """Every process learns whether every process's committed data was verified."""
    oks = allgather(np.array([ok], np.int32), nproc).reshape(-1)
    if not oks.all():
        where = what or (f"the rows of process(es) {np.flatnonzero(oks == 0).tolist()} have "
                         "another content hash")
        raise ArgumentError(f"{FN}: data differs from the data of the run in out={path!r}: "
                            f"{where}; expected the same data to resume. Pass overwrite=True to "
                            "start over, or use another out directory")
