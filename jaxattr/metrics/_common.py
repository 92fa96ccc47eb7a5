"""Private helpers shared by the metrics: channel summing, safe ratios, float conversion."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._checks import fail


def _channel_summed(attr: jax.Array, channel_axis: int | None, fn: str) -> jax.Array:
    """``attr`` as an ``(H, W)`` map: 2-D as is, 3-D summed over ``channel_axis``."""
    if attr.ndim == 2:
        return attr
    if attr.ndim != 3:
        fail(fn, "attr.shape", tuple(attr.shape), f"has {attr.ndim} axes",
             "(H, W) or (H, W, C)", "one map per call: use jax.vmap for a batch")
    if channel_axis is None:
        fail(fn, "channel_axis", None, f"but attr.shape={tuple(attr.shape)} has 3 axes",
             "the channel axis of a 3-D map (-3..2)")
    if not -3 <= channel_axis < 3:
        fail(fn, "channel_axis", channel_axis,
             f"is out of range for attr.shape={tuple(attr.shape)}", "an axis in -3..2")
    return attr.sum(axis=channel_axis)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den``, ``nan`` where ``den == 0`` (no nan in the gradient of the other branch)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), jnp.nan)


def _as_float(attr: Any) -> jax.Array:
    attr = jnp.asarray(attr)
    if not jnp.issubdtype(attr.dtype, jnp.floating):
        attr = attr.astype(jnp.result_type(float))
    return attr
