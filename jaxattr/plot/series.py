"""Plots for the theory notebook: Monte Carlo vs series with error bars, and error vs sigma."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def series_vs_mc(
    mc: Any,
    stderr: Any,
    series: Any,
    *,
    z: float = 5.0,
    ax: Any = None,
    labels: Sequence[str] = ("Monte Carlo", "series"),
    title: str | None = None,
) -> Any:
    """Per-coordinate Monte Carlo estimates with ``z * stderr`` bars against the series.

    Args:
        mc: Monte Carlo estimate (flattened). stderr: its standard error. series: the series.
        z: error-bar half-width in standard errors. ax: a matplotlib Axes (new figure if None).
        labels: legend labels. title: optional title.

    Returns:
        The Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> ax = series_vs_mc([1.0, 2.0], [0.1, 0.1], [1.05, 1.9])
        >>> len(ax.lines) >= 1
        True
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    mc, se, ser = (np.ravel(np.asarray(a, dtype=float)) for a in (mc, stderr, series))
    idx = np.arange(mc.size)
    ax.errorbar(idx, mc, yerr=z * np.broadcast_to(se, mc.shape), fmt="o", ms=3, capsize=2,
                label=f"{labels[0]} (±{z:g} SE)")
    ax.plot(idx, ser, "x", color="C3", label=labels[1])
    ax.set_xlabel("coordinate i")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def error_vs_sigma(
    sigmas: Any, errors: dict[str, Any], *, ax: Any = None, fit: bool = True
) -> Any:
    """Log-log error curves (one per label) against sigma, with fitted slopes in the legend.

    Args:
        sigmas: noise levels. errors: label -> errors at ``sigmas``. ax: matplotlib Axes or None.
        fit: annotate each curve with its least-squares log-log slope.

    Returns:
        The Axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> s = [0.1, 0.2, 0.4]
        >>> ax = error_vs_sigma(s, {"K=0": [x**2 for x in s]})
        >>> ax.get_legend_handles_labels()[1]
        ['K=0 (slope 2.00)']
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    sig = np.asarray(sigmas, dtype=float)
    for label, err in errors.items():
        e = np.asarray(err, dtype=float)
        if fit:
            slope = np.polyfit(np.log(sig), np.log(e), 1)[0]
            label = f"{label} (slope {slope:.2f})"
        ax.loglog(sig, e, "o-", label=label)
    ax.set_xlabel("sigma")
    ax.set_ylabel("error")
    ax.legend(fontsize=8)
    return ax
