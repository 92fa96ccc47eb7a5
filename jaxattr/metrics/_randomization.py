"""Sanity check: rank correlation and cascading model-parameter randomisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_bool, check_callable, check_choice, check_key, fail, fail_type
from ._common import _as_float, _safe_ratio


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
        A scalar in ``[-1, 1]``; exactly ``nan`` if either array is constant (an all-zero map
        included), as ``scipy.stats.spearmanr``: the correlation is undefined, not 0.

    Raises:
        ArgumentError: if the shapes differ or the arrays are empty.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.metrics import rank_correlation
        >>> float(rank_correlation(jnp.array([1.0, 2.0, 3.0]), jnp.array([10.0, 40.0, 90.0])))
        1.0
        >>> float(rank_correlation(jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 2.0, 1.0])))
        -1.0
        >>> float(rank_correlation(jnp.zeros((28, 28)), jnp.arange(784.0).reshape(28, 28)))
        nan

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
    ra, rb = _centred_ranks(a.ravel(), dtype), _centred_ranks(b.ravel(), dtype)
    norm = jnp.sqrt((ra * ra).sum()) * jnp.sqrt((rb * rb).sum())
    return _safe_ratio((ra * rb).sum(), norm)


def _centred_ranks(v: jax.Array, dtype: Any) -> jax.Array:
    """Twice the average rank minus its mean, ``2 r - (n + 1)``, computed in integers.

    Average ranks always sum to ``n (n + 1) / 2``, so their mean is exactly ``(n + 1) / 2``:
    centring on it in integer arithmetic makes a constant array's ranks exactly 0 (a float mean
    of the ranks is off by rounding, which turned the ``nan`` of a constant map into ~1e-8).
    The factor 2 cancels in the correlation.
    """
    s = jnp.sort(v)
    lo = jnp.searchsorted(s, v, side="left")
    hi = jnp.searchsorted(s, v, side="right")
    return (lo + hi - v.size).astype(dtype)  # 2 * mean(lo+1 .. hi) - (n + 1)


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
    # JAX annotates key_bits_array as jax.Array, but numpy uint32 key data works the same
    return [jax.random.wrap_key_data(
        np.random.default_rng([*seed, i]).integers(0, 2**32, data.shape, dtype=np.uint32),  # pyright: ignore[reportArgumentType]  # takes numpy
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

    **Undefined correlations.** An example whose original or randomised map is constant, most
    often all zero because the re-drawn weights switch every ReLU off, has no rank correlation:
    its entry is ``nan``, exactly (as ``scipy.stats.spearmanr``), never a number near 0. It is not
    evidence that the map decorrelated (a method whose map vanishes has not been shown to depend
    on the weights), so a verdict must treat it as undefined: average with ``np.nanmean``, report
    how many entries are ``nan`` (``np.isnan(r.correlation).sum(axis=1)``), and call a layer with
    no finite entry undefined, not a pass.

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
        shape ``(len(layers), N)``, with ``nan`` (undefined, see above) for an example whose
        original or randomised map is constant.

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
