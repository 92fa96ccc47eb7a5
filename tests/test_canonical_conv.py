"""canonical_convs: every convolution in XLA:CPU's fast layout, with the same values.

XLA:CPU only canonicalises convolution layouts in a program's entry computation; in a loop body a
convolution in another layout runs on a slow generic emitter. The chunked noise and path
transforms therefore run their loop body through ``canonical_convs`` on CPU. These tests prove
that the rewrite changes no value (float64, every layout, stride, dilation, grouping, nesting) and
that the compiled chunked SmoothGrad has no non-canonical convolution left.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxattr as ja
from jaxattr._compat import jaxprs_in_params
from jaxattr._jaxpr import canonical_convs


def _convs(jaxpr) -> list:
    """Every conv_general_dilated equation, nested bodies included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for sub in jaxprs_in_params(eqn.params):
            found += _convs(sub)
    return found


def _is_canonical(eqn) -> bool:
    dn = eqn.params["dimension_numbers"]
    nd = len(dn.lhs_spec)
    io = (0, nd - 1, *range(1, nd - 1))
    return dn.lhs_spec == io and dn.out_spec == io and dn.rhs_spec == (nd - 1, nd - 2,
                                                                       *range(nd - 2))


# (lhs, rhs, out) layouts, input shape, kernel shape, extra conv arguments
CASES = {
    "NCHW/OIHW": (("NCHW", "OIHW", "NCHW"), (2, 3, 9, 8), (4, 3, 3, 2), {}),
    "NHWC/HWOI (a transposed kernel)": (("NHWC", "HWOI", "NHWC"), (2, 9, 8, 3), (3, 2, 4, 3), {}),
    "mixed in/out": (("NHWC", "OIHW", "NCHW"), (2, 9, 8, 3), (4, 3, 3, 2), {}),
    "strided, dilated, padded": (("NCHW", "IOHW", "NHWC"), (2, 3, 11, 10), (3, 4, 3, 3),
                                 {"window_strides": (2, 1), "padding": ((1, 2), (0, 1)),
                                  "rhs_dilation": (1, 2)}),
    "lhs-dilated (a strided conv's input gradient)": (
        ("NCHW", "OIHW", "NCHW"), (2, 3, 5, 6), (4, 3, 3, 3),
        {"lhs_dilation": (2, 2), "padding": ((2, 2), (1, 2))}),
    "spatial dims in another order (NWHC), strided": (
        ("NWHC", "HWIO", "NHWC"), (2, 10, 7, 3), (3, 2, 3, 4),
        {"window_strides": (2, 1), "padding": ((1, 0), (0, 2))}),
    "grouped": (("NCHW", "OIHW", "NCHW"), (2, 4, 7, 7), (6, 2, 3, 3),
                {"feature_group_count": 2}),
    "1-D NCW": (("NCW", "OIW", "NCW"), (2, 3, 12), (5, 3, 4), {}),
    "3-D NCDHW": (("NCDHW", "OIDHW", "NCDHW"), (1, 2, 5, 6, 4), (3, 2, 2, 3, 2), {}),
}


def _conv_fn(layouts, extra):
    kwargs = {"window_strides": None, "padding": "SAME", **extra}

    def f(x, w):
        strides = kwargs["window_strides"] or (1,) * (x.ndim - 2)
        return lax.conv_general_dilated(
            x, w, strides, kwargs["padding"], lhs_dilation=kwargs.get("lhs_dilation"),
            rhs_dilation=kwargs.get("rhs_dilation"), dimension_numbers=layouts,
            feature_group_count=kwargs.get("feature_group_count", 1))

    return f


@pytest.mark.parametrize("case", list(CASES))
def test_same_values_in_every_layout(case):
    layouts, x_shape, w_shape, extra = CASES[case]
    f = _conv_fn(layouts, extra)
    x = jax.random.normal(jax.random.key(1), x_shape, jnp.float64)
    w = jax.random.normal(jax.random.key(2), w_shape, jnp.float64)
    g = canonical_convs(f)
    assert not _is_canonical(_convs(jax.make_jaxpr(f)(x, w))[0])  # the case is a real test
    assert all(_is_canonical(e) for e in _convs(jax.make_jaxpr(g)(x, w)))
    np.testing.assert_allclose(jax.jit(g)(x, w), jax.jit(f)(x, w), rtol=1e-13, atol=1e-13)
    # its derivative is the original's too (both arguments: lhs and rhs transposes)
    d_f = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), (0, 1)))(x, w)
    d_g = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(g(*a))), (0, 1)))(x, w)
    for got, want in zip(d_g, d_f, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_gradients_of_every_layout_become_canonical():
    """The weight gradient of a grouped conv (batch_group_count) and the input gradient of a
    strided one (lhs_dilation): the convolutions JAX's transpose rules write."""
    layouts, x_shape, w_shape, extra = CASES["grouped"]
    f = _conv_fn(layouts, {**extra, "window_strides": (2, 1)})
    x = jax.random.normal(jax.random.key(1), x_shape, jnp.float64)
    w = jax.random.normal(jax.random.key(2), w_shape, jnp.float64)
    both = jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), (0, 1))
    jaxpr = jax.make_jaxpr(both)(x, w)
    assert any(e.params["batch_group_count"] > 1 for e in _convs(jaxpr))
    assert any(e.params["lhs_dilation"] != (1, 1) for e in _convs(jaxpr))
    g = canonical_convs(both)
    assert all(_is_canonical(e) for e in _convs(jax.make_jaxpr(g)(x, w)))
    for got, want in zip(g(x, w), both(x, w), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_canonical_convs_are_left_alone():
    f = _conv_fn(("NHWC", "HWIO", "NHWC"), {})
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 5))
    assert str(jax.make_jaxpr(canonical_convs(f))(x, w)) == str(jax.make_jaxpr(f)(x, w))


def test_nested_bodies_are_rewritten():
    """Inside jit, scan, cond, while and remat, with the values unchanged."""
    f = _conv_fn(("NCHW", "OIHW", "NCHW"), {})
    w = jax.random.normal(jax.random.key(2), (3, 3, 3, 3), jnp.float64)

    def nested(x):
        x = jax.jit(f)(x, w)
        x = lax.scan(lambda c, _: (jnp.tanh(f(c, w)), None), x, length=2)[0]
        x = lax.cond(x.sum() > 0, lambda x: f(x, w), lambda x: -f(x, w), x)
        x = lax.fori_loop(0, 2, lambda i, x: jnp.tanh(f(x, w)), x)
        return jax.checkpoint(lambda x: f(x, w))(x)

    x = jax.random.normal(jax.random.key(1), (2, 3, 6, 6), jnp.float64)
    g = canonical_convs(nested)
    convs = _convs(jax.make_jaxpr(g)(x))
    assert len(convs) == 6 and all(_is_canonical(e) for e in convs)
    np.testing.assert_allclose(g(x), nested(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", ["custom_jvp", "custom_vjp"])
def test_custom_rules_are_kept_and_their_bodies_rewritten(rule):
    """A custom_jvp/custom_vjp's body is rewritten; its derivative rule (here deliberately not
    the body's derivative: 3x) is kept."""
    f = _conv_fn(("NCHW", "OIHW", "NCHW"), {})
    w = jax.random.normal(jax.random.key(2), (3, 3, 3, 3), jnp.float64)
    if rule == "custom_jvp":
        layer = jax.custom_jvp(lambda x: f(x, w))
        layer.defjvp(lambda p, t: (layer(*p), 3.0 * f(t[0], w)))
    else:
        layer = jax.custom_vjp(lambda x: f(x, w))
        layer.defvjp(lambda x: (f(x, w), x),
                     lambda x, g: (3.0 * jax.vjp(lambda t: f(t, w), x)[1](g)[0],))
    score = lambda x: jnp.sum(jnp.sin(layer(x)))
    x = jax.random.normal(jax.random.key(1), (2, 3, 6, 6), jnp.float64)
    g = canonical_convs(score)
    assert all(_is_canonical(e) for e in _convs(jax.make_jaxpr(g)(x)))
    np.testing.assert_allclose(g(x), score(x), rtol=1e-13)
    np.testing.assert_allclose(jax.grad(g)(x), jax.grad(score)(x), rtol=1e-12)
    plain = jax.grad(lambda x: jnp.sum(jnp.sin(f(x, w))))(x)
    np.testing.assert_allclose(jax.grad(g)(x), 3.0 * plain, rtol=1e-12)  # the rule was used


def test_modified_backprop_maps_keep_refusing_forward_mode():
    """rectgrad's map is a custom_jvp that raises on forward mode: its body is rewritten (the
    loop of smoothgrad(rectgrad(f)) gets fast convolutions), its rule is kept."""
    f = _conv_fn(("NCHW", "OIHW", "NCHW"), {})
    w = jax.random.normal(jax.random.key(2), (3, 3, 3, 3), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, 3, 6, 6), jnp.float64)
    m = canonical_convs(ja.rectgrad(lambda x: jnp.sum(jax.nn.relu(f(x, w)) ** 2)))
    assert all(_is_canonical(e) for e in _convs(jax.make_jaxpr(m)(x)))
    with pytest.raises(ja.errors.ForwardModeError):
        jax.jvp(m, (x,), (x,))


def test_a_primitive_it_does_not_know_is_bound_as_traced():
    """Only speed is at stake: no UnsupportedPrimitiveError, the body runs as it was."""
    f = _conv_fn(("NCHW", "OIHW", "NCHW"), {})
    w = jnp.eye(2)[:, :, None, None]  # identity 1x1 conv: a linear map for custom_linear_solve
    x = jnp.arange(8.0).reshape(1, 2, 2, 2) + 1.0

    def solve(b):
        return lax.custom_linear_solve(lambda v: f(v, w), b, lambda mv, b: b)

    np.testing.assert_allclose(canonical_convs(solve)(x), solve(x))


def _small_cnn_score(x):
    w1 = jax.random.normal(jax.random.key(3), (3, 3, 2, 4), jnp.float32)
    w2 = jax.random.normal(jax.random.key(4), (3, 3, 4, 4), jnp.float32)
    h = jax.nn.softplus(lax.conv_general_dilated(x[None], w1, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))
    h = lax.conv_general_dilated(h, w2, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(h ** 2)


def _loops_over_the_model():
    """Every loop of jaxattr whose body evaluates the user's model: (name, chunked, unchunked),
    each a function of (x, key)."""
    from jaxattr import derivatives as jd

    sg = lambda chunk: ja.smoothgrad(ja.saliency(_small_cnn_score), n=6, chunk=chunk)
    ig = lambda chunk: ja.integrated_gradients(_small_cnn_score, steps=6, chunk=chunk)
    hr = lambda chunk: jd.hessian_row_sqnorms(_small_cnn_score, method="hutchinson",
                                              num_probes=6, chunk=chunk)
    hf = lambda chunk: jd.hessian_row_sqnorms(_small_cnn_score, method="forward", chunk=chunk)
    sr = lambda chunk: ja.smoothgrad(ja.rectgrad(_small_cnn_score, q=80), n=6, chunk=chunk)
    def in_lax_map(transform):  # a user's own loop over examples around a map
        m = transform(_small_cnn_score)
        return (lambda x, k: lax.map(m, jnp.stack([x, -x, 2 * x]), batch_size=1),
                lambda x, k: jax.vmap(m)(jnp.stack([x, -x, 2 * x])))

    return {
        "lax.map of guided_backprop": in_lax_map(ja.guided_backprop),
        "lax.map of rectgrad": in_lax_map(lambda f: ja.rectgrad(f, q=80)),
        "smoothgrad": (sg(2), sg(None)),
        "smoothgrad of rectgrad (a custom_jvp body)": (sr(2), sr(None)),
        "integrated_gradients": (lambda x, k: ig(2)(x), lambda x, k: ig(None)(x)),
        "hutchinson (lax.map)": (lambda x, k: hr(2)(x, k).value,
                                 lambda x, k: hr(None)(x, k).value),
        "hessian rows (lax.scan)": (lambda x, k: hf(8)(x), lambda x, k: hf(None)(x)),
    }


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's compiled layouts")
@pytest.mark.parametrize("loop", ["lax.map of guided_backprop", "lax.map of rectgrad", "smoothgrad",
                                  "smoothgrad of rectgrad (a custom_jvp body)",
                                  "integrated_gradients", "hutchinson (lax.map)",
                                  "hessian rows (lax.scan)"])
def test_loops_over_the_model_have_only_canonical_convolutions_on_cpu(key, loop):
    """The regression this guards: a chunked SmoothGrad of an NHWC CNN ran ~3x slower than the
    same passes at top level (Hessian row norms by Hutchinson ~4x), because the convolution of
    the input gradient (kernel HWOI) stayed non-canonical inside XLA:CPU's loop body."""
    chunked, whole = _loops_over_the_model()[loop]
    x = jax.random.normal(jax.random.key(5), (6, 6, 2), jnp.float32)
    compiled = jax.jit(chunked).lower(x, key).compile()
    hlo = compiled.as_text()
    assert "while" in hlo  # the passes are a loop
    labels = set(re.findall(r"dim_labels=(\S+?)[,}\s]", hlo))
    assert labels and labels <= {"b01f_01io->b01f"}, labels
    np.testing.assert_allclose(compiled(x, key), jax.jit(whole)(x, key), rtol=1e-4, atol=1e-5)


def test_canonical_loop_body_keeps_memory_flat_in_n(key):
    """The transposes the rewrite adds live inside the pass: peak memory is still set by chunk."""
    x = jax.random.normal(jax.random.key(5), (6, 6, 2), jnp.float32)

    def temp_bytes(n, chunk):
        g = ja.smoothgrad(ja.saliency(_small_cnn_score), n=n, chunk=chunk)
        return jax.jit(g).lower(x, key).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(24, 2) == temp_bytes(6, 2)
    assert temp_bytes(24, 24) > 4 * temp_bytes(24, 2)  # unchunked memory does grow with n
