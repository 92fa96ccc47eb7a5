"""Attribution maps with matplotlib: a heatmap, an overlay on the image, a method-by-example grid.

Maps are summed over the channel axis (``(H, W, C) -> (H, W)``). Signed maps get a symmetric
diverging colour scale (white at zero); unsigned display uses ``|map|`` on a sequential scale. The
colour limit is a percentile of ``|map|`` (99 by default), so a few extreme pixels do not wash out
the rest. No pyplot state is touched by :func:`method_grid`: it returns a
``matplotlib.figure.Figure`` that works headless (``fig.savefig``) and displays inline in Jupyter.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

__all__ = ["to_2d", "color_limits", "heatmap", "overlay", "method_grid"]

SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "inferno"


def to_2d(attr: Any) -> np.ndarray:
    """Sums a map over its channel axis: ``(H, W, C) -> (H, W)``; ``(H, W)`` is returned as is.

    Args:
        attr: array of shape ``(H, W)`` or ``(H, W, C)``.

    Returns:
        float64 array of shape ``(H, W)``.

    Raises:
        ValueError: if ``attr`` is not 2-D or 3-D.

    Example:
        >>> import numpy as np
        >>> from jaxattr.plot.attribution import to_2d
        >>> to_2d(np.ones((2, 3, 4))).tolist()
        [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
    """
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 3:
        return a.sum(axis=-1)
    if a.ndim == 2:
        return a
    raise ValueError(f"attr.shape={a.shape} must be (H, W) or (H, W, C)")


def color_limits(
    attr2d: np.ndarray, *, signed: bool, clip_percentile: float = 99.0
) -> tuple[float, float]:
    """Colour limits ``(vmin, vmax)`` of a 2-D map: ``+-p`` if signed, ``(0, p)`` otherwise,
    with ``p`` the ``clip_percentile`` of ``|attr2d|`` (1 for an all-zero map).

    Args:
        attr2d: the summed map.
        signed: symmetric limits around zero if True.
        clip_percentile: percentile of ``|attr2d|`` used as the limit, in ``(0, 100]``.

    Returns:
        ``(vmin, vmax)`` with ``vmax > 0``.

    Raises:
        ValueError: if ``clip_percentile`` is outside ``(0, 100]``.

    Example:
        >>> import numpy as np
        >>> from jaxattr.plot.attribution import color_limits
        >>> color_limits(np.array([[-3.0, 1.0], [2.0, 0.0]]), signed=True, clip_percentile=100)
        (-3.0, 3.0)
    """
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile={clip_percentile} must be in (0, 100]")
    p = float(np.percentile(np.abs(attr2d), clip_percentile))
    if not np.isfinite(p) or p <= 0.0:
        p = 1.0
    return (-p, p) if signed else (0.0, p)


def _resolve(attr: Any, signed: bool | None, clip_percentile: float):
    a = to_2d(attr)
    if signed is None:
        signed = bool(np.any(a < 0))
    shown = a if signed else np.abs(a)
    vmin, vmax = color_limits(a, signed=signed, clip_percentile=clip_percentile)
    return shown, signed, vmin, vmax


def heatmap(
    ax: Axes,
    attr: Any,
    *,
    signed: bool | None = None,
    clip_percentile: float = 99.0,
    cmap: str | None = None,
    title: str | None = None,
    colorbar: bool = False,
) -> AxesImage:
    """Draws an attribution map on ``ax``.

    Args:
        ax: matplotlib axes.
        attr: map of shape ``(H, W)`` or ``(H, W, C)`` (summed over ``C``).
        signed: True: diverging colours, symmetric around 0; False: ``|attr|`` on a sequential
            scale; None: signed iff the map has a negative value.
        clip_percentile: percentile of ``|attr|`` at which colours saturate.
        cmap: colour map name; default ``"RdBu_r"`` (signed) or ``"inferno"`` (unsigned).
        title: axes title.
        colorbar: add a colour bar next to the axes.

    Returns:
        The ``AxesImage``.

    Raises:
        ValueError: for a bad shape or ``clip_percentile``.

    Example:
        >>> import numpy as np
        >>> from matplotlib.figure import Figure
        >>> from jaxattr.plot.attribution import heatmap
        >>> ax = Figure().subplots()
        >>> im = heatmap(ax, np.array([[-2.0, 1.0], [0.5, 0.0]]), clip_percentile=100)
        >>> im.get_clim()
        (-2.0, 2.0)
    """
    shown, signed, vmin, vmax = _resolve(attr, signed, clip_percentile)
    cmap = cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)
    im = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def _grey(image: Any) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., 0] if img.shape[-1] == 1 else img
    if img.ndim == 3 and img.shape[-1] not in (3, 4):
        raise ValueError(f"image.shape={np.shape(image)} must be (H, W), (H, W, 1), (H, W, 3/4)")
    if img.ndim not in (2, 3):
        raise ValueError(f"image.shape={np.shape(image)} must be (H, W), (H, W, 1), (H, W, 3/4)")
    return img


def overlay(
    ax: Axes,
    image: Any,
    attr: Any,
    *,
    alpha: float = 0.8,
    signed: bool | None = None,
    clip_percentile: float = 99.0,
    cmap: str | None = None,
    title: str | None = None,
) -> AxesImage:
    """Draws ``image`` in grey and the map on top, opacity growing with ``|attr|``.

    Each pixel's colour comes from the map's colour scale (as in :func:`heatmap`) and its opacity
    is ``alpha * min(|attr| / limit, 1)``, so pixels with no attribution leave the image visible.

    Args:
        ax: matplotlib axes.
        image: ``(H, W)``, ``(H, W, 1)`` (grey) or ``(H, W, 3)`` (RGB), values in ``[0, 1]``.
        attr: map of shape ``(H, W)`` or ``(H, W, C)``, same ``H, W`` as ``image``.
        alpha: maximal opacity of the map, in ``[0, 1]``.
        signed: as in :func:`heatmap`.
        clip_percentile: as in :func:`heatmap`.
        cmap: as in :func:`heatmap`.
        title: axes title.

    Returns:
        The ``AxesImage`` of the map layer.

    Raises:
        ValueError: for bad shapes, mismatched ``H, W``, or ``alpha`` outside ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> from matplotlib.figure import Figure
        >>> from jaxattr.plot.attribution import overlay
        >>> ax = Figure().subplots()
        >>> im = overlay(ax, np.zeros((4, 4, 1)), np.eye(4)[..., None])
        >>> im.get_array().shape
        (4, 4, 4)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1]")
    img = _grey(image)
    shown, signed, vmin, vmax = _resolve(attr, signed, clip_percentile)
    if shown.shape != img.shape[:2]:
        raise ValueError(f"attr H, W = {shown.shape} must match image H, W = {img.shape[:2]}")
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    cmap_obj = matplotlib.colormaps[cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)]
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    rgba = cmap_obj(norm(shown))
    rgba[..., 3] = alpha * np.clip(np.abs(shown) / vmax, 0.0, 1.0)
    im = ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return im


def method_grid(
    images: Any,
    maps_by_method: Mapping[str, Any],
    *,
    signed: bool | None = None,
    clip_percentile: float = 99.0,
    show_overlay: bool = False,
    row_labels: Sequence[str] | None = None,
    cell_size: float = 1.6,
) -> Figure:
    """A grid of attribution maps: one row per example, the input then one column per method.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` inputs, values in ``[0, 1]``.
        maps_by_method: ``{method name: maps}``, each maps array ``(N, H, W)`` or ``(N, H, W, C)``;
            the dict order is the column order.
        signed: as in :func:`heatmap`, for every map (None decides per map).
        clip_percentile: as in :func:`heatmap`, per map.
        show_overlay: draw each map over its image (:func:`overlay`) instead of alone.
        row_labels: optional label per row (e.g. the predicted class), shown left of the input.
        cell_size: size of one cell in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        ValueError: if ``maps_by_method`` is empty, a method's maps do not have ``N`` examples of
            size ``H x W``, or ``row_labels`` has the wrong length.

    Example:
        >>> import numpy as np
        >>> from jaxattr.plot.attribution import method_grid
        >>> x = np.zeros((2, 8, 8, 1))
        >>> fig = method_grid(x, {"saliency": np.ones((2, 8, 8, 1)), "ig": -np.ones((2, 8, 8))})
        >>> len(fig.axes)
        6
    """
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim not in (3, 4):
        raise ValueError(f"images.shape={imgs.shape} must be (N, H, W) or (N, H, W, C)")
    if not maps_by_method:
        raise ValueError("maps_by_method is empty: give at least one {name: maps}")
    n, h, w = imgs.shape[:3]
    maps = {}
    for name, m in maps_by_method.items():
        m = np.asarray(m)
        if m.ndim not in (3, 4) or m.shape[:3] != (n, h, w):
            raise ValueError(
                f"maps_by_method[{name!r}].shape={m.shape} must start with (N, H, W)={(n, h, w)}"
            )
        maps[name] = m
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"len(row_labels)={len(row_labels)} must equal the number of images {n}")
    ncols = 1 + len(maps)
    fig = Figure(figsize=(cell_size * ncols, cell_size * n), layout="constrained")
    axes = np.asarray(fig.subplots(n, ncols, squeeze=False))
    for i in range(n):
        img = _grey(imgs[i])
        axes[i, 0].imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if row_labels is not None:
            axes[i, 0].set_ylabel(str(row_labels[i]))
        for j, m in enumerate(maps.values(), start=1):
            if show_overlay:
                overlay(axes[i, j], img, m[i], signed=signed, clip_percentile=clip_percentile)
            else:
                heatmap(axes[i, j], m[i], signed=signed, clip_percentile=clip_percentile)
    width = max(8, int(9 * cell_size))  # characters that fit above one cell at "small" size
    for j, name in enumerate(["input", *maps]):
        axes[0, j].set_title(textwrap.fill(str(name), width), fontsize="small")
    return fig
