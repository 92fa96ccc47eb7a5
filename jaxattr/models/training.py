"""Training for the linen models: random initialisation, a pure optax Adam loop, and accuracy.

Random streams use XLA's ``rbg`` generator seeded with the bits of the user's key (threefry
compiles ~5x slower on XLA:CPU); the key itself is validated by :func:`jaxattr._checks.check_key`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_int, check_key, check_real, fail, fail_type

__all__ = ["accuracy", "init_params", "train"]


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
        ArgumentTypeError: if ``key`` is not one PRNG key (ArgumentError for a batch of keys).

    Example:
        >>> import jax
        >>> from jaxattr.models import DigitsCNN, init_params
        >>> v = init_params(DigitsCNN(), jax.random.key(0))
        >>> v["params"]["conv1"]["kernel"].shape
        (3, 3, 1, 16)
    """
    init_key, _ = _rbg_keys(key, fn="init_params")
    return _init(model, init_key, jnp.zeros((1, *input_shape), jnp.float32))


def _check_data(data: Any, *, fn: str) -> tuple[jax.Array, jax.Array]:
    try:
        x, y = data
    except (TypeError, ValueError):
        fail_type(fn, "data", data, f"has type {type(data).__name__}", "a pair (images, labels)")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 4:
        fail(fn, "images.shape", x.shape, f"has {x.ndim} axes", "(N, H, W, C)")
    if y.shape != (x.shape[0],) or not jnp.issubdtype(y.dtype, jnp.integer):
        fail(fn, "labels", y, f"has shape {y.shape} and dtype {y.dtype}",
             f"integer labels of shape ({x.shape[0]},)")
    if x.shape[0] == 0:
        fail(fn, "images.shape", x.shape, "is empty (N=0)", "at least one example")
    return x, y


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
        ArgumentError: if ``steps``, ``lr`` or ``batch_size`` is not positive, ``data`` has the
            wrong shapes, or ``key`` holds several keys.
        ArgumentTypeError: if ``steps`` or ``batch_size`` is not an int, ``data`` is not a pair
            or ``key`` is not a PRNG key.

    Example:
        >>> import jax
        >>> from jaxattr.data import load_digits
        >>> from jaxattr.models import DigitsCNN, train, accuracy
        >>> d = load_digits()
        >>> params = train(DigitsCNN(), d.train, key=jax.random.key(0), steps=3)
        >>> 0.0 <= accuracy(DigitsCNN(), params, *d.test) <= 1.0
        True
    """
    steps = check_int(steps, "steps", fn="train", minimum=1)
    lr = check_real(lr, "lr", fn="train", lo=0.0, lo_open=True)
    batch_size = check_int(batch_size, "batch_size", fn="train", minimum=1)
    x, y = _check_data(data, fn="train")
    keys = _rbg_keys(key, fn="train")
    return _train(model, steps, lr, batch_size, x, y, keys)


def _train(model, steps, lr, batch_size, x, y, keys):
    # A Python loop over one jitted step: XLA:CPU runs convolutions inside a `lax.scan`/while body
    # ~30x slower than at top level (measured on this model: 170 vs 5 ms per step), because it
    # only puts them in its fast layout at top level (see jaxattr._jaxpr.canonical_convs).
    init_key, data_key = keys
    variables = _init(model, init_key, x[:1])
    idx = _minibatches(data_key, steps, batch_size, x.shape[0])
    opt_state = optax.adam(lr).init(variables)
    for rows in idx:  # one (batch_size,) row per step: the step compiles once for any `steps`
        variables, opt_state = _step(model, lr, variables, opt_state, x, y, rows)
    return variables


# Golden-ratio and other odd constants that separate the two RBG seeds derived from one key.
_SEED_MIX = np.array([[0x9E3779B9, 0x7F4A7C15], [0x85EBCA6B, 0xC2B2AE35]], np.uint32)


def _rbg_keys(key: Any, *, fn: str) -> tuple[jax.Array, jax.Array]:
    """Two independent ``rbg`` keys from the bits of ``key``, without running threefry.

    ``key`` is checked by :func:`jaxattr._checks.check_key` (one typed key or one legacy uint32
    ``PRNGKey``). XLA:CPU compiles threefry slowly (initialising these CNNs from a threefry key
    compiled in 14 s vs 2.7 s from an ``rbg`` key, on 2 busy cores); ``rbg`` uses XLA's
    RngBitGenerator.
    """
    bits = np.asarray(jax.random.key_data(check_key(key, fn=fn)), np.uint32).reshape(-1)
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
        ArgumentError: if the shapes do not match.
    """
    x, y = _check_data((images, labels), fn="accuracy")
    return int(_n_correct(model, params, x, y)) / x.shape[0]


@functools.partial(jax.jit, static_argnums=0)
def _n_correct(model, params, x, y):
    return jnp.sum(jnp.argmax(model.apply(params, x), axis=-1) == y)
