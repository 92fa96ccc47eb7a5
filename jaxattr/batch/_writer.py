"""The writer thread of :func:`explain_dataset`: copies results back to the host, writes this
process's rows and commits progress, in dispatch order, while the main thread dispatches the next
batches. A bounded queue keeps host memory to a few batches."""

from __future__ import annotations

import queue
import threading
from typing import Any

import jax
import numpy as np

from ._progress import Progress

DEPTH = 2  # batches waiting for the writer (bounds host memory; more does not pay)


class Writer(threading.Thread):
    """Copies results back, writes this process's rows and commits, in dispatch order."""

    def __init__(self, sink: Any, progress: Progress, batch_size: int, total: int | None):
        super().__init__(name="jaxattr-explain-writer", daemon=True)
        self.sink, self.progress, self.batch_size, self.total = sink, progress, batch_size, total
        self.queue: queue.Queue = queue.Queue(maxsize=DEPTH)
        self.error: BaseException | None = None
        self.abort = False

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None or self.abort:
                continue
            try:
                self._write(*item)
            except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
                self.error = e

    def _write(self, b: int, outs: list, valid: int, digest: bytes) -> None:
        first = b * self.batch_size
        for leaf, arr in enumerate(outs):
            for pos, rows in local_rows(arr):
                keep = min(len(rows), valid - pos)
                if keep > 0:
                    self.sink.write_rows(leaf, first + pos, rows[:keep])
        self.sink.commit(b, digest)
        self.progress.update(first + valid)

    def put(self, item: tuple) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """After an error on the main thread: write nothing more (what is committed stays)."""
        self.abort = True
        self.queue.put(None)
        self.join()


def local_rows(arr: jax.Array) -> list[tuple[int, np.ndarray]]:
    """This process's rows of a batch-sharded result: (position in the batch, rows)."""
    by_start: dict[int, Any] = {}
    for shard in arr.addressable_shards:
        by_start.setdefault(shard.index[0].start or 0, shard)
    return [(s, np.asarray(by_start[s].data)) for s in sorted(by_start)]
