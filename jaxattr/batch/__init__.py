"""Explain a whole dataset: per-example arguments, any data source, pipelined, multi-host,
resumable output that cannot mix runs.

One idea per module: ``_source`` (arrays or an iterable of batches, cut into global batches),
``_output`` (the output directory: leaf files, manifest, atomic progress), ``_progress`` (tqdm,
log lines, callback), ``_mesh`` (the mesh, each process's rows, collectives), ``_writer`` (the
thread that copies back, writes and commits) and ``_runner`` (the loop and the fingerprint).
"""

from ._runner import explain_dataset as explain_dataset

__all__ = ["explain_dataset"]
