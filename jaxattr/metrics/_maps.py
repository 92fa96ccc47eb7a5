"""Scores of one map on its own: total variation, mass in a region, Gini index, deletion curve."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_callable, check_int, fail, fail_type
from ._common import _as_float, _channel_summed, _safe_ratio


def total_variation(
    attr: jax.Array, *, channel_axis: int | None = -1, normalize: bool = True
) -> jax.Array:
    """Anisotropic total variation of a map: ``sum |m[i, j+1] - m[i, j]| + |m[i+1, j] - m[i, j]|``.

    ``m`` is ``attr`` summed over its channel axis (signed, as the map is displayed). Lower means
    smoother; the RectGrad paper reports it to show that RectGrad maps are less noisy.

    Args:
        attr: one map of shape ``(H, W)`` or ``(H, W, C)``.
        channel_axis: the channel axis of a 3-D ``attr`` (summed first); ignored for 2-D maps.
        normalize: divide by the L1 norm ``sum |m|``, which makes the value scale-free (the same for
            ``attr`` and ``10 * attr``); an all-zero map then gives ``nan``.

    Returns:
        A scalar of ``attr``'s float dtype.

    Raises:
        ArgumentError: if ``attr`` is not 2-D or 3-D, or ``channel_axis`` is out of range / None
            for a 3-D map.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import total_variation
        >>> m = jnp.array([[1.0, -1.0], [0.0, 0.0]])  # |dx| = 2, |dy| = 1 + 1, L1 = 2
        >>> float(total_variation(m, normalize=False)), float(total_variation(m))
        (4.0, 2.0)

    References:
        Kim et al., "Why are Saliency Maps Noisy? Cause of and Solution to Noisy Saliency Maps",
        arXiv:1902.04893 (the total-variation comparison).
    """
    m = _channel_summed(_as_float(attr), channel_axis, "total_variation")
    tv = jnp.abs(jnp.diff(m, axis=1)).sum() + jnp.abs(jnp.diff(m, axis=0)).sum()
    if not normalize:
        return tv
    return _safe_ratio(tv, jnp.abs(m).sum())


def mass_in_region(
    attr: jax.Array, mask: jax.Array, *, channel_axis: int | None = -1
) -> jax.Array:
    """Fraction of the attribution mass ``sum |m|`` that lies inside a boolean region.

    ``m`` is ``attr`` summed over its channel axis, then made absolute. ``1 - mass_in_region(attr,
    object_mask)`` is the RectGrad paper's "attribution outside the object"; with the mask of a
    pasted patch it is the patch experiment's score.

    Args:
        attr: one map of shape ``(H, W)`` or ``(H, W, C)``.
        mask: boolean array of shape ``(H, W)``, True inside the region.
        channel_axis: the channel axis of a 3-D ``attr``; ignored for 2-D maps.

    Returns:
        A scalar in ``[0, 1]``; ``nan`` for an all-zero map.

    Raises:
        ArgumentError: if ``mask`` is not boolean or its shape is not ``attr``'s ``(H, W)``, or on
            the shape errors of :func:`total_variation`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import mass_in_region
        >>> attr = jnp.array([[1.0, -3.0], [0.0, 0.0]])
        >>> mask = jnp.array([[True, False], [False, False]])
        >>> float(mass_in_region(attr, mask))
        0.25

    References:
        Kim et al., arXiv:1902.04893 (attribution outside the bounding box; the patch experiment).
    """
    m = _channel_summed(_as_float(attr), channel_axis, "mass_in_region")
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        fail_type("mass_in_region", "mask.dtype", str(mask.dtype), "is not bool",
                  "a boolean mask")
    if mask.shape != m.shape:
        fail("mass_in_region", "mask.shape", tuple(mask.shape), "does not match the map",
             f"the map's (H, W)={tuple(m.shape)}")
    a = jnp.abs(m)
    return _safe_ratio(jnp.where(mask, a, 0).sum(), a.sum())


def gini(attr: jax.Array) -> jax.Array:
    """Gini index of ``|attr|`` over all its entries: a sparsity score in ``[0, 1)``.

    With ``c`` the ``n`` values of ``|attr|`` sorted ascending (Hurley & Rickard's form),
    ``G = 1 - 2 sum_k (c_k / sum(c)) (n - k + 1/2) / n`` for ``k = 1..n``. It is 0 for a uniform
    map, ``(n - 1) / n`` for a one-hot map, scale-invariant, and ``nan`` for an all-zero map.

    Args:
        attr: one map of any shape (channels included, no sum).

    Returns:
        A scalar of ``attr``'s float dtype.

    Raises:
        ArgumentError: if ``attr`` is empty.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import gini
        >>> float(gini(jnp.ones((2, 2)))), float(gini(jnp.array([0.0, 0.0, 0.0, 5.0])))
        (0.0, 0.75)

    References:
        Hurley & Rickard, "Comparing Measures of Sparsity", arXiv:0811.4706.
    """
    c = jnp.sort(jnp.abs(_as_float(attr)).ravel())
    n = c.size
    if n == 0:
        fail("gini", "attr.shape", tuple(jnp.shape(attr)), "is empty", "a non-empty map")
    k = jnp.arange(1, n + 1, dtype=c.dtype)
    weighted = (c * (n - k + 0.5)).sum()
    return 1 - 2 * _safe_ratio(weighted, c.sum() * n)


class DeletionCurve(NamedTuple):
    """Result of :func:`deletion_curve` (a pytree: it passes through ``jit`` and ``vmap``)."""

    fractions: jax.Array
    """``(steps + 1,)`` fraction of units removed at each point, from 0 to 1."""
    scores: jax.Array
    """``(steps + 1,)`` score of the input with that fraction removed; ``scores[0]`` is ``f(x)``."""
    auc: jax.Array
    """Trapezoid area under ``scores`` against ``fractions`` (lower = more faithful map)."""


def deletion_curve(
    score_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    attr: jax.Array,
    *,
    steps: int = 10,
    baseline: float | jax.Array = 0.0,
    channel_axis: int | None = None,
) -> DeletionCurve:
    """Deletion curve: the score as the most-attributed units of ``x`` are replaced by a baseline.

    Units are ranked by signed attribution, highest first (ties: lower flat index first). At step
    ``k = 0..steps`` the top ``floor(k n / steps)`` of the ``n`` units are set to ``baseline`` and
    ``score_fn`` is evaluated (all ``steps + 1`` inputs in one ``jax.vmap``). A faithful map makes
    the score fall fast, so a lower area under the curve is better. No retraining is involved.

    Args:
        score_fn: ``x -> scalar`` (e.g. the logit of the explained class, for one example).
        x: the input explained.
        attr: its attribution map, same shape as ``x``.
        steps: number of equal removal fractions (static: it sets the output length).
        baseline: the value of a removed unit: a scalar, or an array of ``x``'s shape (a blurred
            image, the data mean).
        channel_axis: ``None`` ranks and removes every entry of ``x`` on its own; an axis of ``x``
            ranks whole pixels by the attribution summed over that axis and removes all their
            channels together.

    Returns:
        A :class:`DeletionCurve` ``(fractions, scores, auc)`` with
        ``fractions = floor(k n / steps) / n``.

    Raises:
        ArgumentError: if ``steps`` is not a positive int, ``attr``'s or ``baseline``'s shape does
            not match ``x``, ``channel_axis`` is out of range, or ``score_fn`` is not callable or
            does not return a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import deletion_curve
        >>> w = jnp.array([3.0, 1.0, 2.0, 0.0]); x = jnp.ones(4)
        >>> c = deletion_curve(lambda v: w @ v, x, w * x, steps=4)
        >>> c.scores.tolist(), float(c.auc)
        ([6.0, 3.0, 1.0, 0.0, 0.0], 1.75)

    References:
        Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
        Models", arXiv:1806.07421 (the deletion metric).
    """
    if not callable(score_fn):
        check_callable(score_fn, "score_fn", fn="deletion_curve",
                       expected="a function of ONE input returning a scalar")
    steps = check_int(steps, "steps", fn="deletion_curve", minimum=1)
    x = jnp.asarray(x)
    attr = _as_float(attr)
    if attr.shape != x.shape:
        fail("deletion_curve", "attr.shape", tuple(attr.shape), "differs from x's",
             f"x.shape={tuple(x.shape)}")
    baseline = jnp.asarray(baseline, dtype=x.dtype)
    if baseline.ndim and baseline.shape != x.shape:
        fail("deletion_curve", "baseline.shape", tuple(baseline.shape), "is not broadcastable",
             f"() or x.shape={tuple(x.shape)}")
    baseline = jnp.broadcast_to(baseline, x.shape)

    if channel_axis is None:
        units = attr
    else:
        if not -x.ndim <= channel_axis < x.ndim:
            fail("deletion_curve", "channel_axis", channel_axis,
                 f"is out of range for x.shape={tuple(x.shape)}", "an axis of x or None")
        channel_axis = channel_axis % x.ndim
        units = attr.sum(axis=channel_axis)
    n = units.size
    if n == 0:
        fail("deletion_curve", "x.shape", tuple(x.shape), "is empty", "a non-empty input")

    order = jnp.argsort(-units.ravel(), stable=True)  # most attributed first
    rank = jnp.empty((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    rank = rank.reshape(units.shape)
    counts_np = np.array([k * n // steps for k in range(steps + 1)])
    counts = jnp.asarray(counts_np, dtype=jnp.int32)

    def removed(c: jax.Array) -> jax.Array:
        drop = rank < c
        if channel_axis is not None:
            drop = jnp.broadcast_to(jnp.expand_dims(drop, channel_axis), x.shape)
        return jnp.where(drop, baseline, x)

    inputs = jax.vmap(removed)(counts)
    scores = jax.vmap(score_fn)(inputs)
    if scores.shape != (steps + 1,):
        fail_type("deletion_curve", "score_fn", score_fn,
                  f"returns shape {tuple(scores.shape[1:])}", "a function returning a scalar")
    fractions = jnp.asarray(counts_np / n, dtype=scores.dtype)
    auc = (jnp.diff(fractions) * (scores[1:] + scores[:-1]) / 2).sum()
    return DeletionCurve(fractions, scores, auc)
