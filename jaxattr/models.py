"""Small ReLU networks to explain: the RectGrad paper's CIFAR-10 CNN (Flax linen), a narrower
variant, the same architecture in Flax NNX, an Equinox MLP, a pure optax training loop, and the
score function that the attribution transforms take.

The CIFAR-10 CNN of Kim et al. (arXiv:1902.04893) is conv32-conv32-maxpool-conv64-conv64-maxpool-
dense256-dense10 with SAME padding and ReLU. Two 2x2 max-pools need the spatial size divisible by 4,
so the same module runs on 32x32x3 CIFAR images and on 8x8x1 digits (:mod:`jaxattr.data`), where the
feature maps are 8x8 then 4x4 then 2x2.

Every ReLU is ``flax.linen.relu`` / ``jax.nn.relu``, the primitive pattern that the
modified-backprop rules of :mod:`jaxattr.backprop` replace.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = [
    "CifarCNN",
    "DigitsCNN",
    "NNXCNN",
    "EqxMLP",
    "init_params",
    "train",
    "accuracy",
    "score_fn",
]


def _check_features(features: Sequence[int], dense: int, num_classes: int) -> tuple[int, ...]:
    features = tuple(features)
    if len(features) != 4 or not all(isinstance(f, (int, np.integer)) and f > 0 for f in features):
        raise ValueError(f"features={features} must be 4 positive ints (conv widths)")
    if dense <= 0:
        raise ValueError(f"dense={dense} must be > 0")
    if num_classes <= 0:
        raise ValueError(f"num_classes={num_classes} must be > 0")
    return features


def _check_image_shape(shape: tuple[int, ...], *, batched_ok: bool = True) -> None:
    ndims = (3, 4) if batched_ok else (3,)
    if len(shape) not in ndims:
        want = "(H, W, C) or (N, H, W, C)" if batched_ok else "(H, W, C)"
        raise ValueError(f"x.shape={shape} must be {want}")
    h, w = shape[-3], shape[-2]
    if h % 4 or w % 4:
        raise ValueError(
            f"x.shape={shape}: H={h} and W={w} must be divisible by 4 (two 2x2 max-pools)"
        )


class CifarCNN(nn.Module):
    """The RectGrad paper's CIFAR-10 CNN: conv-conv-pool-conv-conv-pool-dense-dense, SAME, ReLU.

    Takes one image ``(H, W, C)`` or a batch ``(N, H, W, C)`` with ``H`` and ``W`` divisible by 4,
    and returns the logits (no softmax), shape ``(num_classes,)`` or ``(N, num_classes)``.

    Attributes:
        features: widths of the four 3x3 convolutions.
        dense: width of the hidden dense layer.
        num_classes: number of logits.

    Raises:
        ValueError: at ``init``/``apply`` if ``features`` is not 4 positive ints, ``dense`` or
            ``num_classes`` is not positive, or ``x`` has the wrong rank or spatial size.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import CifarCNN
        >>> model = CifarCNN()
        >>> x = jnp.zeros((5, 8, 8, 1), jnp.float32)
        >>> params = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
        >>> params["params"]["dense1"]["kernel"].shape  # 2x2x64 after two pools on 8x8
        (256, 256)
        >>> jax.eval_shape(model.apply, params, x).shape  # a batch
        (5, 10)
        >>> jax.eval_shape(model.apply, params, x[0]).shape  # one example
        (10,)

    References:
        Kim et al., "Why are Saliency Maps Noisy? Cause of and Solution to Noisy Saliency Maps",
        arXiv:1902.04893 (CIFAR-10 architecture).
    """

    features: Sequence[int] = (32, 32, 64, 64)
    dense: int = 256
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f1, f2, f3, f4 = _check_features(self.features, self.dense, self.num_classes)
        x = jnp.asarray(x)
        _check_image_shape(x.shape)
        single = x.ndim == 3
        if single:
            x = x[None]
        x = nn.relu(nn.Conv(f1, (3, 3), padding="SAME", name="conv1")(x))
        x = nn.relu(nn.Conv(f2, (3, 3), padding="SAME", name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(f3, (3, 3), padding="SAME", name="conv3")(x))
        x = nn.relu(nn.Conv(f4, (3, 3), padding="SAME", name="conv4")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense, name="dense1")(x))
        x = nn.Dense(self.num_classes, name="logits")(x)
        return x[0] if single else x


class DigitsCNN(CifarCNN):
    """:class:`CifarCNN` at half width (conv16-conv16-pool-conv32-conv32-pool-dense64-dense10).

    About 4x cheaper; enough for 8x8 digits. Same call convention as :class:`CifarCNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import DigitsCNN
        >>> x = jnp.zeros((8, 8, 1), jnp.float32)
        >>> params = jax.eval_shape(DigitsCNN().init, jax.random.key(0), x)
        >>> params["params"]["dense1"]["kernel"].shape
        (128, 64)
    """

    features: Sequence[int] = (16, 16, 32, 32)
    dense: int = 64


class NNXCNN(nnx.Module):
    """The :class:`CifarCNN` architecture as a Flax NNX module (random init, for engine tests).

    Args:
        in_features: input channels.
        image_size: ``(H, W)`` of the input, each divisible by 4 (fixes the dense layer's width).
        features: widths of the four 3x3 convolutions.
        dense: width of the hidden dense layer.
        num_classes: number of logits.
        rngs: ``nnx.Rngs`` for the initialisation. On CPU, an ``rbg`` key
            (``nnx.Rngs(jax.random.key(0, impl="rbg"))``) initialises ~2.5x faster than the
            default threefry one, which XLA:CPU compiles slowly.

    Raises:
        ValueError: for non-positive widths or an ``image_size`` not divisible by 4, and at call
            time for an input of the wrong shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxattr.models import NNXCNN
        >>> m = NNXCNN(rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))  # rbg: compiles fast on CPU
        >>> m(jnp.zeros((3, 8, 8, 1), jnp.float32)).shape
        (3, 10)
        >>> m(jnp.zeros((8, 8, 1), jnp.float32)).shape
        (10,)
    """

    def __init__(
        self,
        *,
        in_features: int = 1,
        image_size: tuple[int, int] = (8, 8),
        features: Sequence[int] = (16, 16, 32, 32),
        dense: int = 64,
        num_classes: int = 10,
        rngs: nnx.Rngs,
    ):
        f1, f2, f3, f4 = _check_features(features, dense, num_classes)
        if in_features <= 0:
            raise ValueError(f"in_features={in_features} must be > 0")
        h, w = image_size
        _check_image_shape((h, w, in_features))
        self.image_shape = (h, w, in_features)
        conv = functools.partial(nnx.Conv, kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.conv1 = conv(in_features, f1)
        self.conv2 = conv(f1, f2)
        self.conv3 = conv(f2, f3)
        self.conv4 = conv(f3, f4)
        self.dense1 = nnx.Linear((h // 4) * (w // 4) * f4, dense, rngs=rngs)
        self.logits = nnx.Linear(dense, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        _check_image_shape(x.shape)
        if x.shape[-3:] != self.image_shape:
            raise ValueError(f"x.shape={x.shape} must end with image_shape={self.image_shape}")
        single = x.ndim == 3
        if single:
            x = x[None]
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = nnx.relu(self.conv3(x))
        x = nnx.relu(self.conv4(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        x = self.logits(x)
        return x[0] if single else x


class EqxMLP(eqx.Module):
    """A ReLU MLP in Equinox taking ONE image (any shape, flattened) to logits.

    Args:
        in_shape: shape of one input example.
        width: hidden width.
        depth: number of hidden layers.
        num_classes: number of logits.
        key: PRNG key for the initialisation.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxattr.models import EqxMLP
        >>> mlp = EqxMLP(key=jax.random.key(0))
        >>> mlp(jnp.zeros((8, 8, 1), jnp.float32)).shape
        (10,)
    """

    mlp: eqx.nn.MLP
    in_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_shape: tuple[int, ...] = (8, 8, 1),
        *,
        width: int = 64,
        depth: int = 2,
        num_classes: int = 10,
        key: jax.Array,
    ):
        if width <= 0 or depth < 0 or num_classes <= 0:
            raise ValueError(
                f"width={width}, depth={depth}, num_classes={num_classes}: widths must be > 0 "
                "and depth >= 0"
            )
        self.in_shape = tuple(in_shape)
        self.mlp = eqx.nn.MLP(
            in_size=math.prod(self.in_shape),
            out_size=num_classes,
            width_size=width,
            depth=depth,
            activation=jax.nn.relu,
            key=key,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape != self.in_shape:
            raise ValueError(
                f"x.shape={x.shape} must be in_shape={self.in_shape} (one example; use jax.vmap)"
            )
        return self.mlp(x.reshape(-1))


def init_params(
    model: nn.Module, key: jax.Array, *, input_shape: tuple[int, ...] = (8, 8, 1)
) -> Any:
    """Random variables of a linen ``model`` for inputs of shape ``input_shape``; fast on CPU.

    Same as ``model.init(key, zeros((1, *input_shape)))`` up to the random stream: the
    initialisers draw from XLA's ``rbg`` generator seeded with ``key``'s bits, because threefry
    compiles ~5x slower on XLA:CPU (14 s vs 2.7 s for :class:`CifarCNN` on 2 busy cores).

    Args:
        model: a linen module.
        key: PRNG key (typed or raw uint32).
        input_shape: shape of ONE example.

    Returns:
        The variables ``{"params": ...}``.

    Raises:
        TypeError: if ``key`` is not a PRNG key.

    Example:
        >>> import jax
        >>> from jaxattr.models import DigitsCNN, init_params
        >>> v = init_params(DigitsCNN(), jax.random.key(0))
        >>> v["params"]["conv1"]["kernel"].shape
        (3, 3, 1, 16)
    """
    init_key, _ = _rbg_keys(key)
    return _init(model, init_key, jnp.zeros((1, *input_shape), jnp.float32))


def _check_data(data: Any) -> tuple[jax.Array, jax.Array]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise TypeError(
            f"data must be a pair (images, labels), got {type(data).__name__}"
        ) from None
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 4:
        raise ValueError(f"images.shape={x.shape} must be (N, H, W, C)")
    if y.shape != (x.shape[0],) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(
            f"labels.shape={y.shape}, dtype={y.dtype} must be integer with shape ({x.shape[0]},)"
        )
    if x.shape[0] == 0:
        raise ValueError("data is empty (N=0)")
    return x, y


def _positive_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


def train(
    model: nn.Module,
    data: tuple[Any, Any],
    *,
    key: jax.Array,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 64,
) -> Any:
    """Trains a Flax linen classifier with Adam on softmax cross-entropy; pure: returns the params.

    Initialises the parameters from ``key``, then runs ``steps`` Adam steps on minibatches drawn
    with replacement, one jitted step at a time. Same inputs and key give the same parameters (on
    a given backend: the random streams are XLA's ``rbg`` generator seeded with ``key``'s bits,
    because threefry compiles ~5x slower on XLA:CPU).

    Args:
        model: a linen module mapping ``(N, H, W, C)`` images to ``(N, num_classes)`` logits.
        data: ``(images, labels)``: images ``(N, H, W, C)`` float, labels ``(N,)`` int.
        key: PRNG key (typed or raw uint32), for the initialisation and the minibatches.
        steps: number of Adam steps, > 0.
        lr: Adam learning rate, > 0.
        batch_size: minibatch size, > 0.

    Returns:
        The trained variables, as returned by ``model.init`` (``{"params": ...}``).

    Raises:
        ValueError: if ``steps``, ``lr`` or ``batch_size`` is not positive, or ``data`` has the
            wrong shapes.
        TypeError: if ``data`` is not a pair or ``key`` is not a PRNG key.

    Example:
        >>> import jax
        >>> from jaxattr.data import load_digits
        >>> from jaxattr.models import DigitsCNN, train, accuracy
        >>> d = load_digits()
        >>> params = train(DigitsCNN(), d.train, key=jax.random.key(0), steps=3)
        >>> 0.0 <= accuracy(DigitsCNN(), params, *d.test) <= 1.0
        True
    """
    if not _positive_int(steps):
        raise ValueError(f"steps={steps!r} must be an int > 0")
    if not lr > 0:
        raise ValueError(f"lr={lr} must be > 0")
    if not _positive_int(batch_size):
        raise ValueError(f"batch_size={batch_size!r} must be an int > 0")
    x, y = _check_data(data)
    return _train(model, int(steps), float(lr), int(batch_size), x, y, key)


def _train(model, steps, lr, batch_size, x, y, key):
    # A Python loop over one jitted step: XLA:CPU runs convolutions inside a `lax.scan`/while body
    # ~30x slower than at top level (measured on this model: 170 vs 5 ms per step).
    init_key, data_key = _rbg_keys(key)
    variables = _init(model, init_key, x[:1])
    idx = _minibatches(data_key, steps, batch_size, x.shape[0])
    opt_state = optax.adam(lr).init(variables)
    for rows in idx:  # one (batch_size,) row per step: the step compiles once for any `steps`
        variables, opt_state = _step(model, lr, variables, opt_state, x, y, rows)
    return variables


# Golden-ratio and other odd constants that separate the two RBG seeds derived from one key.
_SEED_MIX = np.array([[0x9E3779B9, 0x7F4A7C15], [0x85EBCA6B, 0xC2B2AE35]], np.uint32)


def _rbg_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two independent ``rbg`` keys from the bits of ``key``, without running threefry.

    XLA:CPU compiles threefry slowly (initialising these CNNs from a threefry key compiled in
    14 s vs 2.7 s from an ``rbg`` key, on 2 busy cores); ``rbg`` uses XLA's RngBitGenerator.
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        bits = jax.random.key_data(key)
    else:
        bits = jnp.asarray(key)
        if bits.dtype != jnp.uint32:
            raise TypeError(f"key={key!r} must be a PRNG key (jax.random.key or PRNGKey)")
    bits = np.asarray(bits, np.uint32)
    if bits.ndim != 1 or bits.size < 2:
        raise TypeError(f"key={key!r} must be a PRNG key (jax.random.key or PRNGKey)")
    head = bits[:2]
    seeds = [np.concatenate([head, head ^ mix]) for mix in _SEED_MIX]
    return tuple(jax.random.wrap_key_data(jnp.asarray(s), impl="rbg") for s in seeds)


@functools.partial(jax.jit, static_argnums=0)
def _init(model, key, x):
    return model.init(key, x)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _minibatches(key, steps, batch_size, n):
    return jax.random.randint(key, (steps, batch_size), 0, n)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _step(model, lr, variables, opt_state, x, y, rows):
    def loss_fn(v, xb, yb):
        logits = model.apply(v, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    g = jax.grad(loss_fn)(variables, x[rows], y[rows])
    updates, opt_state = optax.adam(lr).update(g, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state


def accuracy(model: nn.Module, params: Any, images: Any, labels: Any) -> float:
    """Fraction of ``images`` whose arg-max logit equals ``labels``.

    Args:
        model: the linen module.
        params: its variables.
        images: ``(N, H, W, C)``.
        labels: ``(N,)`` ints.

    Returns:
        The accuracy as a Python float in ``[0, 1]``.

    Raises:
        ValueError: if the shapes do not match.
    """
    x, y = _check_data((images, labels))
    return int(_n_correct(model, params, x, y)) / x.shape[0]


@functools.partial(jax.jit, static_argnums=0)
def _n_correct(model, params, x, y):
    return jnp.sum(jnp.argmax(model.apply(params, x), axis=-1) == y)


def score_fn(
    model: nn.Module, params: Any, label: int | jax.Array | None = None
) -> Callable[[jax.Array], jax.Array]:
    """The score of ONE example, ``x -> scalar``, ready for ``jaxattr.saliency``, ``rectgrad``...

    The score is a logit, before any softmax: the max logit by default (as in the RectGrad paper's
    code), else the logit of ``label``. Batch the attribution, not the score, with ``jax.vmap``.

    Args:
        model: a linen module mapping ``(N, H, W, C)`` to ``(N, num_classes)`` logits.
        params: its variables.
        label: class whose logit is scored; ``None`` scores the max logit. A Python int is checked
            against ``model.num_classes``; an integer array (e.g. a vmapped label) is not.

    Returns:
        ``score(x)`` with ``x`` of shape ``(H, W, C)``, returning a scalar.

    Raises:
        ValueError: if ``label`` is out of range, and when ``score`` is traced with a batch or an
            input that is not ``(H, W, C)``.
        TypeError: if ``label`` is not an integer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxattr as ja
        >>> from jaxattr.models import DigitsCNN, score_fn
        >>> from jaxattr.models import init_params
        >>> model = DigitsCNN()
        >>> params = init_params(model, jax.random.key(0))
        >>> score = score_fn(model, params)
        >>> x = jnp.ones((4, 8, 8, 1), jnp.float32)
        >>> jax.jit(jax.vmap(ja.times_input(ja.rectgrad(score, q=90.0))))(x).shape
        (4, 8, 8, 1)

    References:
        Kim et al., arXiv:1902.04893 (max-logit score).
    """
    if label is not None:
        if isinstance(label, bool) or not (
            isinstance(label, (int, np.integer))
            or (hasattr(label, "dtype") and jnp.issubdtype(label.dtype, jnp.integer))
        ):
            raise TypeError(f"label={label!r} must be an int, an integer array or None")
        if isinstance(label, (int, np.integer)):
            n_cls = getattr(model, "num_classes", None)
            if label < 0 or (n_cls is not None and label >= n_cls):
                raise ValueError(f"label={label} must be in [0, {n_cls})")

    def score(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 3:
            raise ValueError(
                f"score takes ONE example: x.shape={x.shape} must be (H, W, C); "
                "batch the attribution with jax.vmap"
            )
        logits = model.apply(params, x[None])[0]
        return jnp.max(logits) if label is None else logits[label]

    return score
