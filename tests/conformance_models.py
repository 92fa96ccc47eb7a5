"""Small models for tests/test_conformance.py: today's architectures, tiny sizes, float64.

Two families:

* ``NO_RELU``: name -> builder of ``(score, x)`` for models with no ReLU anywhere (every
  normalisation layer of Flax linen, Flax NNX and Equinox, attention, a ViT, a transformer block
  with a class token, softmax-like functions). ``score(x)`` is a scalar (one logit); the
  modified-backprop maps of such a model must equal ``jax.grad``.
* ``CAPTUM``: Flax linen twins of the torch models in ``tests/reference/make_captum_references.py``
  (a Dense-LayerNorm-ReLU-Dense MLP, a GroupNorm+ReLU CNN, a ViT with ReLU MLPs), built from the
  torch weights stored in ``tests/reference/<name>.npz``. The activation is an attribute
  (``act``), so a test can swap in a hand-written backward rule.

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

F64 = jnp.float64
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
EPS = 1e-5  # every epsilon of the torch reference models (torch's default)


def _normal(seed: int, shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _leaf_name(path) -> str:
    names = [getattr(p, "key", getattr(p, "name", None)) for p in path]
    names = [n for n in names if isinstance(n, str) and n != "value"]
    return names[-1] if names else ""


def _fill(abstract, seed: int, out_axis: int = -1):
    """Concrete float64 values for every ``ShapeDtypeStruct`` leaf of ``abstract`` (from
    ``jax.eval_shape``: no eager initialisers to compile), drawn with numpy from ``seed``.

    By the leaf's name: ``var`` ~ exp(N(0, 0.3^2)) (running variances stay positive), ``mean``
    ~ N(0, 0.5^2), ``bias`` ~ N(0, 0.3^2); other vectors (scales) ~ 1 + N(0, 0.3^2); arrays
    of rank >= 2 (kernels, class tokens) ~ N(0, 1 / fan_in), fan_in = size / shape[out_axis].
    Integer leaves (counters) are 0; anything else is kept.
    """
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    out = []
    for path, leaf in leaves:
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            out.append(leaf)
            continue
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            out.append(jnp.zeros(leaf.shape, leaf.dtype))
            continue
        z, name = rng.standard_normal(leaf.shape), _leaf_name(path)
        if name == "var":
            v = np.exp(0.3 * z)
        elif name == "mean":
            v = 0.5 * z
        elif name == "bias":
            v = 0.3 * z
        elif z.ndim <= 1:
            v = 1.0 + 0.3 * z
        else:
            v = z / np.sqrt(z.size / z.shape[out_axis])
        out.append(jnp.asarray(v, F64))
    return jax.tree_util.tree_unflatten(treedef, out)


# =============================================================================================
# No ReLU anywhere.

IMAGE = (2, 3, 3, 4)  # NHWC, a batch of two: BatchNorm in training mode needs > 1 example


class _LinenNormNet(nn.Module):
    """Dense(8) on the channels, the layer under test, one logit from all outputs."""

    layer: nn.Module

    @nn.compact
    def __call__(self, x):
        h = self.layer(nn.Dense(8, param_dtype=F64)(x))
        return nn.Dense(1, param_dtype=F64)(h.reshape(-1))[0]


def _linen_norm(layer: nn.Module, *, train: bool = False):
    def build():
        model = _LinenNormNet(layer)
        x = _normal(0, IMAGE) + 0.5
        variables = _fill(jax.eval_shape(model.init, jax.random.key(3), x), 4)

        def score(x):
            if train:  # batch statistics; the running-average update is discarded
                out, _ = model.apply(variables, x, mutable=["batch_stats"])
                return out
            return model.apply(variables, x)

        return score, x

    return build


class _NNXNormNet(nnx.Module):
    """Linear(8) on the channels, the layer under test, one logit from all outputs."""

    def __init__(self, layer: Callable[[nnx.Rngs], nnx.Module], rngs: nnx.Rngs):
        self.inp = nnx.Linear(IMAGE[-1], 8, param_dtype=F64, rngs=rngs)
        self.layer = layer(rngs)
        self.out = nnx.Linear(int(np.prod(IMAGE[:-1])) * 8, 1, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(self.layer(self.inp(x)).reshape(-1))[0]


def _nnx_functional(make: Callable[[], nnx.Module], x, seed: int = 4):
    """``score(x)`` of the module ``make()`` builds (abstractly, values from :func:`_fill`),
    rebuilt from its state at every call, so that a training-mode BatchNorm's statistics update
    stays inside the traced function (and is discarded)."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    state = _fill(state, seed)

    def score(x):
        return nnx.merge(graphdef, state, copy=True)(x)

    return score, x


def _nnx_norm(layer: Callable[[nnx.Rngs], nnx.Module]):
    def build():
        return _nnx_functional(lambda: _NNXNormNet(layer, nnx.Rngs(3)), _normal(0, IMAGE) + 0.5)

    return build


def _eqx_layer(layer_fn: Callable[[], eqx.Module], x_shape, out_size: int):
    """Per-example Equinox model: layer, then one logit (``layer_fn`` may use Linear/Conv too)."""

    def build():
        layer, head = _fill(eqx.filter_eval_shape(
            lambda: (layer_fn(), eqx.nn.Linear(out_size, 1, key=jax.random.key(5)))), 4,
            out_axis=0)
        x = _normal(0, x_shape) + 0.5

        def score(x):
            return head(layer(x).reshape(-1))[0]

        return score, x

    return build


def _eqx_batchnorm(*, inference: bool):
    """eqx.nn.BatchNorm (mode="batch") over a batch of 2 (vmap with axis_name); the running
    statistics used in inference mode are drawn by :func:`_fill`."""

    def build():
        def make():
            bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(
                8, axis_name="batch", inference=inference, mode="batch")
            lin = eqx.nn.Linear(4, 8, key=jax.random.key(3))
            return bn, lin, eqx.nn.Linear(16, 1, key=jax.random.key(5)), state

        bn, lin, head, state = _fill(eqx.filter_eval_shape(make), 4, out_axis=0)
        x = _normal(0, (2, 4)) + 0.5

        def score(x):
            h = jax.vmap(lin)(x)
            h, _ = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
                h, state)
            return head(h.reshape(-1))[0]

        return score, x

    return build


class _LinenAttentionNet(nn.Module):
    @nn.compact
    def __call__(self, x):  # (1, T, 8)
        h = nn.MultiHeadDotProductAttention(num_heads=2, param_dtype=F64)(x)
        return nn.Dense(1, param_dtype=F64)(h.reshape(-1))[0]


def _linen_model(model: nn.Module, x_shape, pick=()):
    """``model.apply(variables, x)[pick]``, the variables drawn by :func:`_fill`."""

    def build():
        x = _normal(0, x_shape)
        variables = _fill(jax.eval_shape(model.init, jax.random.key(3), x), 4)
        return (lambda x: model.apply(variables, x)[pick]), x

    return build


class _NNXAttentionNet(nnx.Module):
    def __init__(self, rngs):
        self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False,
                                           keep_rngs=False, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(5 * 8, 1, param_dtype=F64, rngs=rngs)

    def __call__(self, x):  # (1, 5, 8)
        return self.out(self.attn(x).reshape(-1))[0]


class _EqxAttention(eqx.Module):
    attn: eqx.nn.MultiheadAttention

    def __call__(self, x):  # (T, 8) self-attention
        return self.attn(x, x, x)


class LinenEncoder(nn.Module):
    """Token sequence -> [CLS] + tokens -> pre-LN transformer block (GELU MLP) -> LN -> head."""

    dim: int = 16
    heads: int = 2
    hidden: int = 32
    classes: int = 5
    act: Callable = jax.nn.gelu

    @nn.compact
    def __call__(self, tokens):  # (B, T, dim)
        b = tokens.shape[0]
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, self.dim), F64)
        t = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)), tokens], axis=1)
        y = nn.LayerNorm(param_dtype=F64)(t)
        t = t + nn.MultiHeadDotProductAttention(num_heads=self.heads, param_dtype=F64)(y)
        y = nn.LayerNorm(param_dtype=F64)(t)
        y = nn.Dense(self.dim, param_dtype=F64)(
            self.act(nn.Dense(self.hidden, param_dtype=F64)(y)))
        t = t + y
        return nn.Dense(self.classes, param_dtype=F64)(nn.LayerNorm(param_dtype=F64)(t[:, 0]))


class NNXViT(nnx.Module):
    """Patch-embedding conv (4x4, stride 4), class token, position embeddings, ``depth`` pre-LN
    encoder blocks (nnx.MultiHeadAttention, GELU MLP), final LayerNorm, linear head on the class
    token."""

    def __init__(self, *, size=8, patch=4, dim=16, depth=1, heads=2, hidden=32, classes=5,
                 rngs: nnx.Rngs):
        n = (size // patch) ** 2 + 1
        kw = {"param_dtype": F64, "rngs": rngs}
        self.patch = nnx.Conv(3, dim, (patch, patch), strides=(patch, patch), padding="VALID",
                              **kw)
        self.cls = nnx.Param(jax.random.normal(rngs.params(), (1, 1, dim), F64))
        self.pos = nnx.Param(0.5 * jax.random.normal(rngs.params(), (1, n, dim), F64))
        self.blocks = nnx.List([_NNXBlock(dim, heads, hidden, kw) for _ in range(depth)])
        self.ln = nnx.LayerNorm(dim, **kw)
        self.head = nnx.Linear(dim, classes, **kw)

    def __call__(self, x):  # (B, H, W, 3)
        t = self.patch(x)
        b, d = t.shape[0], t.shape[-1]
        t = t.reshape(b, -1, d)
        cls = jnp.broadcast_to(self.cls[...], (b, 1, d))
        t = jnp.concatenate([cls, t], axis=1) + self.pos[...]
        for block in self.blocks:
            t = block(t)
        return self.head(self.ln(t[:, 0]))


class _NNXBlock(nnx.Module):
    def __init__(self, dim, heads, hidden, kw):
        self.ln1 = nnx.LayerNorm(dim, **kw)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False,
                                           keep_rngs=False, **kw)
        self.ln2 = nnx.LayerNorm(dim, **kw)
        self.fc1 = nnx.Linear(dim, hidden, **kw)
        self.fc2 = nnx.Linear(hidden, dim, **kw)

    def __call__(self, t):
        t = t + self.attn(self.ln1(t))
        return t + self.fc2(nnx.gelu(self.fc1(self.ln2(t))))


class _IssueReproducer(nn.Module):
    """The bug report's model: Dense(32) - LayerNorm - gelu - Dense(1)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(32, param_dtype=F64)(x)
        x = nn.LayerNorm(param_dtype=F64)(x)
        x = nn.gelu(x)
        return nn.Dense(1, param_dtype=F64)(x)


def issue_reproducer():
    """``(score, x)``: 16-vector input from key 0, parameters initialised with key 3."""
    model = _IssueReproducer()
    x = jax.random.normal(jax.random.key(0), (16,), F64)
    params = jax.jit(model.init)(jax.random.key(3), x)
    return (lambda x: model.apply(params, x)[0]), x


def _plain(fn: Callable[[jax.Array], jax.Array]):
    """``fn(W x)`` for a fixed W (6 x 12), reduced to a scalar by a fixed vector if needed."""

    def build():
        w, x = _normal(1, (6, 12)), _normal(0, (12,)) + 0.3

        def score(x):
            out = fn(w @ x)
            return out if out.ndim == 0 else _normal(2, out.shape) @ out

        return score, x

    return build


def _jax_dot_product_attention(z):
    qkv = jnp.tile(z, 12).reshape(1, 4, 3, 2, 3)  # (B, T, {q,k,v}, N heads, H)
    q, k, v = (qkv[:, :, i] * s for i, s in enumerate((1.0, -0.7, 1.3)))
    return jax.nn.dot_product_attention(q, k, v, implementation="xla").reshape(-1)


def _fv(fast: bool) -> str:
    return "fast_var" if fast else "exact_var"


def _no_relu_table() -> dict[str, Callable[[], tuple[Callable, jax.Array]]]:
    t: dict[str, Callable] = {}
    # Flax linen and NNX: every normalisation layer, both variance formulas (all have the
    # option; only LayerNorm/GroupNorm/InstanceNorm and training-mode BatchNorm compute a
    # variance as E[x^2] - E[x]^2 and clamp it).
    linen_layers = {
        "LayerNorm": lambda kw: nn.LayerNorm(**kw),
        "RMSNorm": lambda kw: nn.RMSNorm(**kw),
        "GroupNorm": lambda kw: nn.GroupNorm(num_groups=4, **kw),
        "InstanceNorm": lambda kw: nn.InstanceNorm(**kw),
        "BatchNorm-inference": lambda kw: nn.BatchNorm(use_running_average=True, **kw),
        "BatchNorm-training": lambda kw: nn.BatchNorm(use_running_average=False, **kw),
    }
    nnx_layers = {
        "LayerNorm": lambda r, kw: nnx.LayerNorm(8, rngs=r, **kw),
        "RMSNorm": lambda r, kw: nnx.RMSNorm(8, rngs=r, **kw),
        "GroupNorm": lambda r, kw: nnx.GroupNorm(8, num_groups=4, rngs=r, **kw),
        "InstanceNorm": lambda r, kw: nnx.InstanceNorm(8, rngs=r, **kw),
        "BatchNorm-inference": lambda r, kw: nnx.BatchNorm(8, use_running_average=True,
                                                           rngs=r, **kw),
        "BatchNorm-training": lambda r, kw: nnx.BatchNorm(8, use_running_average=False,
                                                          rngs=r, **kw),
    }
    for name, make in linen_layers.items():
        for fast in (True, False):
            kw = {"use_fast_variance": fast, "param_dtype": F64}
            t[f"linen.{name}-{_fv(fast)}"] = _linen_norm(make(kw), train="training" in name)
    t["linen.MultiHeadDotProductAttention"] = _linen_model(_LinenAttentionNet(), (1, 5, 8))
    t["linen.encoder-block-cls-token"] = _linen_model(LinenEncoder(), (1, 6, 16), (0, 1))
    for name, make in nnx_layers.items():
        for fast in (True, False):
            kw = {"use_fast_variance": fast, "param_dtype": F64}
            t[f"nnx.{name}-{_fv(fast)}"] = _nnx_norm(lambda r, make=make, kw=kw: make(r, kw))
    t["nnx.MultiHeadAttention"] = lambda: _nnx_functional(
        lambda: _NNXAttentionNet(nnx.Rngs(3)), _normal(0, (1, 5, 8)))
    t["nnx.ViT-gelu"] = lambda: _nnx_functional(
        lambda: _ScoreOf(NNXViT(rngs=nnx.Rngs(3)), 3), _normal(0, (1, 8, 8, 3)))
    # Equinox (no variance option: jnp.var, then a clamp max(0, var)).
    k = jax.random.key(3)
    t["eqx.LayerNorm"] = _eqx_layer(
        lambda: eqx.nn.Sequential([eqx.nn.Linear(12, 8, key=k), eqx.nn.LayerNorm(8)]),
        (12,), 8)
    t["eqx.RMSNorm"] = _eqx_layer(
        lambda: eqx.nn.Sequential([eqx.nn.Linear(12, 8, key=k), eqx.nn.RMSNorm(8)]), (12,), 8)
    t["eqx.GroupNorm"] = _eqx_layer(
        lambda: eqx.nn.Sequential([eqx.nn.Conv2d(4, 8, 1, key=k), eqx.nn.GroupNorm(4, 8)]),
        (4, 3, 3), 72)
    t["eqx.BatchNorm-inference"] = _eqx_batchnorm(inference=True)
    t["eqx.BatchNorm-training"] = _eqx_batchnorm(inference=False)
    t["eqx.MultiheadAttention"] = _eqx_layer(
        lambda: _EqxAttention(eqx.nn.MultiheadAttention(2, 8, key=k)), (5, 8), 40)
    # Plain functions.
    t["jax.nn.softmax"] = _plain(jax.nn.softmax)
    t["jax.nn.log_softmax"] = _plain(jax.nn.log_softmax)
    t["jax.nn.logsumexp"] = _plain(jax.nn.logsumexp)
    t["jax.nn.standardize"] = _plain(jax.nn.standardize)
    t["jnp.var"] = _plain(jnp.var)
    t["jnp.std"] = _plain(jnp.std)
    t["jax.nn.dot_product_attention"] = _plain(_jax_dot_product_attention)
    return t


class _ScoreOf(nnx.Module):
    """One logit of example 0."""

    def __init__(self, model: nnx.Module, c: int):
        self.model, self.c = model, c

    def __call__(self, x):
        return self.model(x)[0, self.c]


NO_RELU = _no_relu_table()


# =============================================================================================
# With ReLUs: Flax twins of the torch reference models.


class MLP(nn.Module):
    """Dense(32) - LayerNorm - act - Dense(5) (torch: fc1, norm, relu, fc2)."""

    act: Callable = jax.nn.relu

    @nn.compact
    def __call__(self, x):  # (B, 16)
        h = nn.LayerNorm(epsilon=EPS, name="norm")(nn.Dense(32, name="fc1")(x))
        return nn.Dense(5, name="fc2")(self.act(h))


class CNN(nn.Module):
    """conv3x3(8) - GroupNorm(4) - act - conv3x3(8) - GroupNorm(4) - act - mean - Dense(5)."""

    act: Callable = jax.nn.relu

    @nn.compact
    def __call__(self, x):  # (B, 8, 8, 3)
        h = nn.Conv(8, (3, 3), padding=1, name="conv1")(x)
        h = self.act(nn.GroupNorm(num_groups=4, epsilon=EPS, name="gn1")(h))
        h = nn.Conv(8, (3, 3), padding=1, name="conv2")(h)
        h = self.act(nn.GroupNorm(num_groups=4, epsilon=EPS, name="gn2")(h))
        return nn.Dense(5, name="fc")(h.mean(axis=(1, 2)))


class _Block(nn.Module):
    act: Callable
    heads: int = 2
    hidden: int = 32

    @nn.compact
    def __call__(self, t):
        e = t.shape[-1]
        y = nn.LayerNorm(epsilon=EPS, name="ln1")(t)
        t = t + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(y)
        y = nn.LayerNorm(epsilon=EPS, name="ln2")(t)
        return t + nn.Dense(e, name="fc2")(self.act(nn.Dense(self.hidden, name="fc1")(y)))


class ViT(nn.Module):
    """4x4 patches of an 8x8x3 image, class token, position embeddings, 2 pre-LN blocks
    (linen MultiHeadDotProductAttention, MLP with ``act``), LayerNorm, head on the class token."""

    act: Callable = jax.nn.relu
    dim: int = 16
    depth: int = 2

    @nn.compact
    def __call__(self, x):  # (B, 8, 8, 3)
        b = x.shape[0]
        t = nn.Conv(self.dim, (4, 4), strides=4, padding="VALID", name="patch")(x)
        t = t.reshape(b, -1, self.dim)  # patches row-major, as torch's flatten(2)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
        pos = self.param("pos", nn.initializers.zeros, (1, t.shape[1] + 1, self.dim))
        t = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)), t], axis=1) + pos
        for i in range(self.depth):
            t = _Block(self.act, name=f"blocks_{i}")(t)
        return nn.Dense(5, name="head")(nn.LayerNorm(epsilon=EPS, name="ln")(t[:, 0]))


def _dense(w: dict, name: str) -> dict:
    return {"kernel": w[f"{name}.weight"].T, "bias": w[f"{name}.bias"]}


def _conv(w: dict, name: str) -> dict:
    return {"kernel": w[f"{name}.weight"].transpose(2, 3, 1, 0),  # OIHW -> HWIO
            "bias": w[f"{name}.bias"]}


def _norm(w: dict, name: str) -> dict:
    return {"scale": w[f"{name}.weight"], "bias": w[f"{name}.bias"]}


def _attention(w: dict, prefix: str, heads: int) -> dict:
    """torch's separate q/k/v/out Linear layers -> linen MultiHeadDotProductAttention.

    torch splits the output features of q/k/v as (head, head_dim) and the input features of
    ``out`` the same way; linen's DenseGeneral kernels are (in, heads, head_dim) and
    (heads, head_dim, out).
    """
    out = {}
    for name in ("q", "k", "v"):
        kernel, bias = w[f"{prefix}.{name}.weight"].T, w[f"{prefix}.{name}.bias"]
        e = kernel.shape[0]
        out[{"q": "query", "k": "key", "v": "value"}[name]] = {
            "kernel": kernel.reshape(e, heads, -1), "bias": bias.reshape(heads, -1)}
    kernel = w[f"{prefix}.out.weight"].T
    out["out"] = {"kernel": kernel.reshape(heads, -1, kernel.shape[1]),
                  "bias": w[f"{prefix}.out.bias"]}
    return out


def load_reference(name: str) -> dict[str, np.ndarray]:
    """The arrays of ``tests/reference/<name>.npz`` (weights under ``w/<torch name>``)."""
    with np.load(REFERENCE_DIR / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def flax_model(name: str, ref: dict[str, np.ndarray], act: Callable = jax.nn.relu):
    """``(module, params)`` of the Flax twin of reference model ``name``, torch's weights."""
    w = {k[2:]: jnp.asarray(v) for k, v in ref.items() if k.startswith("w/")}
    if name == "mlp_layernorm":
        params = {"fc1": _dense(w, "fc1"), "norm": _norm(w, "norm"), "fc2": _dense(w, "fc2")}
        return MLP(act), {"params": params}
    if name == "cnn_groupnorm":
        params = {"conv1": _conv(w, "conv1"), "gn1": _norm(w, "gn1"),
                  "conv2": _conv(w, "conv2"), "gn2": _norm(w, "gn2"), "fc": _dense(w, "fc")}
        return CNN(act), {"params": params}
    if name == "vit_relu":
        depth = len({k.split(".")[1] for k in w if k.startswith("blocks.")})
        params = {"patch": _conv(w, "patch"), "cls": w["cls"], "pos": w["pos"],
                  "ln": _norm(w, "ln"), "head": _dense(w, "head")}
        for i in range(depth):
            p = f"blocks.{i}"
            params[f"blocks_{i}"] = {"ln1": _norm(w, f"{p}.ln1"), "ln2": _norm(w, f"{p}.ln2"),
                                     "attn": _attention(w, p, heads=2),
                                     "fc1": _dense(w, f"{p}.fc1"), "fc2": _dense(w, f"{p}.fc2")}
        return ViT(act, depth=depth), {"params": params}
    raise ValueError(f"{name=} is not a reference model")


def to_nhwc(a: np.ndarray) -> np.ndarray:
    """torch's NCHW inputs/maps -> Flax's NHWC (vectors unchanged)."""
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a
