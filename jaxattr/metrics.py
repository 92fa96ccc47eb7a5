"""Scores of ONE attribution map: smoothness, localisation, sparsity and deletion faithfulness.

Every function takes a single map (an image's ``(H, W)`` or ``(H, W, C)`` attribution) and is a
pure JAX function: batch with ``jax.vmap`` and compile with ``jax.jit``. Maps whose L1 norm is zero
give ``nan`` rather than an error, so a batch with one all-zero map still jits and vmaps; shape and
option mistakes raise :class:`jaxattr.errors.ArgumentError` at trace time.

These are the quantities of the RectGrad paper's experiments (Kim et al. 2019, arXiv:1902.04893):
total variation of the maps, the share of attribution outside the object or inside a pasted patch,
plus the Gini sparsity index (Hurley & Rickard 2009, arXiv:0811.4706) and a deletion curve
(Petsiuk et al. 2018, RISE, arXiv:1806.07421), which measures faithfulness without retraining.

With a ground truth (the object and patch masks of :func:`jaxattr.data.make_shapes`):
:func:`energy_in_mask` (the energy pointing game; on a distractor or spurious patch's mask, the
mass on that patch) and :func:`pointing_game` (does the map's peak fall on the object). Sanity
check of a method against the model (Adebayo et al. 2018, arXiv:1810.03292):
:func:`cascading_randomization` re-initialises a model's layers from the top and returns the
:func:`rank_correlation` of the maps with the trained model's maps, layer by layer.

:func:`remove_and_retrain` is ROAR/KAR (Hooker et al. 2019, arXiv:1806.10758): retrain on images
whose most (ROAR) or least (KAR) attributed pixels are replaced by the mean, and report test
accuracy. It trains once per method and fraction, so on CPU it fits minutes only for small models
and data (8x8 digits: about 1.5 s per training); :func:`deletion_curve` is the retraining-free
stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr._checks import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_key,
    fail,
    fail_type,
)

__all__ = [
    "CascadingRandomization",
    "DeletionCurve",
    "RetrainCurve",
    "cascading_randomization",
    "deletion_curve",
    "energy_in_mask",
    "gini",
    "mass_in_region",
    "pointing_game",
    "rank_correlation",
    "remove_and_retrain",
    "total_variation",
]


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


# ---------------------------------------------------------------------------------------------
# Ground truth: energy pointing game, pointing game


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


# ---------------------------------------------------------------------------------------------
# Sanity check: cascading model-parameter randomisation


def rank_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation of two arrays of the same shape (all entries), ties averaged.

    Each array's entries are replaced by their ranks (1..n; tied values share the mean of their
    ranks, as ``scipy.stats.rankdata``), then the Pearson correlation of the ranks is taken.
    Maps with many exact zeros (RectGrad, Guided Backprop) have large ties, which is why the
    averaging matters.

    Args:
        a: an array (one map).
        b: an array of ``a``'s shape.

    Returns:
        A scalar in ``[-1, 1]``; ``nan`` if either array is constant.

    Raises:
        ArgumentError: if the shapes differ or the arrays are empty.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import rank_correlation
        >>> float(rank_correlation(jnp.array([1.0, 2.0, 3.0]), jnp.array([10.0, 40.0, 90.0])))
        1.0
        >>> float(rank_correlation(jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 2.0, 1.0])))
        -1.0

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", arXiv:1810.03292 (rank correlation of
        maps before and after randomisation).
    """
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        fail("rank_correlation", "b.shape", tuple(b.shape), "differs from a's",
             f"a.shape={tuple(a.shape)}")
    if a.size == 0:
        fail("rank_correlation", "a.shape", tuple(a.shape), "is empty", "non-empty arrays")
    dtype = jnp.result_type(a.dtype, b.dtype)
    ra, rb = _average_ranks(a.ravel(), dtype), _average_ranks(b.ravel(), dtype)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return _safe_ratio((ra * rb).sum(), jnp.sqrt((ra * ra).sum() * (rb * rb).sum()))


def _average_ranks(v: jax.Array, dtype: Any) -> jax.Array:
    s = jnp.sort(v)
    lo = jnp.searchsorted(s, v, side="left")
    hi = jnp.searchsorted(s, v, side="right")
    return (lo + hi + 1).astype(dtype) / 2  # mean of the 1-based ranks lo+1 .. hi


_batched_rank_correlation = jax.jit(jax.vmap(rank_correlation))


class CascadingRandomization(NamedTuple):
    """Result of :func:`cascading_randomization`."""

    layers: tuple[str, ...]
    """The layer names, in the order they were randomised (top first)."""
    correlation: np.ndarray
    """``(len(layers), N)``: rank correlation of each example's map after randomising
    ``layers[:k + 1]`` (cascading) or ``layers[k]`` alone (independent) with its original map."""
    maps: list[np.ndarray] | None
    """With ``return_maps=True``: ``[original, after layer 0, after layer 1, ...]``."""


def _find_layer(params: Any, name: str, fn: str) -> tuple:
    """The key path of the unique mapping entry called ``name`` ('a/b' for a nested path)."""
    parts = tuple(name.split("/"))
    found: list[tuple] = []

    def walk(node: Any, path: tuple) -> None:
        if not hasattr(node, "items"):
            return
        for k, v in node.items():
            p = (*path, k)
            if tuple(map(str, p[-len(parts):])) == parts:
                found.append(p)
            else:
                walk(v, p)

    walk(params, ())
    if len(found) != 1:
        names = sorted({str(p[-1]) for p in _dict_paths(params)})
        fail(fn, "layers", name, "is not found" if not found else "matches several entries",
             "names of entries of params, e.g. " + ", ".join(repr(n) for n in names[:12]),
             "for a nested or ambiguous name give its path, e.g. 'params/conv1'")
    return found[0]


def _dict_paths(node: Any, path: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if hasattr(node, "items"):
        for k, v in node.items():
            out.append((*path, k))
            out.extend(_dict_paths(v, (*path, k)))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _set(tree: Any, path: tuple, value: Any) -> Any:
    """A copy of the nested mapping ``tree`` with ``tree[path] = value`` (others shared)."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _set(tree[path[0]], path[1:], value)
    return type(tree)(out) if not isinstance(tree, dict) else out


def _scale_matched_normal(key: jax.Array, leaf: jax.Array) -> jax.Array:
    """Default re-initialisation: Gaussian with the leaf's own standard deviation, mean 0.

    Drawn with numpy from the key's bits: ``jax.random.normal`` would compile threefry once per
    leaf shape, about 3 s each on XLA:CPU (a CNN's dozen leaves: over 30 s).
    """
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    a = np.asarray(leaf)
    return jnp.asarray((rng.standard_normal(a.shape) * a.std()).astype(a.dtype))


def _leaf_keys(key: jax.Array, k: int, n: int) -> list[jax.Array]:
    """``n`` keys of ``key``'s implementation for layer ``k``, derived on the host with numpy
    (no threefry compilation): the same key gives the same keys everywhere."""
    data = np.asarray(jax.random.key_data(key))
    seed = [*data.ravel().tolist(), k]
    impl = jax.random.key_impl(key)
    return [jax.random.wrap_key_data(
        np.random.default_rng([*seed, i]).integers(0, 2**32, data.shape, dtype=np.uint32),
        impl=impl) for i in range(n)]


def cascading_randomization(
    map_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    layers: list[str] | tuple[str, ...],
    xs: jax.Array,
    *,
    key: jax.Array,
    mode: str = "cascading",
    absolute: bool = True,
    channel_axis: int | None = -1,
    reinit: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    return_maps: bool = False,
) -> CascadingRandomization:
    """Model-parameter randomisation test: how much do the maps change when layers are re-drawn?

    ``layers`` are names of entries of the ``params`` pytree (nested mappings, as Flax's
    ``{"params": {"conv1": ...}}``), given from the output down, e.g. ``["logits", "dense1",
    "conv4", ..., "conv1"]``. In ``"cascading"`` mode step ``k`` re-initialises ``layers[0..k]``
    (all arrays below each name); in ``"independent"`` mode only ``layers[k]``. At each step the
    maps ``map_fn(randomised_params, xs)`` are compared with ``map_fn(params, xs)``, example by
    example, by :func:`rank_correlation` of the channel-summed maps (of their absolute values with
    ``absolute=True``, Adebayo et al.'s main variant: sign flips do not count as change). A method
    that explains the model must give low correlations once the weights are random; one whose maps
    stay correlated (Guided Backprop, in Adebayo et al.) depends on the input, not on the model.

    Args:
        map_fn: ``(params, xs) -> maps`` for the whole batch, e.g.
            ``lambda p, xs: jax.vmap(ja.saliency(lambda x, y: model.apply(p, x[None])[0, y]))(xs,
            ys)``. Called ``len(layers) + 1`` times; jit it yourself if you like.
        params: the trained model's parameters (nested mappings of arrays).
        layers: entry names ('a/b' for a nested path), top layer first, at least one.
        xs: the batch of inputs explained.
        key: PRNG key of the re-initialisations (one key per array, derived from ``key``'s bits,
            the layer's index and the array's index).
        mode: ``"cascading"`` or ``"independent"``.
        absolute: correlate ``|map|`` (True) or the signed maps.
        channel_axis: channel axis of each example's map (summed first); ``None`` correlates all
            entries of each example's map.
        reinit: ``(key, array) -> array``; default: Gaussian with mean 0 and the array's own
            standard deviation (keeps each layer's scale; a zero-initialised bias stays 0).
        return_maps: keep the maps of every step (memory: ``len(layers) + 1`` batches).

    Returns:
        A :class:`CascadingRandomization` ``(layers, correlation, maps)``; ``correlation`` has
        shape ``(len(layers), N)``, with ``nan`` for an example whose map is constant.

    Raises:
        ArgumentError: if ``layers`` is empty or a name is not found (or found twice), ``mode`` is
            unknown, or ``map_fn``'s output does not have one map per example.
        ArgumentTypeError: if ``map_fn`` is not callable, ``layers`` is a string, ``key`` is not
            a PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.metrics import cascading_randomization
        >>> params = {"w1": jnp.array([[1.0, -2.0], [0.5, 1.0]]), "w2": jnp.array([1.0, 3.0])}
        >>> def map_fn(p, xs):  # gradient of w2 . relu(w1 x) for each x
        ...     return jax.vmap(jax.grad(lambda x: p["w2"] @ jax.nn.relu(p["w1"] @ x)))(xs)
        >>> xs = jnp.array([[1.0, 2.0, ], [2.0, -1.0]])
        >>> r = cascading_randomization(map_fn, params, ["w2", "w1"], xs, key=jax.random.key(0),
        ...                             channel_axis=None)
        >>> r.correlation.shape
        (2, 2)

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", arXiv:1810.03292.
    """
    fn = "cascading_randomization"
    check_callable(map_fn, "map_fn", fn=fn, expected="a function (params, xs) -> maps")
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        fail_type(fn, "layers", layers, f"has type {type(layers).__name__}",
                  "a list of layer names, top layer first", "e.g. ['logits', 'dense1']")
    if len(layers) == 0:
        fail(fn, "layers", layers, "is empty", "at least one layer name")
    mode = check_choice(mode, "mode", ("cascading", "independent"), fn=fn)
    absolute = check_bool(absolute, "absolute", fn=fn)
    key = check_key(key, fn=fn)
    if reinit is not None:
        check_callable(reinit, "reinit", fn=fn, expected="a function (key, array) -> array")
    draw = reinit or _scale_matched_normal
    paths = [_find_layer(params, str(name), fn) for name in layers]

    def flat(maps: Any) -> jax.Array:
        maps = _as_float(maps)
        if maps.ndim < 1 or maps.shape[0] != n:
            fail(fn, "map_fn", map_fn, f"returns shape {tuple(maps.shape)}",
                 f"one map per example: a leading axis of {n}")
        if channel_axis is not None:
            if not -(maps.ndim - 1) <= channel_axis < maps.ndim - 1:
                fail(fn, "channel_axis", channel_axis,
                     f"is out of range for maps of shape {tuple(maps.shape[1:])}",
                     "an axis of one map, or None")
            maps = maps.sum(axis=channel_axis % (maps.ndim - 1) + 1)
        maps = maps.reshape(n, -1)
        return jnp.abs(maps) if absolute else maps

    xs = jnp.asarray(xs)
    n = xs.shape[0] if xs.ndim else 0
    original = map_fn(params, xs)
    ref = flat(original)
    corr = _batched_rank_correlation
    rows, kept = [], [np.asarray(original)] if return_maps else None
    current = params
    for k, path in enumerate(paths):
        base = current if mode == "cascading" else params
        sub = _get(base, path)
        leaves, treedef = jax.tree.flatten(sub)
        keys = _leaf_keys(key, k, len(leaves))
        new = jax.tree.unflatten(treedef, [draw(kk, jnp.asarray(v))
                                           for kk, v in zip(keys, leaves, strict=False)])
        randomised = _set(base, path, new)
        if mode == "cascading":
            current = randomised
        maps = map_fn(randomised, xs)
        rows.append(np.asarray(corr(ref, flat(maps))))
        if kept is not None:
            kept.append(np.asarray(maps))
    return CascadingRandomization(tuple(map(str, layers)), np.stack(rows), kept)


# ---------------------------------------------------------------------------------------------
# ROAR / KAR: remove (or keep) the most attributed pixels and retrain


class RetrainCurve(NamedTuple):
    """Result of :func:`remove_and_retrain`."""

    fractions: np.ndarray
    """``(k,)`` fractions of the pixels of each image that were replaced (ROAR) or kept (KAR)."""
    accuracy: np.ndarray
    """``(k,)`` test accuracy of the model retrained at each fraction (``eval_fn``'s value)."""


def _ablate(x: np.ndarray, a: np.ndarray, frac: float, keep: bool, fill: np.ndarray) -> np.ndarray:
    """``x`` with its top ``floor(frac * H * W)`` pixels by ``|sum_c a|`` replaced by ``fill``
    (``keep=False``, ROAR) or all its other pixels replaced (``keep=True``, KAR)."""
    n, h, w = x.shape[:3]
    e = np.abs(a.sum(axis=-1)).reshape(n, h * w)
    order = np.argsort(-e, axis=1, kind="stable")  # most attributed first, ties by index
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    k = int(np.floor(frac * h * w + 1e-9))
    if keep:  # KAR: keep the top k, replace the rest
        drop = rank >= k
    else:  # ROAR: replace the top k
        drop = rank < k
    drop = drop.reshape(n, h, w, 1)
    return np.where(drop, fill.reshape(1, 1, 1, -1), x).astype(x.dtype)


def remove_and_retrain(
    train_fn: Callable[[np.ndarray, np.ndarray], Any],
    eval_fn: Callable[[Any, np.ndarray, np.ndarray], float],
    train_data: tuple[Any, Any, Any],
    test_data: tuple[Any, Any, Any],
    *,
    fractions: tuple[float, ...] | list[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    mode: str = "remove",
) -> RetrainCurve:
    """ROAR (``mode="remove"``) or KAR (``mode="keep"``): retrain without the attributed pixels.

    For each fraction ``f``, every training and test image loses its ``floor(f * H * W)`` most
    attributed pixels (ROAR: they are replaced) or keeps only them (KAR: all others are
    replaced). Pixels are ranked by ``|attribution summed over channels|``, highest first, ties
    by flat index; a replaced pixel takes the per-channel mean of the *unablated* training
    images (Hooker et al.'s choice, so the replacement carries no class information). A model is
    then trained from scratch on the ablated training set with ``train_fn`` and scored on the
    ablated test set with ``eval_fn``. A good attribution makes ROAR accuracy fall fast and KAR
    accuracy stay high; compare with a random map (its accuracy is the floor to beat).

    Args:
        train_fn: ``(images, labels) -> params``: trains a fresh model (fix its seed inside).
        eval_fn: ``(params, images, labels) -> accuracy``.
        train_data: ``(images, labels, maps)``: images ``(N, H, W, C)``, maps of the same shape
            (one per training image, e.g. computed with the model trained on the clean data).
        test_data: ``(images, labels, maps)`` for the test set.
        fractions: fractions in ``[0, 1]``.
        mode: ``"remove"`` (ROAR) or ``"keep"`` (KAR).

    Returns:
        A :class:`RetrainCurve` ``(fractions, accuracy)``.

    Raises:
        ArgumentError: if ``mode`` is unknown, a fraction is outside ``[0, 1]``, or a maps array
            does not have its images' shape (images must be ``(N, H, W, C)``).
        ArgumentTypeError: if ``train_fn`` or ``eval_fn`` is not callable.

    Example:
        >>> import numpy as np
        >>> from jaxattr.metrics import remove_and_retrain
        >>> x = np.arange(8.0).reshape(2, 2, 2, 1); y = np.array([0, 1])
        >>> seen = []
        >>> curve = remove_and_retrain(lambda xs, ys: seen.append(xs) or 0,
        ...                            lambda p, xs, ys: 1.0, (x, y, x), (x, y, x),
        ...                            fractions=[0.5])
        >>> seen[0][0, ..., 0].tolist()  # the 2 brightest pixels -> the training mean 3.5
        [[0.0, 1.0], [3.5, 3.5]]

    References:
        Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep
        Neural Networks", arXiv:1806.10758.
    """
    fn = "remove_and_retrain"
    check_callable(train_fn, "train_fn", fn=fn, expected="a function (images, labels) -> params")
    check_callable(eval_fn, "eval_fn", fn=fn,
                   expected="a function (params, images, labels) -> accuracy")
    mode = check_choice(mode, "mode", ("remove", "keep"), fn=fn)
    fracs = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.number)) or not 0 <= f <= 1:
            fail(fn, "fractions", list(fractions), f"contains {f!r}", "fractions in [0, 1]")
        fracs.append(float(f))
    arrays = []
    for which, data in (("train_data", train_data), ("test_data", test_data)):
        try:
            x, y, a = data
        except (TypeError, ValueError):
            fail_type(fn, which, data, "is not a triple", "(images, labels, maps)")
        x, y, a = np.asarray(x), np.asarray(y), np.asarray(a)
        if x.ndim != 4:
            fail(fn, f"{which} images.shape", x.shape, f"has {x.ndim} axes", "(N, H, W, C)")
        if a.shape != x.shape:
            fail(fn, f"{which} maps.shape", a.shape, "differs from the images'",
                 f"images.shape={x.shape}")
        arrays.append((x, y, a))
    (xtr, ytr, atr), (xte, yte, ate) = arrays
    fill = xtr.reshape(-1, xtr.shape[-1]).mean(axis=0)
    keep = mode == "keep"
    acc = []
    for f in fracs:
        params = train_fn(_ablate(xtr, atr, f, keep, fill), ytr)
        acc.append(float(eval_fn(params, _ablate(xte, ate, f, keep, fill), yte)))
    return RetrainCurve(np.asarray(fracs), np.asarray(acc))
