"""Acceptance tests of the modified-backprop engine against an independent numpy reference.

``numpy_reference.py`` holds a tiny ReLU MLP and a tiny CNN with HAND-WRITTEN backward passes for
every rule of REFERENCE.md section 1 (saliency, Guided Backprop, DeconvNet, RectGrad by percentile
or fixed threshold, PRR max-pool, padding trick). The JAX models below use the same weights, in
plain JAX (jnp, ``lax.conv_general_dilated`` SAME, ``jax.nn.relu``, ``lax.reduce_window`` max).

How the tests are made trustworthy:

* the reference is checked first: its forward pass matches JAX's, its plain-gradient backward
  matches ``jax.grad`` (float64, 1e-12) and central finite differences;
* its RectGrad has the properties REFERENCE.md derives by hand (q = 100 gives zero, tau = 0 gives
  Guided Backprop, the number of passing units per layer, PRR conserves each window's sum);
* the inputs are generic, and a test says so: ReLUs mixed on/off, no pre-activation near 0, every
  max-pool window has a unique positive winner (so 'winner' and PRR are defined without ties),
  no value ``a * R`` within 1e-5 * max|a * R| of its layer's threshold (so float32 rounding, ~1e-6
  relative, cannot flip a comparison and float32 can be held to 1e-6);
* the threshold is TensorFlow's 'nearest' percentile (REFERENCE.md: "as TF computes it"), which
  differs from ``numpy.percentile(..., method="nearest")`` where ``(n-1) q / 100`` is a
  half-integer; ``CONVENTION_DEPENDENT`` lists the comparisons that tell the two apart, every
  other one holds under both (see ``test_percentile_conventions``);
* mutated references (``>=`` for ``>``, ``|a R|``, one threshold per batch, 'linear' percentile,
  numpy's rounding at half-integers) give a DIFFERENT answer on these very inputs, so a wrong
  engine cannot pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from jax import lax

import jaxattr as ja

QS = (0.0, 50.0, 90.0, 98.0, 100.0)
TAUS = (0.0, 0.01, -0.01)
# Seeds, biases and shifts were chosen (by a search over seeds) to pass test_inputs_are_generic
# and test_options_change_the_answer: see those tests for what they guarantee. out_shift keeps
# RectGrad's q = 50 threshold off 0 (else q = 50 would be exactly Guided Backprop).
# Odd widths: (n - 1) * q / 100 is never a half-integer for q in QS (n - 1 = 170, 120), so the
# numpy and TensorFlow 'nearest' conventions cannot differ on the MLP; 171 and 121 units also let
# 3 and 2 units pass at q = 98.
MLP_SIZES = (6, 171, 121, 3)
MLP = ref.init_mlp(MLP_SIZES, 4, bias=0.3, out_shift=1.0)
MLP_X = np.random.default_rng(1004).standard_normal((4, 6))
# 8x8x2 -> conv3x3x4 -> relu -> conv3x3x4 -> relu -> maxpool 2x2 -> dense 64 -> 3. The second
# conv's bias (+0.8, centred) keeps ~85% of its units on, so no pool window is all zeros.
CNN = ref.init_cnn(1, bias=(0.3, 0.8), kernel_shift=0.5, out_shift=1.0)
CNN_X = np.random.default_rng(1001).standard_normal((4, 8, 8, 2))
# Where numpy's and TensorFlow's 'nearest' percentiles pick different elements on these inputs
# (n = 256, q = 50: position 127.5; the MLP's odd widths never give a half-integer). These pin
# TensorFlow's convention (REFERENCE.md section 1); every other comparison holds under both.
CONVENTION_DEPENDENT = {("cnn", "rectgrad-q50")}
MODELS = {"mlp": (MLP, MLP_X, ref.mlp_attribution), "cnn": (CNN, CNN_X, ref.cnn_attribution)}


# ----------------------------------------------------------------------------- JAX models


def jax_mlp(params: dict, dtype):
    hidden = [(jnp.asarray(w, dtype), jnp.asarray(b, dtype)) for w, b in params["hidden"]]
    w_out, b_out = (jnp.asarray(a, dtype) for a in params["out"])

    def logits(x):
        h = x
        for w, b in hidden:
            h = jax.nn.relu(h @ w + b)
        return h @ w_out + b_out

    return logits


def jax_cnn(params: dict, dtype):
    conv = [(jnp.asarray(k, dtype), jnp.asarray(b, dtype)) for k, b in params["conv"]]
    w_out, b_out = (jnp.asarray(a, dtype) for a in params["dense"])

    def logits(x):  # x: (H, W, C), one example
        h = x
        for k, b in conv:
            z = lax.conv_general_dilated(
                h[None], k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )[0]
            h = jax.nn.relu(z + b[None, None, :])
        p = lax.reduce_window(h, -jnp.inf, lax.max, (2, 2, 1), (2, 2, 1), "VALID")
        return p.reshape(-1) @ w_out + b_out

    return logits


JAX_MODELS = {"mlp": jax_mlp, "cnn": jax_cnn}


def setup(model: str, dtype=np.float64, n: int = 1):
    """(jax logits fn, x as jnp, numpy params and x the reference sees, reference fn)."""
    params, x, attribution = MODELS[model]
    x = x[:n].astype(dtype)
    rparams = ref.cast(ref.cast(params, dtype), np.float64)
    xr = x.astype(np.float64)
    return JAX_MODELS[model](params, dtype), jnp.asarray(x), rparams, xr, attribution


# ----------------------------------------------------------------------------- rule table


def _cfg(name, rule, ja_kw=None, ref_kw=None, *, cnn_only=False):
    return dict(name=name, rule=rule, ja_kw=ja_kw or {}, ref_kw=ref_kw or {}, cnn_only=cnn_only)


CONFIGS = [
    _cfg("saliency", "saliency"),
    _cfg("guided", "guided"),
    _cfg("deconv", "deconv"),
    *[_cfg(f"rectgrad-q{q:g}", "rectgrad", {"q": q}, {"q": q}) for q in QS],
    *[_cfg(f"rectgrad-tau{t:g}", "rectgrad", {"tau": t}, {"tau": t}) for t in TAUS],
    *[_cfg(f"rectgrad-q{q:g}-prr", "rectgrad", {"q": q, "maxpool": "prr"},
           {"q": q, "maxpool": "prr"}, cnn_only=True) for q in (0.0, 90.0)],
    _cfg("rectgrad-q90-padtrick", "rectgrad", {"q": 90.0, "padding_trick": True},
         {"q": 90.0, "padding_trick": True}, cnn_only=True),
    _cfg("rectgrad-q98-prr-padtrick", "rectgrad",
         {"q": 98.0, "maxpool": "prr", "padding_trick": True},
         {"q": 98.0, "maxpool": "prr", "padding_trick": True}, cnn_only=True),
]


def model_configs():
    return [(m, c) for m in MODELS for c in CONFIGS if m == "cnn" or not c["cnn_only"]]


def engine_params():
    return [pytest.param(m, c, id=f"{m}-{c['name']}") for m, c in model_configs()]


def transform(cfg: dict, f):
    if cfg["rule"] == "saliency":
        return ja.saliency(f)
    if cfg["rule"] == "guided":
        return ja.guided_backprop(f)
    if cfg["rule"] == "deconv":
        return ja.deconvnet(f)
    return ja.rectgrad(f, **cfg["ja_kw"])


def reference(model: str, cfg: dict, params, x, **kw):
    return MODELS[model][2](params, x, cfg["rule"], **cfg["ref_kw"], **kw)


def predicted_class(model: str, params, x) -> int:
    fwd = ref.mlp_forward if model == "mlp" else ref.cnn_forward
    return int(np.argmax(fwd(params, x)[0][0]))


def assert_close(got, want, rtol: float):
    """max|got - want| <= rtol * max|want| (exact equality when want is all zero)."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rtol * scale, f"max abs error {err:.3e} > {rtol:g} * max|want| = {scale:.3e}"


# ----------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_reference_forward_and_plain_gradient_match_jax(model):
    """Same logits as the JAX model, and the hand-written backward equals jax.grad (float64)."""
    logits, _, params, x, attribution = setup(model, n=4)
    fwd = ref.mlp_forward if model == "mlp" else ref.cnn_forward
    assert_close(jax.jit(jax.vmap(logits))(jnp.asarray(x)), fwd(params, x)[0], 1e-13)
    c = np.argmax(fwd(params, x)[0], axis=1)
    grad = jax.jit(jax.vmap(jax.grad(lambda xi, ci: logits(xi)[ci])))
    want = grad(jnp.asarray(x), jnp.asarray(c))
    assert_close(want, attribution(params, x, "saliency"), 1e-12)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_reference_plain_gradient_matches_finite_differences(model):
    _, _, params, x, attribution = setup(model)
    fwd = ref.mlp_forward if model == "mlp" else ref.cnn_forward
    c = predicted_class(model, params, x)
    g = attribution(params, x, "saliency", c=c)
    h = 1e-6
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape[1:]):
        e = np.zeros_like(x)
        e[(0, *i)] = h
        fd[(0, *i)] = (fwd(params, x + e)[0][0, c] - fwd(params, x - e)[0][0, c]) / (2 * h)
    # Piecewise linear and no kink within h (test_inputs_are_generic): only rounding, ~1e-10.
    assert_close(fd, g, 1e-7)


def test_percentile_conventions():
    """numpy's and TensorFlow's 'nearest' percentile, and where REFERENCE.md's 'equals' fails."""
    rng = np.random.default_rng(0)
    for n in (5, 20, 25, 27, 121, 171, 256):
        v = rng.standard_normal(n)
        for q in (0.0, 10.0, 50.0, 90.0, 95.0, 98.0, 99.0, 100.0):
            pos = (n - 1) * q / 100
            if abs(pos - np.floor(pos) - 0.5) > 1e-9:
                assert ref.percentile_nearest(v, q) == ref.tf_nearest(v, q), (n, q)
    # At a half-integer position the two round in opposite directions:
    # numpy sorted_asc[round(1.5) = 2] = 3, TF sorted_desc[round(1.5) = 2] = 2.
    v = np.array([4.0, 1.0, 3.0, 2.0])
    assert ref.percentile_nearest(v, 50.0) == 3.0
    assert ref.tf_nearest(v, 50.0) == 2.0
    # REFERENCE.md: "n <= 26 units passes nothing at q = 98". True for n <= 25 under both; at
    # n = 26 float64 gives 25 * (1 - 0.98) = 0.5000000000000004 -> 1 unit passes (numpy: 24.5 ->
    # 24 -> 1 unit too); only exact arithmetic in TF's form gives 0.
    v = np.arange(26.0)
    assert ref.percentile_nearest(v, 98.0) == ref.tf_nearest(v, 98.0) == 24.0
    v = np.arange(25.0)
    assert ref.percentile_nearest(v, 98.0) == ref.tf_nearest(v, 98.0) == 24.0  # max: none pass


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_reference_rectgrad_properties(model):
    _, _, params, x, attribution = setup(model, n=4)
    assert not np.any(attribution(params, x, "rectgrad", q=100.0))
    # tau = 0 is Guided Backprop on a ReLU net (a >= 0: a R > 0 iff a > 0 and R > 0).
    np.testing.assert_array_equal(
        attribution(params, x, "rectgrad", tau=0.0), attribution(params, x, "guided")
    )
    # q = 0 lets gradient through dead units: not the plain gradient.
    assert np.abs(attribution(params, x, "rectgrad", q=0.0)
                  - attribution(params, x, "saliency")).max() > 1e-3
    for q in QS:
        rec = []
        attribution(params, x, "rectgrad", q=q, record=rec)
        for layer in rec:
            v = layer["v"].reshape(x.shape[0], -1)
            passed = layer["passed"].reshape(x.shape[0], -1).sum(axis=1)
            n = v.shape[1]
            k = round((n - 1) * (1 - q / 100))
            for vi, p, t in zip(v, passed, layer["tau"].ravel(), strict=True):
                assert t == np.sort(vi)[::-1][k]
                # exactly k pass when the threshold value is not tied, no more when it is
                assert p == k if np.sum(vi == t) == 1 else p <= k


def test_reference_maxpool_routes_and_prr_conserves():
    rng = np.random.default_rng(1)
    a = np.abs(rng.standard_normal((2, 4, 4, 3)))
    r = rng.standard_normal((2, 2, 2, 3))
    for mode in ("max", "prr"):
        back = ref.maxpool_backward(a, r, mode)
        np.testing.assert_allclose(ref.pool_windows(back).sum(axis=-1), r, rtol=1e-14)
    win, back = ref.pool_windows(a), ref.pool_windows(ref.maxpool_backward(a, r, "prr"))
    np.testing.assert_allclose(back, win / win.sum(-1, keepdims=True) * r[..., None], rtol=1e-14)
    back = ref.pool_windows(ref.maxpool_backward(a, r, "max"))
    assert np.all((back != 0).sum(-1) == 1)
    np.testing.assert_array_equal(np.argmax(np.abs(back), -1), np.argmax(win, -1))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_inputs_are_generic(model):
    """Preconditions of the comparisons below (not tolerances): see the module docstring.

    Margins are relative to the layer's max: 1e-5 for the float32 example (rounding ~1e-6),
    1e-9 for the float64 batch (rounding ~1e-15).
    """
    for n, dtype, margin in ((4, np.float64, 1e-9), (1, np.float32, 1e-5)):
        _, _, params, x, attribution = setup(model, dtype, n=n)
        fwd = ref.mlp_forward if model == "mlp" else ref.cnn_forward
        _, cache = fwd(params, x)
        for _, a in cache:
            assert 0.3 <= (a > 0).mean() <= 0.9
        assert ref.preactivation_margin(cache) > margin
        if model == "cnn":
            assert ref.window_margin(cache[-1][1]) > margin  # a unique positive winner everywhere
        for _, cfg in filter(lambda mc: mc[0] == model, model_configs()):
            if cfg["rule"] != "rectgrad":
                continue
            rec = []
            reference(model, cfg, params, x, c=None, record=rec)
            assert ref.threshold_margin(rec) > margin, cfg["name"]
            if "q" in cfg["ref_kw"]:
                q = cfg["ref_kw"]["q"]
                agree = [ref.percentile_nearest(v, q) == ref.tf_nearest(v, q)
                         for layer in rec for v in layer["v"].reshape(n, -1)]
                if (model, cfg["name"]) in CONVENTION_DEPENDENT:
                    assert not all(agree), cfg["name"]
                else:
                    assert all(agree), cfg["name"]


def _relative_change(good, bad) -> float:
    return float(np.abs(good - bad).max() / max(np.abs(good).max(), 1e-300))


@pytest.mark.parametrize("mutation", [*ref.MUTATIONS, "numpy_convention"])
def test_mutated_reference_is_detected(mutation):
    """Each wrong rule changes the answer of the comparisons below on these inputs, by > 1e-3.

    ``batch_percentile`` is visible only in a batch: test_vmap_threshold_is_per_example's input.
    ``numpy_convention`` (numpy's rounding at half-integer positions) only where
    CONVENTION_DEPENDENT says.
    """
    changes = {}
    for model, cfg in model_configs():
        if cfg["rule"] != "rectgrad":
            continue
        if mutation == "batch_percentile":
            if cfg["name"] != "rectgrad-q90":
                continue
            _, _, params, x, _ = setup(model, n=4)
            good = reference(model, cfg, params, x)
            bad = reference(model, cfg, params, x, mutation=mutation)
            changes[model, cfg["name"], "f64"] = _relative_change(good, bad)
            continue
        for dtype in (np.float64, np.float32):
            _, _, params, x, _ = setup(model, dtype)
            c = predicted_class(model, params, x)
            good = reference(model, cfg, params, x, c=c)
            bad = reference(model, cfg, params, x, c=c, mutation=mutation)
            changes[model, cfg["name"], dtype.__name__] = _relative_change(good, bad)
    if mutation == "batch_percentile":
        assert min(changes.values()) > 1e-3, changes  # caught for both models
    else:
        for dtype in ("float64", "float32"):
            assert max(v for k, v in changes.items() if k[2] == dtype) > 1e-3, changes


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_options_change_the_answer(model):
    """The configurations are pairwise different on these inputs (else one could stand in)."""
    _, _, params, x, _ = setup(model)
    c = predicted_class(model, params, x)
    maps = {cfg["name"]: reference(model, cfg, params, x, c=c)
            for m, cfg in model_configs() if m == model}
    names = sorted(maps)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if {a, b} == {"guided", "rectgrad-tau0"}:
                continue  # equal by theory (test_reference_rectgrad_properties)
            assert np.abs(maps[a] - maps[b]).max() > 1e-6 * np.abs(maps[a]).max(), (a, b)


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize(("model", "cfg"), engine_params())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matches_reference(model, cfg, dtype):
    """Every rule on both models: 1e-12 in float64 (eager), 1e-6 of max|map| in float32 (jit)."""
    logits, x, params, xr, _ = setup(model, dtype)
    c = predicted_class(model, params, xr)
    g = transform(cfg, lambda xi: logits(xi)[c])
    got = (g if dtype == np.float64 else jax.jit(g))(x[0])  # both of the engine's paths
    assert got.dtype == dtype and got.shape == x.shape[1:]
    want = reference(model, cfg, params, xr, c=c)[0]
    assert_close(got, want, 1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_vmap_threshold_is_per_example(model):
    """vmap over 4 examples, max-logit score: each map equals its own single-example reference."""
    logits, x, params, xr, attribution = setup(model, n=4)
    got = jax.jit(jax.vmap(ja.rectgrad(lambda xi: jnp.max(logits(xi)), q=90.0)))(x)
    for i in range(4):
        assert_close(got[i], attribution(params, xr[i:i + 1], "rectgrad", q=90.0)[0], 1e-12)
    # ... and the wrong semantics (one threshold over the batch) is visibly different here.
    bad = attribution(params, xr, "rectgrad", q=90.0, mutation="batch_percentile")
    assert np.abs(bad - np.asarray(got)).max() > 1e-3 * np.abs(bad).max()


def test_times_input_of_rectgrad():
    logits, x, params, xr, attribution = setup("cnn")
    c = predicted_class("cnn", params, xr)
    got = ja.times_input(ja.rectgrad(lambda xi: logits(xi)[c], q=98.0))(x[0])
    assert_close(got, (attribution(params, xr, "rectgrad", q=98.0, c=c) * xr)[0], 1e-12)


def test_padding_trick_without_convs_changes_nothing():
    logits, x, params, xr, attribution = setup("mlp")
    c = predicted_class("mlp", params, xr)
    got = ja.rectgrad(lambda xi: logits(xi)[c], q=90.0, padding_trick=True)(x[0])
    assert_close(got, attribution(params, xr, "rectgrad", q=90.0, c=c)[0], 1e-12)


def test_small_layer_at_q98_warns_and_gives_zero():
    """n = 20 <= 25 units: round(19 * 0.02) = 0 units pass at q = 98, so the map is zero."""
    params = ref.init_mlp((6, 20, 3), 3)
    x = MLP_X[:1]
    assert not np.any(ref.mlp_attribution(params, x, "rectgrad", q=98.0, c=0))
    assert np.any(ref.mlp_attribution(params, x, "rectgrad", q=90.0, c=0))  # 2 units pass at 90
    logits = jax_mlp(params, np.float64)
    with pytest.warns(UserWarning):
        got = ja.rectgrad(lambda xi: logits(xi)[0], q=98.0)(jnp.asarray(x[0]))
    np.testing.assert_array_equal(np.asarray(got), 0.0)


@pytest.mark.parametrize(("q", "want"), [(0.0, [0, 1, 1, 1]), (50.0, [0, 0, 1, 1]),
                                         (70.0, [0, 0, 0, 1]), (100.0, [0, 0, 0, 0])])
def test_hand_computed_threshold(q, want):
    """f = sum(w * relu(x)), x = w = 1..4 (shuffled): a * R = x * w = [1, 4, 9, 16] sorted.

    The gradient passes where x_i w_i > tau, tau = sort_desc(x w)[round(3 * (1 - q/100))]:
    q = 50 sits at the half-integer 1.5 -> 2, tau = 4, two units pass (numpy's ascending
    round(1.5) = 2 would pick tau = 9, one unit). q = 70: 0.9 -> 1, tau = 9. q = 0: tau = 1.
    """
    perm = np.array([2, 0, 3, 1])
    x = jnp.asarray(np.arange(1.0, 5.0)[perm])
    w = x
    got = ja.rectgrad(lambda xi: jnp.sum(w * jax.nn.relu(xi)), q=q)(x)
    np.testing.assert_array_equal(np.asarray(got), (np.asarray(w) * np.array(want, float)[perm]))
    np.testing.assert_array_equal(
        np.asarray(got),
        ref.relu_rule(np.asarray(x)[None], np.asarray(x)[None], np.asarray(w)[None], "rectgrad",
                      q=q)[0],
    )


@pytest.mark.parametrize("select", ["radix", "top_k", "sort"])
@pytest.mark.parametrize(("q", "dtype"), [(50.0, np.float64), (98.0, np.float32)],
                         ids=["q50-f64", "q98-f32"])
def test_every_selection_algorithm_is_exact(select, q, dtype):
    """The engine's threshold algorithms all pick the reference's element (q = 50 is the
    half-integer case on the CNN), under jit."""
    logits, x, params, xr, attribution = setup("cnn", dtype)
    c = predicted_class("cnn", params, xr)
    got = jax.jit(ja.rectgrad(lambda xi: logits(xi)[c], q=q, select=select))(x[0])
    want = attribution(params, xr, "rectgrad", q=q, c=c)[0]
    assert_close(got, want, 1e-12 if dtype == np.float64 else 1e-6)
