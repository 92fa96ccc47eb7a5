"""The engine on the models people bring: what counts as a ReLU, every primitive the interpreter
follows, jax.grad's calling convention, one error vocabulary, residual memory.

Each test names what it would catch on the old engine (softplus rectified, closed_call KeyError,
a Python bool argument, numpy q rejected, two contradictory warnings, (x, a) saved per ReLU).
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax
from jax.ad_checkpoint import print_saved_residuals

import jaxattr as ja
from jaxattr._compat import jaxprs_in_params, primitive_name
from jaxattr._jaxpr import Rules, find_relus, rewrite
from jaxattr.errors import (
    ArgumentError,
    ArgumentTypeError,
    AttributionWarning,
)

KEYS = jax.random.split(jax.random.key(7), 4)
W1 = jax.random.normal(KEYS[0], (9, 5), jnp.float64)
W2 = jax.random.normal(KEYS[1], (6, 9), jnp.float64)
V = jax.random.normal(KEYS[2], (6,), jnp.float64)
X = jax.random.normal(KEYS[3], (5,), jnp.float64)
C9 = jnp.linspace(-1.0, 2.0, 9)

MODIFIED = {"guided": ja.guided_backprop, "deconv": ja.deconvnet,
            "rectgrad": functools.partial(ja.rectgrad, q=80.0)}


def _no_relu_warning():
    return pytest.warns(AttributionWarning, match="contains no ReLU that jaxattr rewrites")


# ---------------------------------------------------------------------------------------------
# 1-2. The activation conformance table.

_JAX_NN = ["relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "silu", "swish", "softplus",
           "log_sigmoid", "mish", "sigmoid", "hard_tanh", "soft_sign", "squareplus",
           "hard_sigmoid", "hard_silu", "hard_swish", "sparse_plus", "tanh"]


def _activations():
    """Every activation of jax.nn, flax.linen and flax.nnx, once per distinct function."""
    acts, seen = {}, set()
    for mod_name, mod in (("jax.nn", jax.nn), ("flax.linen", nn), ("flax.nnx", nnx)):
        for name in _JAX_NN:
            fn = getattr(mod, name, None)
            if fn is not None and id(fn) not in seen:
                seen.add(id(fn))
                acts[f"{mod_name}.{name}"] = fn
    acts["jax.nn.gelu(approximate=False)"] = functools.partial(jax.nn.gelu, approximate=False)
    acts["jnp.tanh"] = jnp.tanh
    return acts


ACTIVATIONS = _activations()


def test_the_table_covers_every_framework():
    # flax re-exports jax.nn's functions: each framework's activations are all in the table.
    table = {id(fn) for fn in ACTIVATIONS.values()}
    for mod in (jax.nn, nn, nnx):
        names = [n for n in _JAX_NN if hasattr(mod, n)]
        assert len(names) >= 14 and all(id(getattr(mod, n)) in table for n in names)


@pytest.mark.parametrize("act", list(ACTIVATIONS), ids=list(ACTIVATIONS))
def test_networks_without_relu_get_the_plain_gradient(act):
    # Old engine: softplus / log_sigmoid / mish were rectified inside logaddexp (error ~17).
    fn = ACTIVATIONS[act]

    def f(x):
        return V @ fn(W2 @ fn(W1 @ x))

    for method, transform in MODIFIED.items():
        with _no_relu_warning():
            m = transform(f)(X)
        np.testing.assert_allclose(m, jax.grad(f)(X), rtol=1e-12, atol=1e-12, err_msg=method)


@pytest.mark.parametrize("method", list(MODIFIED))
def test_logsumexp_head_and_equinox_mlp_without_relu(method):
    import equinox as eqx

    mlp = eqx.nn.MLP(5, 3, 8, 2, activation=jax.nn.softplus, key=jax.random.key(1))
    mlp = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, mlp)

    def f(x):
        return jax.nn.logsumexp(mlp(x))

    with _no_relu_warning():
        m = MODIFIED[method](f)(X)
    np.testing.assert_allclose(m, jax.grad(f)(X), rtol=1e-12, atol=1e-12)


def _relu_rule(method, a, r):
    if method == "guided":
        return np.where(a > 0, np.maximum(r, 0), 0)
    if method == "deconv":
        return np.maximum(r, 0)
    v = a * r  # rectgrad q=80: TF 'nearest' rank, independent of jaxattr._select
    k = int(np.round((v.size - 1) * (1 - 80.0 / 100)))
    return np.where(v > np.sort(v)[::-1][k], r, 0)


def _softplus_prime(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("method", list(MODIFIED))
def test_relu_after_softplus_matches_hand_written_backward(method):
    def f(x):
        return V @ jax.nn.relu(W2 @ jax.nn.softplus(W1 @ x))

    w1, w2, v, x = map(np.asarray, (W1, W2, V, X))
    z1 = w1 @ x
    h1 = np.log1p(np.exp(z1))
    a2 = np.maximum(w2 @ h1, 0)
    r = _relu_rule(method, a2, v)
    expected = w1.T @ (_softplus_prime(z1) * (w2.T @ r))
    np.testing.assert_allclose(MODIFIED[method](f)(X), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", list(MODIFIED))
def test_relu_before_gelu_matches_hand_written_backward(method):
    def f(x):
        return V @ jax.nn.gelu(W2 @ jax.nn.relu(W1 @ x))

    w1, w2, v, x = map(np.asarray, (W1, W2, V, X))
    a1 = np.maximum(w1 @ x, 0)
    z2 = w2 @ a1
    gelu_prime = np.asarray(jax.vmap(jax.grad(jax.nn.gelu))(jnp.asarray(z2)))
    r = _relu_rule(method, a1, w2.T @ (v * gelu_prime))
    np.testing.assert_allclose(MODIFIED[method](f)(X), w1.T @ r, rtol=1e-10, atol=1e-12)


def _hand_guided(x):
    """Guided Backprop of ``V @ relu(W2 @ relu(W1 @ x))`` by hand (numpy)."""
    w1, w2, v = map(np.asarray, (W1, W2, V))
    a1 = np.maximum(w1 @ np.asarray(x), 0)
    a2 = np.maximum(w2 @ a1, 0)
    r = _relu_rule("guided", a2, v)
    return w1.T @ _relu_rule("guided", a1, w2.T @ r)


def test_raw_max_forms_are_relus_by_opt_in_only():
    def f(x):
        h = jnp.maximum(W1 @ x, 0.0)  # literal zero
        h = jnp.maximum(jnp.zeros_like(W2 @ h), W2 @ h)  # broadcast zero, first operand
        return V @ h

    np.testing.assert_allclose(ja.guided_backprop(f, raw_max=True)(X), _hand_guided(X),
                               rtol=1e-12)
    assert find_relus(f, X, raw_max=True).relus == 2
    report = find_relus(f, X)  # by default a max(x, 0) is kept, and its two lines are named
    assert report.relus == 0 and len(report.raw_max) == 2
    assert all("test_engine.py" in site for site in report.raw_max)
    with pytest.warns(AttributionWarning, match="raw_max=True"):
        np.testing.assert_allclose(ja.guided_backprop(f)(X), jax.grad(f)(X), rtol=1e-12)


def test_a_library_clamp_is_never_a_relu_even_with_raw_max():
    # flax.linen.LayerNorm's variance is max(0, E[x^2] - E[x]^2) (use_fast_variance=True)
    ln = nn.LayerNorm(use_fast_variance=True)
    params = ln.init(jax.random.key(0), X)

    def f(x):
        return V[:5] @ jax.nn.relu(ln.apply(params, x))

    for raw_max in (False, True):
        report = find_relus(f, X, raw_max=raw_max)
        assert (report.relus, report.raw_max) == (1, ())
        a1 = np.asarray(ln.apply(params, X)) > 0
        plain_ln = jax.vjp(lambda x: ln.apply(params, x), X)[1]
        expected = plain_ln(jnp.where(a1, jnp.maximum(V[:5], 0), 0))[0]
        np.testing.assert_allclose(ja.guided_backprop(f, raw_max=raw_max)(X), expected,
                                   rtol=1e-12)


def test_find_relus_is_the_rewriters_detector():
    def f(x):
        return jnp.sum(jax.nn.relu(x) + jax.nn.softplus(x) + jnp.clip(x, 0.0, 1.0)
                       + jnp.maximum(x, x[::-1]) + jax.nn.relu6(x))

    report = find_relus(f, X)
    assert (report.relus, report.in_custom, report.relu_like) == (1, (), ())


# ---------------------------------------------------------------------------------------------
# ReLUs spelled as where / mul: warned, not rewritten (issue 12's decision).


@pytest.mark.parametrize("spelling", ["where", "mul"])
def test_relu_written_as_where_or_mul_warns_and_is_left_alone(spelling):
    def act(z):
        return jnp.where(z > 0, z, 0.0) if spelling == "where" else z * (z > 0)

    def f(x):
        return V @ jax.nn.relu(W2 @ act(W1 @ x))

    with pytest.warns(AttributionWarning, match=r"where\(x > 0, x, 0\) or x \* \(x > 0\) at .*"
                      "test_engine.py") as rec:
        m = ja.guided_backprop(f)(X)
    assert len([w for w in rec if issubclass(w.category, AttributionWarning)]) == 1
    # only the jax.nn.relu is rewritten; the spelled-out one keeps the plain derivative
    w1, w2, v = map(np.asarray, (W1, W2, V))
    z1 = w1 @ np.asarray(X)
    a2 = np.maximum(w2 @ np.maximum(z1, 0), 0)
    expected = w1.T @ ((z1 > 0) * (w2.T @ _relu_rule("guided", a2, v)))
    np.testing.assert_allclose(m, expected, rtol=1e-12)
    assert len(find_relus(f, X).relu_like) == 1


# ---------------------------------------------------------------------------------------------
# 3. Interpreter coverage.


def _two_relu(x, layer=None):
    layer = layer or (lambda h, w: jax.nn.relu(w @ h))
    return V @ layer(layer(x, W1), W2)


def test_closed_call_is_followed():
    # Old engine: KeyError 'jaxpr' (closed_call keeps its body in call_jaxpr).
    import jax._src.core as jax_core
    from jax.extend import core as jcore

    z = W1 @ X
    body = jax.make_jaxpr(jax.nn.relu)(z)
    outer = jax.make_jaxpr(lambda h: 2.0 * h)(z)
    eqn = jax_core.new_jaxpr_eqn(list(outer.jaxpr.invars), list(outer.jaxpr.outvars),
                                 jax_core.closed_call_p, {"call_jaxpr": body}, jax_core.no_effects)
    call = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(outer.jaxpr.replace(eqns=[eqn]), ()))

    def f(x):
        (h,) = call(W1 @ x)  # relu(W1 @ x) through a closed_call
        return V @ jax.nn.relu(W2 @ h)

    assert "closed_call" in str(jax.make_jaxpr(f)(X))
    np.testing.assert_allclose(ja.guided_backprop(f)(X), _hand_guided(X), rtol=1e-12)


def test_named_call_and_named_scope_are_followed():
    def layer(h, w):
        with jax.named_scope("block"):
            return jax.nn.relu(w @ h)

    f = lambda x: _two_relu(x, jax.named_call(layer, name="layer"))
    np.testing.assert_allclose(ja.guided_backprop(f)(X), _hand_guided(X), rtol=1e-12)


def _eqns(jaxpr, name):
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        if primitive_name(eqn) == name:  # pjit in jax 0.6 is jit
            yield eqn
        for sub in jaxprs_in_params(eqn.params):
            yield from _eqns(sub, name)


def test_jit_is_rebound_with_its_parameters():
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    sharding = NamedSharding(mesh, PartitionSpec())

    @functools.partial(jax.jit, donate_argnums=0, in_shardings=(sharding, None),
                       out_shardings=sharding, keep_unused=True)
    def layer(h, w):
        return jax.nn.relu(w @ h)

    f = lambda x: _two_relu(x, layer)
    original = next(_eqns(jax.make_jaxpr(f)(X), "jit")).params
    rewritten = rewrite(f, Rules(relu=lambda a, g: g))
    jits = list(_eqns(jax.make_jaxpr(rewritten)(X), "jit"))
    assert len(jits) == 2
    for eqn in jits:
        p = eqn.params
        assert "custom_vjp_call" in str(p["jaxpr"])  # the body was rewritten
        for k in ("in_shardings", "out_shardings", "donated_invars", "keep_unused", "inline",
                  "name"):
            assert p[k] == original[k], k
    np.testing.assert_allclose(ja.guided_backprop(f)(X), _hand_guided(X), rtol=1e-12)


def test_jit_without_relu_is_bound_unchanged():
    inner = jax.jit(lambda h: jnp.tanh(h) * 2.0)
    f = lambda x: V @ jax.nn.relu(W2 @ inner(W1 @ x))
    rewritten = rewrite(f, Rules(relu=lambda a, g: g))
    (eqn,) = list(_eqns(jax.make_jaxpr(rewritten)(X), "jit"))
    assert eqn.params["jaxpr"] == next(_eqns(jax.make_jaxpr(f)(X), "jit")).params["jaxpr"]


def test_remat_keeps_policy():
    policy = jax.checkpoint_policies.nothing_saveable
    f = lambda x: _two_relu(x, jax.checkpoint(lambda h, w: jax.nn.relu(w @ h), policy=policy))
    np.testing.assert_allclose(ja.guided_backprop(f)(X), _hand_guided(X), rtol=1e-12)
    rewritten = rewrite(f, Rules(relu=lambda a, g: g))
    remats = list(_eqns(jax.make_jaxpr(rewritten)(X), "remat2"))
    assert remats and all(e.params["policy"] is policy for e in remats)


def test_scan_and_cond_are_followed():
    def f(x):
        def step(h, w):
            return jax.nn.relu(w @ h), None

        h, _ = lax.scan(step, W1 @ x, jnp.stack([jnp.eye(9), jnp.eye(9)]))
        h = lax.cond(jnp.sum(x) > -100.0, lambda h: jax.nn.relu(W2 @ h),
                     lambda h: jnp.zeros(6), h)
        return V @ h

    w1, w2, v = map(np.asarray, (W1, W2, V))
    z = w1 @ np.asarray(X)
    a1 = np.maximum(z, 0)
    a1b = np.maximum(a1, 0)  # the second identity step (a1 >= 0)
    a2 = np.maximum(w2 @ a1b, 0)
    r = w2.T @ _relu_rule("guided", a2, v)
    r = _relu_rule("guided", a1b, r)
    r = _relu_rule("guided", a1, r)
    np.testing.assert_allclose(ja.guided_backprop(f)(X), w1.T @ r, rtol=1e-12)


def test_user_custom_jvp_with_relu_keeps_its_rule_and_warns_once():
    @jax.custom_jvp
    def block(h):
        return jax.nn.relu(h)

    block.defjvp(lambda p, t: (block(p[0]), 3.0 * t[0]))  # the user's straight-through rule

    def f(x):
        return V @ jax.nn.relu(W2 @ block(W1 @ x))

    with pytest.warns(AttributionWarning) as rec:
        m = ja.guided_backprop(f)(X)
    msgs = [str(w.message) for w in rec if issubclass(w.category, AttributionWarning)]
    assert len(msgs) == 1 and "block (custom_jvp_call)" in msgs[0], msgs
    w1, w2, v = map(np.asarray, (W1, W2, V))
    a2 = np.maximum(w2 @ np.maximum(w1 @ np.asarray(X), 0), 0)
    np.testing.assert_allclose(m, w1.T @ (3.0 * (w2.T @ _relu_rule("guided", a2, v))),
                               rtol=1e-12)


def test_user_custom_jvp_around_a_raw_max_is_not_a_relu():
    # Old engine: the max inside was rewritten and the user's rule dropped.
    @jax.custom_jvp
    def straight_through(h):
        return jnp.maximum(h, 0.0)

    straight_through.defjvp(lambda p, t: (straight_through(p[0]), t[0]))

    def f(x):
        return V @ jnp.tanh(W2 @ straight_through(W1 @ x))

    with _no_relu_warning():
        m = ja.rectgrad(f, q=50.0)(X)
    np.testing.assert_allclose(m, jax.grad(f)(X), rtol=1e-12)


def test_user_custom_vjp_only_relus_gives_one_coherent_warning():
    # Old engine: "keeps its own rule" AND "contains no ReLU" (two contradicting warnings).
    @jax.custom_vjp
    def block(h):
        return jax.nn.relu(h)

    block.defvjp(lambda h: (block(h), h), lambda h, g: (2.0 * g,))

    def f(x):
        return V @ jnp.tanh(W2 @ block(W1 @ x))

    with pytest.warns(AttributionWarning) as rec:
        m = ja.deconvnet(f)(X)
    msgs = [str(w.message) for w in rec if issubclass(w.category, AttributionWarning)]
    assert len(msgs) == 1, msgs
    assert "contains no ReLU" in msgs[0] and "block (custom_vjp_call)" in msgs[0]
    np.testing.assert_allclose(m, jax.grad(f)(X), rtol=1e-12)


def test_shard_map_body_is_rewritten():
    # Old engine: maximum(h, zeros_like(h)) inside shard_map kept the plain rule silently.
    from jax.sharding import PartitionSpec

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    inner = jax.shard_map(lambda h: jnp.maximum(h, jnp.zeros_like(h)), mesh=mesh,
                          in_specs=PartitionSpec(), out_specs=PartitionSpec())

    def f(x):
        return V @ jax.nn.relu(W2 @ inner(W1 @ x))

    np.testing.assert_allclose(ja.guided_backprop(f, raw_max=True)(X), _hand_guided(X),
                               rtol=1e-12)
    named = jax.shard_map(jax.nn.relu, mesh=mesh, in_specs=PartitionSpec(),
                          out_specs=PartitionSpec())
    np.testing.assert_allclose(
        ja.guided_backprop(lambda x: V @ jax.nn.relu(W2 @ named(W1 @ x)))(X), _hand_guided(X),
        rtol=1e-12)


def test_callbacks_without_relu_are_bound_unchanged():
    seen = []

    def f(x):
        scale = jax.pure_callback(lambda: np.float64(2.0), jax.ShapeDtypeStruct((), jnp.float64))
        jax.experimental.io_callback(lambda s: seen.append(float(s)), None, scale)
        return lax.stop_gradient(scale) * _two_relu(x)

    out = rewrite(f, Rules(relu=lambda a, g: g))(X)
    np.testing.assert_allclose(out, 2.0 * _two_relu(X), rtol=1e-12)
    assert seen == [2.0]
    np.testing.assert_allclose(ja.guided_backprop(f)(X), 2.0 * _hand_guided(X), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# 4. The calling convention of jax.grad.


def _trace_counter():
    count = {"n": 0}

    def f(x, y, *, double=False):
        count["n"] += 1
        s = jax.nn.relu(W2 @ jax.nn.relu(W1 @ x))[y]
        return 2.0 * s if double else s

    return f, count


@pytest.mark.parametrize("method", ["saliency", *MODIFIED])
def test_python_bool_and_keyword_arguments_pass_through(method):
    # Old engine: TracerBoolConversionError (the internal jit traced every argument).
    transform = ja.saliency if method == "saliency" else MODIFIED[method]

    def f(x, flip):
        s = _two_relu(x)
        return -s if flip else s

    a, b = transform(f)(X, True), transform(f)(X, flip=False)
    np.testing.assert_allclose(a, transform(lambda x: -_two_relu(x))(X), rtol=1e-12)
    np.testing.assert_allclose(b, transform(_two_relu)(X), rtol=1e-12)


def test_static_values_do_not_retrace_and_arrays_are_traced():
    f, count = _trace_counter()
    g = ja.guided_backprop(f)
    g(X, 1)
    g(X, 1)
    assert count["n"] == 1  # equal static value: the compiled program is reused
    g(X, 2, double=True)
    assert count["n"] == 2  # a new static value retraces
    g(X, jnp.asarray(1))
    g(X, jnp.asarray(3))
    assert count["n"] == 3  # an array label is traced: one compile for all labels


def test_explaining_a_class_compiles_once_for_all_labels():
    f, count = _trace_counter()
    xs = jax.random.normal(jax.random.key(3), (4, 5), jnp.float64)
    ys = jnp.array([0, 3, 5, 3])
    maps = jax.vmap(ja.rectgrad(f, q=70.0))(xs, ys)
    assert count["n"] == 1
    for x, y, m in zip(xs, ys, maps, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AttributionWarning)
            ref = ja.rectgrad(lambda x, y=int(y): f(x, y), q=70.0)(x)
        np.testing.assert_allclose(m, ref, rtol=1e-12, atol=1e-15)


def test_noise_and_path_transforms_pass_extra_arguments(key):
    f, _ = _trace_counter()
    y = 2
    closed = lambda x: f(x, y, double=True)
    sg = ja.smoothgrad(ja.saliency(f), n=6, chunk=4)(X, key, y, double=True)
    sg_ref = ja.smoothgrad(ja.saliency(closed), n=6, chunk=4)(X, key)
    np.testing.assert_array_equal(sg, sg_ref)
    ig = ja.integrated_gradients(f, steps=5, gradient=ja.guided_backprop)(X, y, double=True)
    ig_ref = ja.integrated_gradients(closed, steps=5, gradient=ja.guided_backprop)(X)
    np.testing.assert_array_equal(ig, ig_ref)
    ti = ja.times_input(ja.rectgrad(f, q=60.0))(X, y, double=True)
    np.testing.assert_array_equal(ti, ja.rectgrad(closed, q=60.0)(X) * X)


def test_argnums_with_extra_arguments():
    def f(x, w, scale):
        return scale * (V @ jax.nn.relu(w @ x))

    gx, gw = ja.guided_backprop(f, argnums=(0, 1))(X, W1[:6], 3.0)
    a = np.maximum(np.asarray(W1[:6]) @ np.asarray(X), 0)
    r = _relu_rule("guided", a, 3.0 * np.asarray(V))
    np.testing.assert_allclose(gx, np.asarray(W1[:6]).T @ r, rtol=1e-12)
    np.testing.assert_allclose(gw, np.outer(r, np.asarray(X)), rtol=1e-12)


def test_unhashable_non_array_argument_is_named():
    class Config:
        __hash__ = None

    with pytest.raises(ArgumentTypeError, match="rectgrad: an argument=.* is a Config, neither "
                       "an array nor hashable"):
        ja.rectgrad(lambda x, c: _two_relu(x))(X, Config())


# ---------------------------------------------------------------------------------------------
# 5. One error vocabulary.


@pytest.mark.parametrize("q", [np.float32(90.0), np.int64(90), jnp.float32(90.0), 90])
def test_numpy_and_jax_scalars_are_numbers(q):
    # Old engine: "q=90 must be a number in [0, 100]" for numpy scalars.
    ref = ja.rectgrad(_two_relu, q=90.0)(X)
    np.testing.assert_array_equal(ja.rectgrad(_two_relu, q=q)(X), ref)
    np.testing.assert_array_equal(ja.rectgrad(_two_relu, tau=np.float32(0.0))(X),
                                  ja.rectgrad(_two_relu, tau=0.0)(X))


def test_fraction_q_warns_and_bool_q_is_an_error():
    with pytest.warns(AttributionWarning, match=r"q=0.9 is a percentile in \[0, 100\].*q=90"):
        ja.rectgrad(_two_relu, q=0.9)
    with pytest.raises(ArgumentTypeError, match="rectgrad: q=True is a bool"):
        ja.rectgrad(_two_relu, q=True)


def _warned_at(call):
    """(filename, line) of the AttributionWarnings ``call`` raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [(Path(w.filename).name, w.lineno) for w in caught
            if issubclass(w.category, AttributionWarning)]


def test_warnings_point_at_the_users_line_through_any_tracing():
    """Not into JAX: however many jit/vmap/grad frames lie between the call and the warning."""
    smooth = lambda x: jnp.sum(jnp.tanh(x) ** 2)  # no ReLU: every map warns
    here = Path(__file__).name
    line = sys._getframe().f_lineno
    calls = [
        lambda: ja.rectgrad(smooth)(X),  # line + 2
        lambda: jax.jit(ja.guided_backprop(smooth))(X),  # line + 3
        lambda: jax.vmap(ja.deconvnet(smooth))(jnp.stack([X, X])),  # line + 4
        lambda: ja.smoothgrad(ja.rectgrad(smooth), n=2)(X, jax.random.key(0)),  # line + 5
        lambda: ja.rectgrad(_two_relu, q=0.9),  # line + 6
    ]
    for offset, call in enumerate(calls, start=2):
        assert _warned_at(call) == [(here, line + offset)], offset


def test_a_warning_from_code_read_on_standard_input_is_shown():
    # `python -` gives __main__ a builtin loader; linecache asked it for the source and raised
    import subprocess

    code = ("import jax.numpy as jnp, jaxattr as ja\n"
            "ja.rectgrad(lambda x: jnp.sum(jnp.tanh(x)))(jnp.ones(3))\n")
    run = subprocess.run([sys.executable, "-W", "always", "-"], input=code, text=True,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "<stdin>:2: AttributionWarning: rectgrad: f contains no ReLU" in run.stderr


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ja.rectgrad(jnp.ones(3)), ArgumentTypeError,
         r"rectgrad: f=<array of shape \(3,\).*is an array, not a function"),
        (lambda: ja.saliency(ja.rectgrad), ArgumentTypeError,
         "saliency: f=.* is a jaxattr transform, not a score function"),
        (lambda: ja.times_input(ja.rectgrad), ArgumentTypeError,
         "times_input: a=.* is a transform.*times_input\\(rectgrad\\(f\\)\\)"),
        (lambda: ja.smoothgrad(ja.rectgrad(_two_relu)(X)), ArgumentTypeError,
         "smoothgrad: a=<array .* is an array, not a function"),
        (lambda: ja.rectgrad(_two_relu, select="bisect"), ArgumentError,
         "rectgrad: select='bisect' is not a known option; expected one of"),
        (lambda: ja.rectgrad(_two_relu, padding_trick="yes"), ArgumentTypeError,
         "rectgrad: padding_trick='yes' has type str; expected True or False"),
        (lambda: ja.guided_backprop(_two_relu, argnums=[]), ArgumentError,
         r"guided_backprop: argnums=\[\] is empty"),
        (lambda: ja.guided_backprop(_two_relu, argnums=1)(X), ArgumentError,
         "guided_backprop: argnums=1 refers to argument 1 but the map was called with 1"),
        (lambda: ja.rectgrad(lambda x: jnp.sum(x))(jnp.arange(3)), ArgumentTypeError,
         "rectgrad: argument 0=.* has dtype int"),
    ],
)
def test_errors_name_the_function_and_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_error_classes_are_value_and_type_errors():
    assert issubclass(ArgumentError, ValueError)
    assert issubclass(ArgumentTypeError, ValueError) and issubclass(ArgumentTypeError, TypeError)


def test_a_batch_given_to_a_per_example_transform_suggests_vmap():
    def batched_score(x):  # a model called on a batch returns one score per example
        return jax.nn.relu(x @ W1.T) @ jnp.ones(9)

    xs = jnp.ones((4, 5))
    with pytest.raises(ArgumentTypeError, match=r"batch of 4.*jax.vmap\(rectgrad\(f\)\)\(xs\)"):
        ja.rectgrad(batched_score)(xs)


# ---------------------------------------------------------------------------------------------
# 6. Residuals: each rule saves only what it reads.


def _saved(fun, x, capsys) -> list[str]:
    capsys.readouterr()
    print_saved_residuals(fun, x)
    return [line for line in capsys.readouterr().out.splitlines()
            if line.strip() and "from a constant" not in line]


@pytest.mark.parametrize(
    "rules, expected",
    [
        (Rules(relu=lambda a, g: jnp.where(a > 0, g, 0)), 1),  # guided/rectgrad: the output
        (Rules(relu=lambda a, g: jnp.maximum(g, 0), relu_reads_output=False), 0),  # deconvnet
    ],
)
def test_relu_rule_saves_only_what_it_reads(rules, expected, capsys):
    # Old engine: (x_in, a_out) per ReLU, i.e. 2 arrays for every rule.
    f = lambda x: C9 @ jax.nn.relu(W1 @ x)
    saved = _saved(rewrite(f, rules), X, capsys)
    assert len(saved) == expected, saved
    assert all("f64[9]" in line for line in saved)


def test_peak_memory_within_ten_percent_of_the_plain_gradient():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _cnn

    params = _cnn.init_params(jax.random.key(0))
    f = lambda x: _cnn.logit_score(params, x)
    x = jax.ShapeDtypeStruct((64, 32, 32, 3), jnp.float32)

    def peak(transform):
        stats = jax.jit(jax.vmap(transform(f))).lower(x).compile().memory_analysis()
        return stats.temp_size_in_bytes + stats.output_size_in_bytes

    with jax.numpy_rank_promotion("allow"):  # the benchmark model adds biases by broadcasting
        plain = peak(jax.grad)
        guided, rect = peak(ja.guided_backprop), peak(ja.rectgrad)
    assert guided <= 1.10 * plain and rect <= 1.10 * plain, (plain, guided, rect)



# ---------------------------------------------------------------------------------------------
# The compat section against the JAX version pip resolved.


def test_every_higher_order_primitive_jax_emits_has_a_handler():
    from jax.sharding import PartitionSpec

    from jaxattr import _jaxpr

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    cv = jax.custom_vjp(lambda h: h)
    cv.defvjp(lambda h: (h, None), lambda _, g: (g,))
    emitted = {
        "jit": jax.jit(jnp.sin),
        "checkpoint": jax.checkpoint(jnp.sin),
        "custom_jvp": jax.nn.relu,
        "custom_vjp": cv,
        "scan": lambda h: lax.scan(lambda c, _: (jnp.sin(c), None), h, None, length=2)[0],
        "cond": lambda h: lax.cond(True, jnp.sin, jnp.cos, h),
        "while": lambda h: lax.while_loop(lambda c: jnp.sum(c) < 0, jnp.sin, h),
        "shard_map": jax.shard_map(jnp.sin, mesh=mesh, in_specs=PartitionSpec(),
                                   out_specs=PartitionSpec()),
    }
    for what, fn in emitted.items():
        (eqn,) = jax.make_jaxpr(fn)(X).jaxpr.eqns
        assert eqn.primitive.name in _jaxpr._BASE, (what, eqn.primitive.name)
    # jax.nn.relu is recognised by what it is (its source location), in this JAX version
    assert _jaxpr._is_nn_relu(jax.make_jaxpr(jax.nn.relu)(X).jaxpr.eqns[0])
    assert not _jaxpr._is_nn_relu(jax.make_jaxpr(jax.nn.relu6)(X).jaxpr.eqns[0])


def test_rule_sets_register_with_the_walker_and_chain_in_import_order():
    """The walker holds no rule: ReLU rules and the layout rule are handlers registered per
    primitive; on a convolution the padding trick (ReLU rule set) wraps the layout rule."""
    from jaxattr import _jaxpr, _rules_layout, _rules_relu

    for prim in ("max", "gt", "lt", "select_n", "mul", "reduce_window_max"):
        assert [h.__module__ for h in _jaxpr._RULES[prim]] == [_rules_relu.__name__], prim
    assert [h.__module__ for h in _jaxpr._RULES["conv_general_dilated"]] == [
        _rules_relu.__name__, _rules_layout.__name__]
    assert "max" not in _jaxpr._BASE and "conv_general_dilated" not in _jaxpr._BASE
    assert "clamped_maxes" in _jaxpr._ANALYSES


def test_a_new_rule_set_registers_without_touching_the_walker(monkeypatch):
    """A handler registered for 'sin' sees every sin (also inside jit and scan) and may call
    next_() for the walker's own evaluation: here it doubles the forward value."""
    from jaxattr import _jaxpr

    seen = []

    def double_sin(interp, eqn, invals, ctx, next_):
        seen.append(eqn.primitive.name)
        interp.stats.sites += 1
        return [_jaxpr._Val(2 * o.value) for o in next_()]

    monkeypatch.setitem(_jaxpr._RULES, "sin", [double_sin])

    def f(x):
        y = jax.jit(jnp.sin)(x)
        return lax.scan(lambda c, _: (jnp.sin(c), None), y, None, length=2)[0]

    got = rewrite(f, Rules())(X)
    expected = 2 * jnp.sin(2 * jnp.sin(2 * jnp.sin(X)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert seen == ["sin", "sin"]  # the jit body and the scan body, each traced once
