"""Tests of jaxattr.data (digits loader) and jaxattr.models (CNNs, training, score function)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.datasets
from flax import nnx

from jaxattr.data import Digits, load_digits, stroke_mask
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


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


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
        (CifarCNN(features=(1, 2, 3)), (8, 8, 1), r"features=\(1, 2, 3\) must be 4 positive ints"),
        (CifarCNN(features=(8, 8, 0, 8)), (8, 8, 1), r"features=\(8, 8, 0, 8\) must be 4"),
        (CifarCNN(dense=0), (8, 8, 1), r"dense=0 must be > 0"),
        (CifarCNN(num_classes=0), (8, 8, 1), r"num_classes=0 must be > 0"),
        (CifarCNN(), (6, 8, 1), r"H=6 and W=8 must be divisible by 4"),
        (CifarCNN(), (8, 8), r"x.shape=\(8, 8\) must be \(H, W, C\) or \(N, H, W, C\)"),
    ],
)
def test_cnn_errors(model, shape, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, F32))


# -------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(digits):
    model = DigitsCNN()
    params = train(model, digits.train, key=jax.random.key(0), steps=150, lr=3e-3)
    return model, params


def test_training_reaches_90_percent(trained, digits):
    model, params = trained
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
        ({"steps": 0}, ValueError, r"steps=0 must be an int > 0"),
        ({"steps": 2.5}, ValueError, r"steps=2.5 must be an int > 0"),
        ({"lr": 0.0}, ValueError, r"lr=0.0 must be > 0"),
        ({"batch_size": 0}, ValueError, r"batch_size=0 must be an int > 0"),
        ({"data": np.zeros(3)}, TypeError, r"data must be a pair \(images, labels\), got ndarray"),
        ({"data": (np.zeros((4, 8, 8)), np.zeros(4, int))}, ValueError,
         r"images.shape=\(4, 8, 8\) must be \(N, H, W, C\)"),
        ({"data": (np.zeros((4, 8, 8, 1)), np.zeros(3, int))}, ValueError,
         r"labels.shape=\(3,\), dtype=int\d+ must be integer with shape \(4,\)"),
        ({"data": (np.zeros((4, 8, 8, 1)), np.zeros(4))}, ValueError,
         r"dtype=float\d+ must be integer"),
        ({"data": (np.zeros((0, 8, 8, 1)), np.zeros(0, int))}, ValueError, r"data is empty"),
        ({"key": jnp.zeros(2, F32)}, TypeError, r"must be a PRNG key"),
        ({"key": jax.random.split(jax.random.PRNGKey(0), 3)}, TypeError, r"must be a PRNG key"),
    ],
)
def test_train_errors(kwargs, exc, match):
    args = {"data": (np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)),
            "key": jax.random.key(0), "steps": 1, **kwargs}
    data = args.pop("data")
    with pytest.raises(exc, match=match):
        train(DigitsCNN(), data, **args)


def test_batched_and_single_example_agree(trained, digits):
    model, params = trained
    x = jnp.asarray(digits.x_test[:3])
    batched = model.apply(params, x)
    for i in range(3):
        np.testing.assert_allclose(model.apply(params, x[i]), batched[i], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------- score


def test_score_fn_is_max_logit_or_label_logit(trained, digits):
    model, params = trained
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
        (10, ValueError, r"label=10 must be in \[0, 10\)"),
        (-1, ValueError, r"label=-1 must be in \[0, 10\)"),
        (1.5, TypeError, r"label=1.5 must be an int, an integer array or None"),
        (True, TypeError, r"label=True must be an int"),
        (jnp.array(0.5), TypeError, r"must be an int, an integer array or None"),
    ],
)
def test_score_fn_label_errors(label, exc, match):
    with pytest.raises(exc, match=match):
        score_fn(DigitsCNN(), {}, label)


def test_score_fn_rejects_a_batch():
    model = DigitsCNN()
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((8, 8, 1), F32))
    score = score_fn(model, v)
    with pytest.raises(ValueError, match=r"score takes ONE example: x.shape=\(2, 8, 8, 1\)"):
        jax.eval_shape(score, jnp.zeros((2, 8, 8, 1), F32))


# ------------------------------------------------------------------------------- NNX, Equinox


def test_nnx_cnn_runs_and_differentiates():
    m = NNXCNN(rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    assert m.conv1.kernel[...].shape == (3, 3, 1, 16)
    assert m.dense1.kernel[...].shape == (2 * 2 * 32, 64)
    x = jax.random.uniform(jax.random.key(1, impl="rbg"), (3, 8, 8, 1), F32)
    out = m(x)
    assert out.shape == (3, 10) and out.dtype == F32
    np.testing.assert_allclose(m(x[1]), out[1], rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda xi: m(xi).max())(x[0])
    assert g.shape == (8, 8, 1) and bool(jnp.any(g != 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": (6, 8)}, r"H=6 and W=8 must be divisible by 4"),
        ({"features": (4, 4, 4)}, r"features=\(4, 4, 4\) must be 4 positive ints"),
        ({"in_features": 0}, r"in_features=0 must be > 0"),
        ({"dense": -1}, r"dense=-1 must be > 0"),
    ],
)
def test_nnx_cnn_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NNXCNN(rngs=nnx.Rngs(0), **kwargs)


def test_nnx_cnn_rejects_wrong_input_shape():
    abstract = nnx.eval_shape(lambda: NNXCNN(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)

    def call(x):
        return nnx.merge(graphdef, state)(x)

    with pytest.raises(ValueError, match=r"must end with image_shape=\(8, 8, 1\)"):
        jax.eval_shape(call, jnp.zeros((2, 8, 8, 3), F32))


def test_equinox_mlp():
    mlp = EqxMLP(key=jax.random.key(0, impl="rbg"))
    assert isinstance(mlp, eqx.Module)
    x = jnp.linspace(0, 1, 64, dtype=F32).reshape(8, 8, 1)
    assert eqx.filter_jit(mlp)(x).shape == (10,)
    # the hidden activation is the ReLU the modified-backprop rules look for
    assert mlp.mlp.activation is jax.nn.relu
    g = jax.jit(jax.grad(lambda xi: mlp(xi).max()))(x)
    assert g.shape == (8, 8, 1)
    with pytest.raises(ValueError, match=r"x.shape=\(2, 8, 8, 1\) must be in_shape=\(8, 8, 1\)"):
        mlp(jnp.zeros((2, 8, 8, 1), F32))
    with pytest.raises(ValueError, match=r"width=0, depth=2, num_classes=10"):
        EqxMLP(width=0, key=jax.random.key(0))
