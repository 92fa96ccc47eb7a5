"""Tests of jaxattr.data (digits loader) and jaxattr.models (CNNs, training, score function)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.datasets
from flax import nnx

from jaxattr.data import Digits, load_digits, stroke_mask
from jaxattr.errors import ArgumentError, ArgumentTypeError
from jaxattr.models import (
    NNXCNN,
    CifarCNN,
    DigitsCNN,
    EqxMLP,
    accuracy,
    init_params,
    score_fn,
    train,
)

F32 = jnp.float32


# ----------------------------------------------------------------------------------------- data


def test_load_digits_shapes_dtypes_range(digits):
    assert isinstance(digits, Digits)
    assert digits.x_train.shape == (1348, 8, 8, 1) and digits.x_test.shape == (449, 8, 8, 1)
    assert digits.x_train.dtype == np.float32 and digits.x_test.dtype == np.float32
    assert digits.y_train.dtype == np.int32 and digits.y_test.shape == (449,)
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    assert set(np.unique(digits.y_train)) == set(range(10))
    assert digits.train[0] is digits.x_train and digits.test[1] is digits.y_test


def test_load_digits_is_a_partition_of_sklearn_digits(digits):
    # Independent reference: sklearn's raw integer grey levels 0..16 divided by 16.
    raw = sklearn.datasets.load_digits()
    ref = np.concatenate([raw.images.reshape(len(raw.target), -1) / 16.0, raw.target[:, None]], 1)
    ours = np.concatenate(
        [
            np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 64).astype(np.float64),
            np.concatenate([digits.y_train, digits.y_test])[:, None],
        ],
        1,
    )
    # Same multiset of (image, label) rows: every image in exactly one set, values exact.
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(ref, axis=0))
    assert len(ours) == len(ref)


def test_load_digits_split_is_seeded():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_test, c.y_test)
    assert load_digits(seed=1, test_fraction=0.5).x_test.shape[0] == round(1797 * 0.5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"test_fraction": 0.0}, ValueError, r"test_fraction=0.0 must be in \(0, 1\)"),
        ({"test_fraction": 1.5}, ValueError, r"test_fraction=1.5 must be in \(0, 1\)"),
        ({"test_fraction": 1e-4}, ValueError, r"test_fraction=0.0001 leaves an empty set"),
        ({"seed": "a"}, TypeError, r"seed='a' must be an int"),
        ({"seed": True}, TypeError, r"seed=True must be an int"),
    ],
)
def test_load_digits_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_digits(**kwargs)


def test_stroke_mask():
    img = np.array([[[0.0], [0.3]], [[0.25], [1.0]]], np.float32)
    np.testing.assert_array_equal(stroke_mask(img), [[False, True], [False, True]])
    np.testing.assert_array_equal(stroke_mask(img, threshold=0.5), [[False, False], [False, True]])
    assert stroke_mask(np.zeros((5, 8, 8, 1))).shape == (5, 8, 8)
    with pytest.raises(ValueError, match=r"threshold=1.0 must be in \[0, 1\)"):
        stroke_mask(img, threshold=1.0)
    with pytest.raises(ValueError, match=r"images.shape=\(8, 8\) must be \(\.\.\., H, W, C\)"):
        stroke_mask(np.zeros((8, 8)))


# ------------------------------------------------------------------------ architecture (shapes)


def _shapes(tree):
    return jax.tree.map(lambda a: a.shape, tree)


def test_cifar_cnn_architecture_on_digits_and_cifar():
    key = jax.random.key(0)
    v = jax.eval_shape(CifarCNN().init, key, jnp.zeros((2, 8, 8, 1), F32))["params"]
    assert _shapes(v) == {
        "conv1": {"kernel": (3, 3, 1, 32), "bias": (32,)},
        "conv2": {"kernel": (3, 3, 32, 32), "bias": (32,)},
        "conv3": {"kernel": (3, 3, 32, 64), "bias": (64,)},
        "conv4": {"kernel": (3, 3, 64, 64), "bias": (64,)},
        "dense1": {"kernel": (2 * 2 * 64, 256), "bias": (256,)},
        "logits": {"kernel": (256, 10), "bias": (10,)},
    }
    # the paper's CIFAR-10 setting: 32x32x3 -> two pools -> 8x8x64 before the dense layer
    xc = jnp.zeros((2, 32, 32, 3), F32)
    vc = jax.eval_shape(CifarCNN().init, key, xc)
    assert vc["params"]["dense1"]["kernel"].shape == (8 * 8 * 64, 256)
    assert jax.eval_shape(CifarCNN().apply, vc, xc).shape == (2, 10)
    vd = jax.eval_shape(DigitsCNN().init, key, jnp.zeros((8, 8, 1), F32))["params"]
    assert vd["conv4"]["kernel"].shape == (3, 3, 32, 32)
    assert vd["dense1"]["kernel"].shape == (2 * 2 * 32, 64)


@pytest.mark.parametrize(
    ("model", "shape", "match"),
    [
        (CifarCNN(features=(1, 2, 3)), (8, 8, 1),
         r"^CifarCNN: features=\(1, 2, 3\) is not 4 positive ints"),
        (CifarCNN(features=(8, 8, 0, 8)), (8, 8, 1), r"^CifarCNN: features=\(8, 8, 0, 8\) is not"),
        (CifarCNN(dense=0), (8, 8, 1), r"^CifarCNN: dense=0 is < 1"),
        (DigitsCNN(num_classes=0), (8, 8, 1), r"^DigitsCNN: num_classes=0 is < 1"),
        (CifarCNN(), (6, 8, 1), r"^CifarCNN: x.shape=\(6, 8, 1\) has H=6 and W=8, not both "),
        (CifarCNN(), (8, 8), r"^CifarCNN: x.shape=\(8, 8\) has 2 axes; expected \(H, W, C\) or "),
    ],
)
def test_cnn_errors(model, shape, match):
    with pytest.raises(ArgumentError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, F32))


# -------------------------------------------------------------------------------- training


def test_training_reaches_90_percent(trained_digits_cnn, digits):
    model, params = trained_digits_cnn
    acc = accuracy(model, params, *digits.test)
    # independent reference for the accuracy: numpy on the logits
    logits = np.asarray(model.apply(params, jnp.asarray(digits.x_test)))
    ref = float(np.mean(logits.argmax(axis=1) == digits.y_test))
    assert acc == ref  # both are count / 449 in float64
    assert acc >= 0.9


def test_train_is_pure_and_keyed(digits):
    model = DigitsCNN()
    kw = dict(steps=4, lr=3e-3)
    a = train(model, digits.train, key=jax.random.key(1), **kw)
    b = train(model, digits.train, key=jax.random.key(1), **kw)
    c = train(model, digits.train, key=jax.random.key(2), **kw)
    # a raw uint32 key with the same bits is the same key
    d = train(model, digits.train, key=jax.random.PRNGKey(1), **kw)
    for u, v, w in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(d), strict=True):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)
    assert not np.array_equal(a["params"]["conv1"]["kernel"], c["params"]["conv1"]["kernel"])
    # training moved the parameters away from the initialisation drawn from the same key
    init = init_params(model, jax.random.key(1))
    assert not np.array_equal(a["params"]["logits"]["kernel"], init["params"]["logits"]["kernel"])
    assert _shapes(init) == _shapes(a)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"steps": 0}, ArgumentError, r"^train: steps=0 is < 1; expected an int >= 1"),
        ({"steps": 2.5}, ArgumentTypeError, r"^train: steps=2.5 has type float; expected an int"),
        ({"lr": 0.0}, ArgumentError, r"^train: lr=0.0 is out of range; expected .* \(0, inf\]"),
        ({"batch_size": 0}, ArgumentError, r"^train: batch_size=0 is < 1"),
        ({"data": np.zeros(3)}, ArgumentTypeError,
         r"^train: data=.* has type ndarray; expected a pair \(images, labels\)"),
        ({"data": (np.zeros((4, 8, 8)), np.zeros(4, int))}, ArgumentError,
         r"^train: images.shape=\(4, 8, 8\) has 3 axes; expected \(N, H, W, C\)"),
        ({"data": (np.zeros((4, 8, 8, 1)), np.zeros(3, int))}, ArgumentError,
         r"^train: labels=.* has shape \(3,\) and dtype int\d+; expected integer labels of "
         r"shape \(4,\)"),
        ({"data": (np.zeros((4, 8, 8, 1)), np.zeros(4))}, ArgumentError,
         r"dtype float\d+; expected integer labels"),
        ({"data": (np.zeros((0, 8, 8, 1)), np.zeros(0, int))}, ArgumentError,
         r"^train: images.shape=\(0, 8, 8, 1\) is empty"),
        ({"key": jnp.zeros(2, F32)}, ArgumentTypeError, r"^train: key=.* is not a PRNG key"),
        ({"key": jax.random.split(jax.random.PRNGKey(0), 3)}, ArgumentError,
         r"^train: key=.* holds 3 legacy keys"),
        ({"key": None}, ArgumentTypeError, r"^train: key=None is missing"),
    ],
)
def test_train_errors(kwargs, exc, match):
    args = {"data": (np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)),
            "key": jax.random.key(0), "steps": 1, **kwargs}
    data = args.pop("data")
    with pytest.raises(exc, match=match):
        train(DigitsCNN(), data, **args)


def test_batched_and_single_example_agree(trained_digits_cnn, digits):
    model, params = trained_digits_cnn
    x = jnp.asarray(digits.x_test[:3])
    batched = model.apply(params, x)
    for i in range(3):
        np.testing.assert_allclose(model.apply(params, x[i]), batched[i], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------- score


def test_score_fn_is_max_logit_or_label_logit(trained_digits_cnn, digits):
    model, params = trained_digits_cnn
    x = jnp.asarray(digits.x_test[:4])
    logits = np.asarray(model.apply(params, x))
    s_max = score_fn(model, params)
    s3 = score_fn(model, params, 3)
    assert jax.eval_shape(s_max, x[0]).shape == ()
    both = jax.jit(jax.vmap(lambda xi: (s_max(xi), s3(xi))))(x)
    np.testing.assert_allclose(both[0], logits.max(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[1], logits[:, 3], rtol=1e-5, atol=1e-5)
    # per-example labels through vmap (an integer array label is allowed)
    labels = jnp.array([0, 9, 4, 7])
    per = jax.vmap(lambda xi, li: score_fn(model, params, li)(xi))(x, labels)
    np.testing.assert_allclose(per, logits[np.arange(4), [0, 9, 4, 7]], rtol=1e-5, atol=1e-5)
    # ready for gradient transforms: one example in, map shaped like the example out
    g = jax.jit(jax.grad(s_max))(x[0])
    assert g.shape == (8, 8, 1) and g.dtype == F32 and bool(jnp.any(g != 0))


@pytest.mark.parametrize(
    ("label", "exc", "match"),
    [
        (10, ArgumentError, r"^score_fn: label=10 is out of range; expected a class index in "
         r"\[0, 10\)"),
        (-1, ArgumentError, r"^score_fn: label=-1 is out of range"),
        (1.5, ArgumentTypeError, r"^score_fn: label=1.5 has type float; expected an int, an "
         r"integer array or None"),
        (True, ArgumentTypeError, r"^score_fn: label=True has type bool"),
        (jnp.array(0.5), ArgumentTypeError, r"expected an int, an integer array or None"),
    ],
)
def test_score_fn_label_errors(label, exc, match):
    with pytest.raises(exc, match=match):
        score_fn(DigitsCNN(), {}, label)


def test_score_fn_rejects_a_batch():
    model = DigitsCNN()
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((8, 8, 1), F32))
    score = score_fn(model, v)
    with pytest.raises(ArgumentError, match=r"^score_fn: x.shape=\(2, 8, 8, 1\) is not one "
                       r"example; expected \(H, W, C\)\. the score takes ONE example"):
        jax.eval_shape(score, jnp.zeros((2, 8, 8, 1), F32))


# ------------------------------------------------------------------------------- NNX, Equinox


def _np_conv_same(x, k, b):
    """numpy 3x3 SAME convolution, NHWC x HWIO (an independent reference for the CNNs)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # N,H,W,C,3,3
    return np.einsum("nhwcij,ijco->nhwo", win, k) + b


def _np_pool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _np_cnn(p, x):
    """numpy forward of the CifarCNN architecture from a dict of float64 parameters."""
    relu = lambda a: np.maximum(a, 0)
    h = relu(_np_conv_same(x, *p["conv1"]))
    h = _np_pool(relu(_np_conv_same(h, *p["conv2"])))
    h = relu(_np_conv_same(h, *p["conv3"]))
    h = _np_pool(relu(_np_conv_same(h, *p["conv4"])))
    h = relu(h.reshape(len(h), -1) @ p["dense1"][0] + p["dense1"][1])
    return h @ p["logits"][0] + p["logits"][1]


def _directional_fd(fn, x, v, h=1e-5):
    return (fn(x + h * v) - fn(x - h * v)) / (2 * h)


def test_nnx_cnn_matches_a_numpy_forward_and_finite_differences():
    """NNXCNN against a numpy re-implementation of the architecture with its own parameters
    (float64) and its gradient against numpy central differences along a random direction.
    Mutations caught: a missing ReLU or pool, swapped conv order, a wrong gradient (x2, sign)."""
    m = NNXCNN(rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    assert m.conv1.kernel[...].shape == (3, 3, 1, 16)
    assert m.dense1.kernel[...].shape == (2 * 2 * 32, 64)
    p = {name: (np.asarray(getattr(m, name).kernel[...], np.float64),
                np.asarray(getattr(m, name).bias[...], np.float64))
         for name in ("conv1", "conv2", "conv3", "conv4", "dense1", "logits")}
    x = np.random.default_rng(1).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    out = m(jnp.asarray(x))
    assert out.shape == (3, 10) and out.dtype == F32
    ref = _np_cnn(p, x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(m(jnp.asarray(x[1])), out[1], rtol=1e-5, atol=1e-6)
    label = int(ref[0].argmax())
    g = np.asarray(jax.grad(lambda xi: m(xi)[label])(jnp.asarray(x[0])), np.float64)
    v = np.random.default_rng(2).normal(size=x[0].shape)
    fd = _directional_fd(lambda y: _np_cnn(p, y[None])[0, label], x[0].astype(np.float64), v)
    assert abs(np.vdot(g, v) - fd) <= 1e-4 * np.linalg.norm(g) * np.linalg.norm(v)
    assert abs(np.vdot(g, v)) > 1e-2 * np.linalg.norm(g) * np.linalg.norm(v)  # not ~0 by chance


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": (6, 8)}, r"^NNXCNN: x.shape=\(6, 8, 1\) has H=6 and W=8, not both"),
        ({"features": (4, 4, 4)}, r"^NNXCNN: features=\(4, 4, 4\) is not 4 positive ints"),
        ({"in_features": 0}, r"^NNXCNN: in_features=0 is < 1"),
        ({"dense": -1}, r"^NNXCNN: dense=-1 is < 1"),
    ],
)
def test_nnx_cnn_errors(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        NNXCNN(rngs=nnx.Rngs(0), **kwargs)


def test_nnx_cnn_rejects_wrong_input_shape():
    abstract = nnx.eval_shape(lambda: NNXCNN(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)

    def call(x):
        return nnx.merge(graphdef, state)(x)

    with pytest.raises(ArgumentError, match=r"^NNXCNN: x.shape=\(2, 8, 8, 3\) does not match "
                       r"the model; expected a shape ending with image_shape=\(8, 8, 1\)"):
        jax.eval_shape(call, jnp.zeros((2, 8, 8, 3), F32))


def test_equinox_mlp_matches_numpy_and_finite_differences():
    """EqxMLP against a numpy ReLU MLP with its own weights, and its gradient against numpy
    central differences. Mutations caught: a missing activation, a wrong layer count, a wrong
    gradient."""
    mlp = EqxMLP(key=jax.random.key(0, impl="rbg"))
    assert isinstance(mlp, eqx.Module)
    assert mlp.mlp.activation is jax.nn.relu  # the ReLU the modified-backprop rules look for
    layers = [(np.asarray(lin.weight, np.float64), np.asarray(lin.bias, np.float64))
              for lin in mlp.mlp.layers]
    assert [w.shape for w, _ in layers] == [(64, 64), (64, 64), (10, 64)]

    def np_mlp(x):
        h = x.reshape(-1)
        for i, (w, b) in enumerate(layers):
            h = w @ h + b
            h = np.maximum(h, 0) if i < len(layers) - 1 else h
        return h

    x = np.linspace(0, 1, 64).reshape(8, 8, 1)
    out = eqx.filter_jit(mlp)(jnp.asarray(x, F32))
    assert out.shape == (10,)
    np.testing.assert_allclose(out, np_mlp(x), rtol=1e-4, atol=1e-5)
    label = int(np_mlp(x).argmax())
    g = np.asarray(jax.jit(jax.grad(lambda xi: mlp(xi)[label]))(jnp.asarray(x, F32)), np.float64)
    assert g.shape == (8, 8, 1)
    v = np.random.default_rng(3).normal(size=x.shape)
    fd = _directional_fd(lambda y: np_mlp(y)[label], x, v)
    assert abs(np.vdot(g, v) - fd) <= 1e-4 * np.linalg.norm(g) * np.linalg.norm(v)
    assert abs(np.vdot(g, v)) > 1e-2 * np.linalg.norm(g) * np.linalg.norm(v)
    with pytest.raises(ArgumentError, match=r"^EqxMLP: x.shape=\(2, 8, 8, 1\) does not match the "
                       r"model; expected in_shape=\(8, 8, 1\)\. the model takes ONE example"):
        mlp(jnp.zeros((2, 8, 8, 1), F32))
    with pytest.raises(ArgumentError, match=r"^EqxMLP: width=0 is < 1"):
        EqxMLP(width=0, key=jax.random.key(0))
    with pytest.raises(ArgumentError, match=r"^EqxMLP: depth=-1 is < 0"):
        EqxMLP(depth=-1, key=jax.random.key(0))
