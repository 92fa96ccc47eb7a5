"""Power-spectrum plots: P(k) per slow-roll order with the Mukhanov-Sasaki reference, and the
error of each order against k."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["power_spectra", "spectrum_errors"]


def power_spectra(k, spectra: Mapping[str, np.ndarray], reference=None, *, ax=None):
    """Plot P(k) for each labelled spectrum (and the reference, dashed), log-log.

    Args:
        k: wavenumbers, shape (m,).
        spectra: label -> P(k), each shape (m,).
        reference: the reference P(k) (e.g. Mukhanov-Sasaki), or None.
        ax: a matplotlib Axes, or None for a new figure.

    Returns:
        The Axes.

    Example:
        >>> import numpy as np
        >>> ax = power_spectra(np.array([1.0, 2.0]), {"order 0": np.array([1.0, 0.9])})
        >>> ax.get_xscale()
        'log'
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    k = np.asarray(k)
    for label, p in spectra.items():
        ax.plot(k, np.asarray(p), label=label)
    if reference is not None:
        ax.plot(k, np.asarray(reference), "k--", label="Mukhanov-Sasaki")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("P(k)")
    ax.legend(fontsize="small")
    return ax


def spectrum_errors(k, spectra: Mapping[str, np.ndarray], reference, *, ax=None):
    """Plot ``|ln P - ln P_ref|`` against k for each labelled spectrum, log-log.

    Args:
        k: wavenumbers, shape (m,).
        spectra: label -> P(k), each shape (m,).
        reference: the reference P(k).
        ax: a matplotlib Axes, or None for a new figure.

    Returns:
        The Axes.

    Example:
        >>> import numpy as np
        >>> ax = spectrum_errors(np.array([1.0, 2.0]), {"o1": np.array([1.1, 1.0])},
        ...                      np.array([1.0, 1.01]))
        >>> ax.get_ylabel()
        '|ln P - ln P_MS|'
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    k = np.asarray(k)
    ref = np.log(np.asarray(reference))
    for label, p in spectra.items():
        err = np.abs(np.log(np.asarray(p)) - ref)
        ax.plot(k, np.maximum(err, 1e-16), label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("|ln P - ln P_MS|")
    ax.legend(fontsize="small")
    return ax
