"""Scores against a ground-truth mask: energy pointing game and pointing game."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_choice, check_int, fail, fail_type
from ._common import _as_float, _channel_summed, _safe_ratio


def _energy(attr: Any, mask: Any, channel_axis: int | None, mode: str, fn: str):
    """``(e, mask)``: the non-negative ``(H, W)`` energy of a map and a checked boolean mask."""
    mode = check_choice(mode, "mode", ("abs", "positive"), fn=fn)
    m = _channel_summed(_as_float(attr), channel_axis, fn)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        fail_type(fn, "mask.dtype", str(mask.dtype), "is not bool", "a boolean mask")
    if mask.shape != m.shape:
        fail(fn, "mask.shape", tuple(mask.shape), "does not match the map",
             f"the map's (H, W)={tuple(m.shape)}")
    e = jnp.abs(m) if mode == "abs" else jnp.maximum(m, 0)
    return e, mask


def energy_in_mask(
    attr: jax.Array, mask: jax.Array, *, mode: str = "abs", channel_axis: int | None = -1
) -> jax.Array:
    """Energy pointing game: the share of a map's energy that lies inside a ground-truth mask.

    The map is first summed over its channel axis (signed, as displayed), then turned into a
    non-negative energy ``e``: ``|m|`` (``mode="abs"``, the RectGrad paper's reading: evidence
    for and against both count) or ``max(m, 0)`` (``mode="positive"``, Score-CAM's energy
    pointing game: only evidence for the class). The score is ``sum(e[mask]) / sum(e)``.

    With the object mask this is the attribution *inside* the object (1 is perfect, the object's
    area fraction is what a uniform map gets); with a distractor or spurious patch's mask it is
    the mass on that patch. ``mode="abs"`` equals :func:`mass_in_region`.

    Args:
        attr: one map ``(H, W)`` or ``(H, W, C)``.
        mask: boolean ``(H, W)``, True inside the region.
        mode: ``"abs"`` or ``"positive"``.
        channel_axis: the channel axis of a 3-D ``attr``; ignored for 2-D maps.

    Returns:
        A scalar in ``[0, 1]``; ``nan`` when the energy is zero everywhere (an all-zero map, or
        an all-negative one with ``mode="positive"``).

    Raises:
        ArgumentError: if ``mode`` is unknown, ``mask``'s shape is not the map's ``(H, W)``, or
            ``attr`` is not 2-D/3-D.
        ArgumentTypeError: if ``mask`` is not boolean.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import energy_in_mask
        >>> attr = jnp.array([[3.0, -1.0], [0.0, 1.0]])
        >>> mask = jnp.array([[True, True], [False, False]])
        >>> float(energy_in_mask(attr, mask)), float(energy_in_mask(attr, mask, mode="positive"))
        (0.8, 0.75)

    References:
        Wang et al., "Score-CAM", arXiv:1910.01279 (energy-based pointing game); Kim et al.,
        arXiv:1902.04893 (attribution outside the object; the patch experiment).
    """
    e, mask = _energy(attr, mask, channel_axis, mode, "energy_in_mask")
    return _safe_ratio(jnp.where(mask, e, 0).sum(), e.sum())


def pointing_game(
    attr: jax.Array,
    mask: jax.Array,
    *,
    mode: str = "abs",
    tolerance: int = 0,
    channel_axis: int | None = -1,
) -> jax.Array:
    """Pointing game: 1.0 if the map's highest-energy pixel lies on the mask, else 0.0.

    The energy ``e`` is that of :func:`energy_in_mask` (``|m|`` or ``max(m, 0)`` of the
    channel-summed map). The peak is ``argmax(e)``; on ties, the first in row-major order. A
    ``tolerance`` of ``t`` pixels counts a peak within ``t`` pixels (Chebyshev distance: a
    ``(2t + 1)``-square) of the mask as a hit. The mean over examples is the hit rate.

    Args:
        attr: one map ``(H, W)`` or ``(H, W, C)``.
        mask: boolean ``(H, W)``.
        mode: ``"abs"`` or ``"positive"``.
        tolerance: pixels of slack, >= 0 (Zhang et al. use 15 px on ImageNet-sized images).
        channel_axis: the channel axis of a 3-D ``attr``.

    Returns:
        A scalar ``1.0`` (hit) or ``0.0`` (miss) of the map's float dtype; ``nan`` when the
        energy is zero everywhere (no peak).

    Raises:
        ArgumentError: as :func:`energy_in_mask`, or if ``tolerance`` is negative.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import pointing_game
        >>> mask = jnp.array([[True, False, False]])
        >>> attr = jnp.array([[1.0, 0.0, -2.0]])
        >>> float(pointing_game(attr, mask)), float(pointing_game(attr, mask, mode="positive"))
        (0.0, 1.0)
        >>> float(pointing_game(attr, mask, tolerance=2))
        1.0

    References:
        Zhang et al., "Top-down Neural Attention by Excitation Backprop", arXiv:1608.00507.
    """
    tolerance = check_int(tolerance, "tolerance", fn="pointing_game", minimum=0)
    e, mask = _energy(attr, mask, channel_axis, mode, "pointing_game")
    if tolerance:
        t = tolerance
        mask = jax.lax.reduce_window(mask.astype(jnp.int32), jnp.zeros((), jnp.int32), jax.lax.max,
                                     (2 * t + 1, 2 * t + 1), (1, 1),
                                     ((t, t), (t, t))) > 0
    hit = mask.ravel()[jnp.argmax(e.ravel())].astype(e.dtype)
    return jnp.where(e.max() > 0, hit, jnp.nan)
