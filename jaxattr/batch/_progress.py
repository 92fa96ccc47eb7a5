"""Progress of :func:`explain_dataset`: tqdm on a terminal, a periodic line in logs, a hook."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    """Reports committed examples.

    ``show``: a tqdm bar (rate and ETA) when stderr is a terminal, else one plain line every
    ``every`` seconds and a last one at the end. ``callback(done, total)`` (``total`` is ``None``
    for an iterable of unknown length) is called after every committed batch, from the writer
    thread.
    """

    def __init__(self, total: int | None, initial: int, show: bool,
                 callback: Callable[[int, int | None], Any] | None, every: float = 10.0,
                 stream: Any = None):
        self.total, self.done, self.start_done = total, initial, initial
        self.callback, self.every = callback, every
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        self.show = show
        if show and _isatty(self.stream):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, unit="ex", desc="explain_dataset",
                                file=self.stream, dynamic_ncols=True)

    def update(self, done: int) -> None:
        step, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(step)
        elif self.show and time.perf_counter() - self.last >= self.every:
            self._line()
        if self.callback is not None:
            self.callback(done, self.total)

    def _line(self) -> None:
        self.last = now = time.perf_counter()
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        total = "?" if self.total is None else str(self.total)
        text = f"explain_dataset: {self.done}/{total} examples, {rate:.1f}/s"
        if self.total is not None and rate > 0 and self.done < self.total:
            text += f", ETA {(self.total - self.done) / rate:.0f} s"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.show:
            self._line()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
