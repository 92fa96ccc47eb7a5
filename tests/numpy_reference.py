"""Independent plain-numpy reference for the modified-backprop engine (``jaxattr.backprop``).

A tiny ReLU MLP and a tiny CNN (SAME 3x3 convs, ReLU, 2x2 max-pool, dense), each with a
forward pass and a HAND-WRITTEN backward pass that applies one rule at every ReLU (REFERENCE.md
section 1, Kim et al. 2019, arXiv:1902.04893). Nothing here imports JAX, so the reference cannot
share a bug with the code under test.

Everything is batch-native: inputs carry a leading batch axis ``B`` and the RectGrad threshold is
taken per example (over axes 1..), as the engine does under ``jax.vmap``. All arithmetic is float64.

Rules at a ReLU with input ``x_in``, output ``a`` and incoming gradient ``r_out``:

* ``"saliency"``: ``r_out * (x_in > 0)`` (the plain gradient),
* ``"guided"``: ``where(x_in > 0, relu(r_out), 0)``,
* ``"deconv"``: ``relu(r_out)``,
* ``"rectgrad"``: ``where(a * r_out > tau, r_out, 0)``, ``tau`` either given or the 'nearest'
  percentile q of ``a * r_out`` per example over all units of the layer, as TensorFlow computes it
  (REFERENCE.md, the official code): ``sort_desc(v)[round_half_even((n-1) * (1 - q/100))]``.
  That equals ``numpy.percentile(v, q, method="nearest")`` except at half-integer positions.

``mutation`` deliberately breaks the RectGrad rule (used to prove the tests are sensitive):
``"ge"`` (``>=`` instead of ``>``), ``"abs"`` (threshold and compare ``|a * r_out|``),
``"batch_percentile"`` (one threshold over the whole batch), ``"linear"`` (numpy's
``method="linear"``). ``mutation="numpy_convention"`` is not a bug but another reading of the
contract: ``numpy.percentile(v, q, method="nearest")``, which rounds half-integer positions the
other way (:func:`percentile_nearest`).
"""

from __future__ import annotations

import numpy as np

RULES = ("saliency", "guided", "deconv", "rectgrad")
MUTATIONS = ("ge", "abs", "batch_percentile", "linear")


# --------------------------------------------------------------------------- thresholds


def percentile_nearest(v: np.ndarray, q: float) -> float:
    """``numpy.percentile(v, q, method="nearest")`` of a 1-D array."""
    return float(np.percentile(v, q, method="nearest"))


def tf_nearest(v: np.ndarray, q: float) -> float:
    """TensorFlow's 'nearest' percentile: ``sort_desc(v)[round((n-1) * (1 - q/100))]`` (the rule).

    Index arithmetic in float64 with Python's round-half-to-even, as ``tf.round`` does. It equals
    :func:`percentile_nearest` except where ``(n-1) * q / 100`` lands on a half integer (see
    ``test_percentile_conventions`` in ``test_backprop_reference.py``).
    """
    v = np.sort(np.ravel(v))[::-1]
    return float(v[round((v.size - 1) * (1.0 - q / 100.0))])


def layer_thresholds(v: np.ndarray, q: float, mutation: str | None = None) -> np.ndarray:
    """Per-example percentile of ``v`` (shape ``(B, ...)``), broadcastable against ``v``."""
    flat = v.reshape(v.shape[0], -1)
    if mutation == "batch_percentile":
        t = np.full(v.shape[0], tf_nearest(flat, q))
    elif mutation == "numpy_convention":
        t = np.percentile(flat, q, axis=1, method="nearest")
    elif mutation == "linear":
        t = np.percentile(flat, q, axis=1, method="linear")
    else:
        t = np.array([tf_nearest(row, q) for row in flat])
    return t.reshape((v.shape[0],) + (1,) * (v.ndim - 1))


# --------------------------------------------------------------------------- ReLU rules


def relu_rule(
    x_in: np.ndarray,
    a: np.ndarray,
    r_out: np.ndarray,
    rule: str,
    *,
    q: float | None = None,
    tau: float | None = None,
    mutation: str | None = None,
    record: list | None = None,
) -> np.ndarray:
    """Backward rule at one ReLU layer (batch-native). Appends diagnostics to ``record``."""
    if rule == "saliency":
        r_in = r_out * (x_in > 0)
    elif rule == "guided":
        r_in = np.where(x_in > 0, np.maximum(r_out, 0.0), 0.0)
    elif rule == "deconv":
        r_in = np.maximum(r_out, 0.0)
    elif rule == "rectgrad":
        v = a * r_out
        cmp = np.abs(v) if mutation == "abs" else v
        if tau is None:
            t = layer_thresholds(cmp, q, mutation)
        else:
            t = np.full((v.shape[0],) + (1,) * (v.ndim - 1), float(tau))
        passed = cmp >= t if mutation == "ge" else cmp > t
        r_in = np.where(passed, r_out, 0.0)
        if record is not None:
            record.append({"x_in": x_in, "a": a, "r_out": r_out, "v": v, "tau": t,
                           "passed": passed})
    else:
        raise ValueError(f"rule={rule!r} must be one of {RULES}")
    return r_in


# --------------------------------------------------------------------------- models


def init_mlp(
    sizes: tuple[int, ...], seed: int, *, bias: float = 0.0, out_shift: float = 0.0
) -> dict:
    """He-normal weights ``W: (n_in, n_out)`` and biases ``N(bias, 0.1^2)`` from a numpy seed.

    ``out_shift`` adds that many standard deviations to the logit layer's weights: the incoming
    gradient of the last ReLU layer is then mostly positive, so the median of ``a * R`` is not 0
    (otherwise RectGrad at q = 50 is exactly Guided Backprop and tests nothing more).
    """
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        b = bias + 0.1 * rng.standard_normal(n_out)
        layers.append((w, b))
    w, b = layers[-1]
    layers[-1] = (w + out_shift * np.sqrt(2.0 / sizes[-2]), b)
    return {"hidden": layers[:-1], "out": layers[-1]}


def init_cnn(
    seed: int, *, in_channels: int = 2, channels: int = 4, hw: int = 8, n_classes: int = 3,
    bias: tuple[float, float] = (0.0, 0.0), kernel_shift: float = 0.0, out_shift: float = 0.0,
) -> dict:
    """Two 3x3 SAME convs (HWIO kernels), then 2x2 max-pool and a dense layer.

    The second conv's bias is centred per channel (minus ``E[relu(N(0,1))] = 1/sqrt(2 pi)`` times
    the kernel's sum), so ``bias[1]`` sets how often its ReLUs are on, alike in every channel.
    ``kernel_shift`` (in standard deviations) is added to the second conv's kernel, which makes
    the gradient reaching the first ReLU layer mostly one-signed; ``out_shift`` as in
    :func:`init_mlp`. Both keep RectGrad's q = 50 threshold away from 0.
    """
    rng = np.random.default_rng(seed)
    conv = []
    c_in = in_channels
    for i, shift in enumerate(bias):
        k = (rng.standard_normal((3, 3, c_in, channels)) + kernel_shift * (i > 0)) * np.sqrt(
            2.0 / (9 * c_in))
        b = shift + 0.1 * rng.standard_normal(channels)
        if i > 0:
            b = b - k.sum(axis=(0, 1, 2)) / np.sqrt(2.0 * np.pi)
        conv.append((k, b))
        c_in = channels
    n_flat = (hw // 2) * (hw // 2) * channels
    w = (rng.standard_normal((n_flat, n_classes)) + out_shift) * np.sqrt(2.0 / n_flat)
    b = 0.1 * rng.standard_normal(n_classes)
    return {"conv": conv, "dense": (w, b)}


def cast(params: dict, dtype) -> dict:
    """Round every array of ``params`` to ``dtype`` (then back to float64 with ``cast(p, f64)``)."""
    if isinstance(params, dict):
        return {k: cast(v, dtype) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return type(params)(cast(v, dtype) for v in params)
    return np.asarray(params).astype(dtype)


def _score_gradient(w_out: np.ndarray, logits: np.ndarray, c) -> np.ndarray:
    """d logit_c / d (last hidden) per example: column c of W_out; c=None picks the max logit."""
    if c is None:
        c = np.argmax(logits, axis=1)
    c = np.broadcast_to(np.asarray(c), (logits.shape[0],))
    return w_out[:, c].T


def mlp_forward(params: dict, x: np.ndarray) -> tuple[np.ndarray, list]:
    h = np.asarray(x, np.float64)
    cache = []
    for w, b in params["hidden"]:
        z = h @ w + b
        h = np.maximum(z, 0.0)
        cache.append((z, h))
    w, b = params["out"]
    return h @ w + b, cache


def mlp_attribution(
    params: dict, x: np.ndarray, rule: str, *, c=None, q: float | None = None,
    tau: float | None = None, mutation: str | None = None, record: list | None = None,
) -> np.ndarray:
    """Modified gradient of logit ``c`` w.r.t. ``x`` (shape ``(B, d)``), rule at every ReLU.

    ``record`` (a list) receives one diagnostics dict per ReLU layer, last layer first.
    """
    logits, cache = mlp_forward(params, x)
    r = _score_gradient(params["out"][0], logits, c)
    for (w, _), (z, a) in zip(reversed(params["hidden"]), reversed(cache), strict=True):
        r = relu_rule(z, a, r, rule, q=q, tau=tau, mutation=mutation, record=record)
        r = r @ w.T
    return r


def conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 SAME cross-correlation, NHWC input, HWIO kernel (what lax.conv_general_dilated does)."""
    bsz, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((bsz, h, w, k.shape[3]))
    for dh in range(3):
        for dw in range(3):
            y += np.einsum("bhwc,co->bhwo", xp[:, dh:dh + h, dw:dw + w, :], k[dh, dw])
    return y + b


def conv_same_backward(dy: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Gradient of :func:`conv_same` w.r.t. its input, given the gradient ``dy`` of its output."""
    bsz, h, w, _ = dy.shape
    dxp = np.zeros((bsz, h + 2, w + 2, k.shape[2]))
    for dh in range(3):
        for dw in range(3):
            dxp[:, dh:dh + h, dw:dw + w, :] += np.einsum("bhwo,co->bhwc", dy, k[dh, dw])
    return dxp[:, 1:-1, 1:-1, :]


def pool_windows(x: np.ndarray) -> np.ndarray:
    """``(B, H, W, C) -> (B, H/2, W/2, C, 4)``: the four entries of each 2x2 window, row-major."""
    bsz, h, w, ch = x.shape
    return x.reshape(bsz, h // 2, 2, w // 2, 2, ch).transpose(0, 1, 3, 5, 2, 4).reshape(
        bsz, h // 2, w // 2, ch, 4)


def unpool_windows(win: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pool_windows`."""
    bsz, h2, w2, ch, _ = win.shape
    return win.reshape(bsz, h2, w2, ch, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(
        bsz, 2 * h2, 2 * w2, ch)


def maxpool_backward(x: np.ndarray, r: np.ndarray, maxpool: str) -> np.ndarray:
    """Route ``r`` (gradient of the 2x2 max-pool output) back to the pool input ``x``.

    ``"max"``: all to the window's winner; ``"prr"``: ``x_i / sum_window(x) * r`` (0 if the
    window sums to 0).
    """
    win = pool_windows(x)
    if maxpool == "max":
        share = np.zeros_like(win)
        np.put_along_axis(share, np.argmax(win, axis=-1)[..., None], 1.0, axis=-1)
    elif maxpool == "prr":
        s = win.sum(axis=-1, keepdims=True)
        share = np.divide(win, s, out=np.zeros_like(win), where=s != 0)
    else:
        raise ValueError(f"maxpool={maxpool!r} must be 'max' or 'prr'")
    return unpool_windows(share * r[..., None])


def zero_ring(r: np.ndarray) -> np.ndarray:
    """The padding trick: zero the outer one-pixel spatial ring of an NHWC gradient."""
    r = r.copy()
    r[:, 0], r[:, -1], r[:, :, 0], r[:, :, -1] = 0.0, 0.0, 0.0, 0.0
    return r


def cnn_forward(params: dict, x: np.ndarray) -> tuple[np.ndarray, list]:
    h = np.asarray(x, np.float64)
    cache = []
    for k, b in params["conv"]:
        z = conv_same(h, k, b)
        h = np.maximum(z, 0.0)
        cache.append((z, h))
    p = pool_windows(h).max(axis=-1)
    w, b = params["dense"]
    return p.reshape(p.shape[0], -1) @ w + b, cache


def cnn_attribution(
    params: dict, x: np.ndarray, rule: str, *, c=None, q: float | None = None,
    tau: float | None = None, maxpool: str = "max", padding_trick: bool = False,
    mutation: str | None = None, record: list | None = None,
) -> np.ndarray:
    """Modified gradient of logit ``c`` w.r.t. ``x`` (shape ``(B, H, W, C)``).

    ``record`` (a list) receives one diagnostics dict per ReLU layer, last layer first.
    """
    logits, cache = cnn_forward(params, x)
    a_last = cache[-1][1]
    bsz, h, w, ch = a_last.shape
    r = _score_gradient(params["dense"][0], logits, c).reshape(bsz, h // 2, w // 2, ch)
    r = maxpool_backward(a_last, r, maxpool)
    for (k, _), (z, a) in zip(reversed(params["conv"]), reversed(cache), strict=True):
        r = relu_rule(z, a, r, rule, q=q, tau=tau, mutation=mutation, record=record)
        if padding_trick:
            r = zero_ring(r)
        r = conv_same_backward(r, k)
    return r


# --------------------------------------------------------------------------- genericity checks


def threshold_margin(record: list) -> float:
    """Smallest ``|v - tau| / max|v|`` over units with ``v != tau``, over all recorded layers.

    A comparison ``v > tau`` can only flip between float32 and float64 when this is ~1e-6, so a
    float32 test whose margin is >= 1e-4 cannot be decided by rounding.
    """
    out = np.inf
    for layer in record:
        v = layer["v"].reshape(layer["v"].shape[0], -1)
        t = layer["tau"].reshape(-1, 1)
        d = np.abs(v - t)
        scale = np.abs(v).max(axis=1, keepdims=True)
        rel = np.where((v != t) & (scale > 0), d / np.where(scale > 0, scale, 1.0), np.inf)
        out = min(out, float(rel.min()))
    return out


def preactivation_margin(cache: list) -> float:
    """Smallest ``|z| / max|z|`` over ReLU inputs (no unit sits on the kink)."""
    return min(float((np.abs(z) / np.abs(z).max()).min()) for z, _ in cache)


def window_margin(a: np.ndarray) -> float:
    """Smallest (largest - second largest) / max over 2x2 max-pool windows of ``a``.

    Zero when a window is all zeros (a tie the 'winner' route leaves undefined).
    """
    s = np.sort(pool_windows(a), axis=-1)
    return float(((s[..., -1] - s[..., -2]) / np.abs(a).max()).min())
