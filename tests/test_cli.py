"""Tests of the `jaxattr demo` command line and of jaxattr.plot.attribution (which it drives)."""

import contextlib
import inspect
import io
import json
import os
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

import jaxattr
from jaxattr import cli
from jaxattr.models import CifarCNN
from jaxattr.plot.attribution import color_limits, heatmap, method_grid, overlay, to_2d

# ------------------------------------------------------------------------------------ the demo

METHODS = (
    "saliency",
    "guided backprop",
    "deconvnet",
    "rectgrad q=98 x input",
    "rectgrad q=98",
    "smoothgrad n=10",
    "lrp epsilon plus flat",
    "deeplift (zero baseline)",
    "grad-cam conv4",
    "guided grad-cam conv4",
)
COLS = ("ms", "compile_s", "TV", "Gini", "deletion AUC", "object mass", "pointing game",
        "distractor mass")
ROW = re.compile(r"^(?P<name>.+?)" + r"\s+([\d.]+|nan)" * len(COLS) + "$")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["demo", "--quick", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_demo_writes_png_report_and_prints_table(demo_run):
    rc, text, out = demo_run
    assert rc == 0
    png = out / "methods.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    report = json.loads((out / "report.json").read_text())
    acc = float(re.search(r"test accuracy ([\d.]+)", text).group(1))
    assert acc == pytest.approx(report["accuracy"], abs=5e-4) and acc > 2 / 6  # chance 1/6
    assert re.search(r"method\s+" + r"\s+".join(COLS), text)
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m and m["name"].strip() in METHODS:
            rows[m["name"].strip()] = dict(zip(COLS, map(float, m.groups()[1:]), strict=True))
    assert sorted(rows) == sorted(METHODS) == sorted(report["metrics"])
    for name, r in rows.items():
        assert r["ms"] > 0 and r["compile_s"] > 0 and r["TV"] > 0 and 0 < r["Gini"] < 1
        for k in ("object mass", "pointing game", "distractor mass"):
            assert 0.0 <= r[k] <= 1.0
            assert r[k] == pytest.approx(report["metrics"][name][k], abs=5e-4)
    # half width, 32x32: q=98 keeps round((n - 1) * 0.02) of 16384/16384/8192/8192/128 units
    assert "328/328/164/164/3" in text
    assert f"saved {out / 'methods.png'}" in text and f"saved {out / 'report.json'}" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxattr {jaxattr.__version__}"


def test_demo_errors_exit_2_before_training(tmp_path, capsys):
    assert cli.main(["demo", "--images", "11", "--out", str(tmp_path)]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("jaxattr demo: error: run_demo: images=11 is more than the figure "
                              "holds; expected an int in [1, 10]")
    assert cap.out == ""  # not a line of progress: nothing ran
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["demo", "--out", str(blocker / "sub")]) == 2
    cap = capsys.readouterr()
    assert "jaxattr demo: error: run_demo: out=" in cap.err and "is not a writable" in cap.err
    assert cap.out == ""


def test_main_without_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage: jaxattr" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["demo", "--steps", "0"], r"argument --steps: 0 must be > 0"),
        (["demo", "--steps", "abc"], r"argument --steps: 'abc' is not an integer"),
        (["demo", "--images", "-2"], r"argument --images: -2 must be > 0"),
        (["demo", "--seed", "-1"], r"argument --seed: seed=-1 must be >= 0"),
        (["demo", "--q", "101"], r"argument --q: q=101.0 must be in \[0, 100\]"),
        (["demo", "--q", "x"], r"argument --q: 'x' is not a number"),
        (["demo", "--model", "resnet"], r"argument --model: invalid choice: 'resnet'"),
        (["demo", "--dataset", "cifar10"], r"argument --dataset: invalid choice: 'cifar10'"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_message(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_total_variation_and_ink_fraction_hand_computed():
    m = np.array([[[1.0, -1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # horizontal |(-1) - 1| = 2, vertical |0 - 1| + |0 - (-1)| = 2; L1 = 2 -> 4 / 2
    tv = cli._total_variation(m)
    assert tv[0] == 2.0 and np.isnan(tv[1])
    mask = np.array([[True, False], [False, False]])
    m2 = np.array([[[1.0, -3.0], [0.0, 0.0]]])
    assert cli._ink_fraction(m2, mask)[0] == 0.25
    assert np.isnan(cli._ink_fraction(np.zeros((1, 2, 2)), mask)[0])
    # Gini of |(0, 0, 0, 2)| = (n - 1) / n = 3/4; uniform -> 0; all-zero -> nan
    g = cli._gini(np.array([[[0.0, 0.0], [0.0, 2.0]], [[1.0, -1.0], [1.0, 1.0]], [[0.0] * 2] * 2]))
    assert g[0] == 0.75 and g[1] == 0.0 and np.isnan(g[2])
    assert cli._mean_finite(np.array([np.nan, 1.0, 3.0])) == 2.0
    assert np.isnan(cli._mean_finite(np.array([np.nan])))


def test_pick_images_first_of_each_class():
    np.testing.assert_array_equal(cli._pick_images(np.array([3, 0, 1, 0, 2]), 3), [1, 2, 4])


@pytest.mark.parametrize("q", [98.0, 90.0, 50.0])
def test_kept_units_match_what_rectgrad_keeps(q):
    # independent reference: the engine itself. On n distinct positive ReLU inputs with unit
    # gradient, a * R = x, and rectgrad passes the gradient of exactly the units it keeps.
    import jax
    import jax.numpy as jnp

    import jaxattr as ja

    kept = {}
    for n in (2048, 1024, 256):
        x = jnp.arange(1, n + 1, dtype=jnp.float32) / n
        g = ja.rectgrad(lambda x: jnp.sum(jax.nn.relu(x)), q=q)(x)
        kept[n] = int(np.count_nonzero(np.asarray(g)))
    sizes = [8 * 8 * 32, 8 * 8 * 32, 4 * 4 * 64, 4 * 4 * 64, 256]
    assert cli._kept(CifarCNN(), q) == "/".join(str(kept[n]) for n in sizes)


def test_kept_units_use_tf_nearest_not_numpy_nearest():
    # q=50 on 2048 units: (n-1)(1-q/100) = 1023.5 rounds half to even -> 1024 kept (TF, the
    # engine); numpy's percentile(method="nearest") would keep 1023
    assert cli._kept(CifarCNN(), 50.0) == "1024/1024/512/512/128"


# ------------------------------------------------------------------------------------ explain

SCORE_MODULE = """
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

def score(x, y):
    return jnp.tanh(x * jnp.arange(1.0, 4.0))[y]

def total(x):
    return jnp.sum(jnp.sin(x))

def relu_score(x, y):
    return (jnp.maximum(x * jnp.arange(1.0, 4.0), 0.0) ** 2 + x)[y] + jnp.sum(jax.nn.relu(x))

_R = np.random.default_rng(7)
K = jnp.asarray(_R.normal(size=(3, 3, 1, 4)), jnp.float32)
W = jnp.asarray(_R.normal(size=(36, 8)), jnp.float32)
V = jnp.asarray(_R.normal(size=(8, 3)), jnp.float32)

def conv_score(x, y):  # x (6, 6, 1): SAME conv, ReLU, 2x2 max-pool, dense, raw max(., 0), dense
    h = jax.lax.conv_general_dilated(x[None], K, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = jax.nn.relu(checkpoint_name(h, "conv"))
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return (jnp.maximum(h.reshape(-1) @ W, 0.0) @ V)[y]

not_a_function = 3
"""


@pytest.fixture
def explain_dir(tmp_path, monkeypatch):
    (tmp_path / "scoremod_cli.py").write_text(SCORE_MODULE)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3)).astype(np.float32)
    y = (np.arange(9) % 3).astype(np.int32)
    np.save("x.npy", x)
    np.save("y.npy", y)
    np.savez("xy.npz", x=x, y=y)
    np.save("yfloat.npy", y.astype(np.float32))
    (tmp_path / "data.csv").write_text("1,2,3\n")
    (tmp_path / "text.npy").write_text("not numpy")
    np.save("objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return x, y


def _explain(argv, capsys):
    rc = cli.main(["explain", *argv, "--no-progress"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_explain_labels_from_npy_and_npz(explain_dir, capsys):
    x, y = explain_dir
    c = np.arange(1.0, 4.0)
    z = np.tanh(x * c)
    expected = np.zeros_like(x)
    expected[np.arange(9), y] = ((1 - z**2) * c)[np.arange(9), y]  # d tanh(c_y x_y) / dx
    for data, out in (("x.npy,y.npy", "o1"), ("xy.npz", "o2")):
        rc, text, err = _explain(["scoremod_cli:score", data, "--method", "saliency",
                                  "--out", out, "--batch-size", "4"], capsys)
        assert rc == 0, err
        assert "explained 9 examples with saliency" in text and f"(9, 3) float32 in {out}" in text
        np.testing.assert_allclose(np.load(f"{out}/attribution.npy"), expected, rtol=1e-5,
                                   atol=1e-6)
    # the same command again finds the run complete: no error, nothing changes
    before = np.load("o1/attribution.npy")
    rc, _, _ = _explain(["scoremod_cli:score", "x.npy,y.npy", "--method", "saliency", "--out",
                         "o1", "--batch-size", "4"], capsys)
    assert rc == 0
    np.testing.assert_array_equal(np.load("o1/attribution.npy"), before)


def test_explain_noise_method_uses_the_key(explain_dir, capsys):
    import jax
    import jax.numpy as jnp

    import jaxattr as ja

    x, _ = explain_dir
    rc, _, err = _explain(["scoremod_cli:total", "x.npy", "--method", "smoothgrad", "--n", "4",
                           "--key", "5", "--out", "sg", "--batch-size", "4"], capsys)
    assert rc == 0, err
    sg = ja.smoothgrad(ja.saliency(lambda x: jnp.sum(jnp.sin(x))), sigma=0.15, n=4)
    key = jax.random.key(5)
    expected = np.stack([sg(x[i], jax.random.fold_in(key, i)) for i in range(9)])
    np.testing.assert_allclose(np.load("sg/attribution.npy"), expected, rtol=1e-5, atol=1e-6)
    rc, _, err = _explain(["scoremod_cli:total", "x.npy", "--method", "smoothgrad", "--n", "4",
                           "--key", "6", "--out", "sg", "--batch-size", "4"], capsys)
    assert rc == 2 and "holds another run: --key (another seed, or a seed given/omitted)" in err
    rc, _, err = _explain(["scoremod_cli:total", "x.npy", "--method", "smoothgrad", "--n", "5",
                           "--key", "5", "--out", "sg", "--batch-size", "4"], capsys)
    assert rc == 2 and ("holds another run: MODULE:FUNCTION, --method or a method option (the "
                        "traced attribution function or its constants differ)") in err, err
    assert "attr_fn" not in err and "overwrite=True" not in err and "Pass --overwrite" in err


def test_explain_rectgrad_with_labels(explain_dir, capsys):
    import jaxattr as ja

    x, y = explain_dir
    rc, _, err = _explain(["scoremod_cli:relu_score", "x.npy,y.npy", "--method", "rectgrad",
                           "--q", "50", "--out", "rg", "--batch-size", "4"], capsys)
    assert rc == 0, err
    import scoremod_cli

    rg = ja.rectgrad(scoremod_cli.relu_score, q=50.0)
    expected = np.stack([rg(x[i], y[i]) for i in range(9)])
    np.testing.assert_allclose(np.load("rg/attribution.npy"), expected, rtol=1e-6)
    assert np.count_nonzero(expected) > 0


def _conv_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6, 6, 1)).astype(np.float32)
    y = (np.arange(5) % 3).astype(np.int32)
    np.save("img.npy", x)
    np.save("lab.npy", y)
    return x, y


def _cli_maps(capsys, method, *flags, out):
    rc, _, err = _explain(["scoremod_cli:conv_score", "img.npy,lab.npy", "--method", method,
                           *flags, "--out", out], capsys)
    assert rc == 0, err
    return np.load(f"{out}/attribution.npy")


HAS_RAW_MAX = "raw_max" in inspect.signature(jaxattr.rectgrad).parameters
needs_raw_max = pytest.mark.skipif(not HAS_RAW_MAX, reason="ja.rectgrad has no raw_max yet")


class _Built(Exception):
    pass


@pytest.mark.parametrize(
    ("method", "flags", "transform", "kwargs"),
    [
        ("rectgrad", [], "rectgrad", {"q": 98.0}),
        ("rectgrad", ["--q", "50", "--maxpool", "prr", "--padding-trick"], "rectgrad",
         {"q": 50.0, "maxpool": "prr", "padding_trick": True}),  # the official rectgradprr
        ("rectgrad", ["--tau", "0", "--padding-trick"], "rectgrad",
         {"tau": 0.0, "padding_trick": True}),  # rectgradconst; tau=0 is not dropped as falsy
        ("rectgrad_x_input", ["--tau", "0.5", "--maxpool", "winner"], "rectgrad",
         {"tau": 0.5, "maxpool": "winner"}),
        pytest.param("rectgrad", ["--raw-max"], "rectgrad", {"q": 98.0, "raw_max": True},
                     marks=needs_raw_max),
        pytest.param("guided", ["--raw-max"], "guided_backprop", {"raw_max": True},
                     marks=needs_raw_max),
        pytest.param("deconvnet", ["--raw-max"], "deconvnet", {"raw_max": True},
                     marks=needs_raw_max),
        ("guided", [], "guided_backprop", {}),
        ("integrated_gradients", ["--steps", "7"], "integrated_gradients", {"steps": 7}),
        ("vargrad", ["--sigma", "0.3"], "vargrad", {"sigma": 0.3, "n": 50}),
        ("lrp", ["--composite", "attn_lrp"], "lrp", {"composite": "attn_lrp"}),
        ("lrp", [], "lrp", {"composite": "epsilon_plus_flat"}),
        ("deeplift", [], "deeplift", {}),
    ],
)
def test_explain_method_flags_reach_the_transform(explain_dir, capsys, monkeypatch, method,
                                                  flags, transform, kwargs):
    calls = []
    real = getattr(jaxattr, transform)

    def spy(f, **kw):
        calls.append(kw)
        return real(f, **kw)  # built for real: a keyword the transform lacks would fail here

    def stop(attr, *args, **kw):
        raise _Built

    monkeypatch.setattr(jaxattr, transform, spy)
    monkeypatch.setattr(jaxattr, "explain_dataset", stop)
    with pytest.raises(_Built):
        _explain(["scoremod_cli:relu_score", "x.npy,y.npy", "--method", method, *flags,
                  "--out", "o"], capsys)
    assert calls == [kwargs]


def test_explain_lrp_and_deeplift_match_the_python_api(explain_dir, capsys):
    import scoremod_cli

    x, y = _conv_data()
    got = _cli_maps(capsys, "lrp", "--composite", "epsilon_plus", out="lrp")
    g = jaxattr.lrp(scoremod_cli.conv_score, "epsilon_plus")
    np.testing.assert_allclose(got, np.stack([g(x[i], y[i]) for i in range(5)]), rtol=1e-5,
                               atol=1e-7)
    got = _cli_maps(capsys, "deeplift", out="dl")
    g = jaxattr.deeplift(scoremod_cli.conv_score)
    np.testing.assert_allclose(got, np.stack([g(x[i], y[i]) for i in range(5)]), rtol=1e-5,
                               atol=1e-7)


def test_explain_layer_methods_match_the_python_api(explain_dir, capsys):
    import scoremod_cli

    x, y = _conv_data()
    for method, flags, build in [
        ("grad_cam", ["--at", "conv"], lambda f: jaxattr.grad_cam(f, "conv")),
        ("layer_integrated_gradients", ["--at", "conv", "--steps", "4"],
         lambda f: jaxattr.layer_integrated_gradients(f, "conv", steps=4)),
    ]:
        got = _cli_maps(capsys, method, *flags, out=method)
        g = build(scoremod_cli.conv_score)
        np.testing.assert_allclose(got, np.stack([g(x[i], y[i]) for i in range(5)]), rtol=1e-5,
                                   atol=1e-7)
    rc, _, err = _explain(["scoremod_cli:conv_score", "img.npy,lab.npy", "--method", "grad_cam",
                           "--out", "nope"], capsys)
    assert rc == 2 and "--at is required" in err
    rc, _, err = _explain(["scoremod_cli:conv_score", "img.npy,lab.npy", "--method", "grad_cam",
                           "--at", "conv9", "--out", "nope"], capsys)
    assert rc == 2 and "names no module and no checkpoint_name" in err and "conv" in err


def test_explain_rectgrad_official_variant_matches_the_python_api(explain_dir, capsys):
    import jax

    import jaxattr as ja

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6, 6, 1)).astype(np.float32)
    y = (np.arange(5) % 3).astype(np.int32)
    np.save("img.npy", x)
    np.save("lab.npy", y)
    import scoremod_cli

    # dropping any one option changes this score's map (SAME conv, max-pool, raw max(., 0))
    kw = dict(q=50.0, maxpool="prr", padding_trick=True) | ({"raw_max": True} if HAS_RAW_MAX
                                                            else {})
    want = np.asarray(jax.vmap(ja.rectgrad(scoremod_cli.conv_score, **kw))(x, y))
    rc, _, err = _explain(["scoremod_cli:conv_score", "img.npy,lab.npy", "--method", "rectgrad",
                           "--q", "50", "--maxpool", "prr", "--padding-trick",
                           *(["--raw-max"] if HAS_RAW_MAX else []), "--out", "prr"], capsys)
    assert rc == 0, err
    np.testing.assert_allclose(np.load("prr/attribution.npy"), want, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(want) > 0


@pytest.mark.parametrize(
    ("method", "flags", "match"),
    [
        ("saliency", ["--q", "50"], r"--q does not apply to --method saliency; expected it only "
                                    r"with --method rectgrad or rectgrad_x_input$"),
        ("guided", ["--tau", "0"], r"--tau does not apply to --method guided"),
        ("guided", ["--maxpool", "prr"], r"--maxpool does not apply to --method guided"),
        ("deconvnet", ["--padding-trick"], r"--padding-trick does not apply to --method "
                                           r"deconvnet"),
        ("saliency", ["--raw-max"], r"--raw-max does not apply to --method saliency; expected "
                                    r"it only with --method deconvnet or guided or rectgrad or "
                                    r"rectgrad_x_input$"),
        ("smoothgrad", ["--steps", "4"], r"--steps does not apply to --method smoothgrad; "
                                         r"expected it only with --method integrated_gradients "
                                         r"or layer_integrated_gradients$"),
        ("saliency", ["--at", "conv"], r"--at does not apply to --method saliency"),
        ("integrated_gradients", ["--n", "4"], r"--n does not apply to --method "
                                               r"integrated_gradients"),
        ("rectgrad", ["--sigma", "0.1"], r"--sigma does not apply to --method rectgrad"),
        ("saliency", ["--composite", "epsilon_plus"], r"--composite does not apply to --method "
                                                      r"saliency; expected it only with --method "
                                                      r"lrp$"),
        ("rectgrad", ["--tau", "nan"], r"rectgrad: --tau=nan is not finite"),
    ],
)
def test_explain_method_options_only_with_their_methods(explain_dir, capsys, method, flags,
                                                        match):
    rc, _, err = _explain(["scoremod_cli:relu_score", "x.npy,y.npy", "--method", method,
                           *flags, "--out", "o"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert re.match("jaxattr explain: error: " + match, err.rstrip("\n")), err
    assert not os.path.exists("o")  # refused before any compute


def test_explain_q_and_tau_are_exclusive(explain_dir, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "scoremod_cli:relu_score", "x.npy,y.npy", "--method", "rectgrad",
                  "--q", "50", "--tau", "0", "--out", "o"])
    assert e.value.code == 2
    assert "argument --tau: not allowed with argument --q" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["scoremod_cli", "x.npy"], r"MODULE:FUNCTION='scoremod_cli' has no ':'"),
        (["nosuchmodule_xyz:f", "x.npy"], r"cannot import module 'nosuchmodule_xyz'"),
        (["scoremod_cli:nope", "x.npy"], r"module 'scoremod_cli' has no attribute 'nope'"),
        (["scoremod_cli:not_a_function", "x.npy"],
         r"scoremod_cli:not_a_function is not a function \(it has type int\)"),
        (["scoremod_cli:total", "missing.npy"], r"DATA file 'missing.npy' does not exist"),
        (["scoremod_cli:total", "data.csv"], r"DATA='data.csv': 'data.csv' is not a \.npy or "
         r"\.npz file; expected X\.npy, X\.npy,Y\.npy,\.\.\. \(one \.npy per argument\) or one "
         r"\.npz$"),
        (["scoremod_cli:total", "xy.npz,y.npy"],
         r"DATA='xy.npz,y.npy': 'xy.npz' is a \.npz in a list; expected"),
        (["scoremod_cli:total", "text.npy"], r"DATA='text.npy': 'text.npy' is not a \.npy file "
         r"\(no NUMPY header\); expected X\.npy"),
        (["scoremod_cli:total", "objects.npy"], r"DATA='objects.npy' cannot be read by "
         r"numpy.load \(.*\); expected .* of numeric arrays \(no pickled objects\)"),
        (["scoremod_cli:score", "x.npy,yfloat.npy"],
         r"DATA file 'yfloat.npy' \(dtype float32\) holds floats that scoremod_cli:score uses "
         r"as an index \(labels\); expected integer labels\. Save them with an int dtype"),
        # the command line's flags, not the Python API's keywords (overwrite=True, batch_size)
        (["scoremod_cli:total", "x.npy", "--batch-size", "4"],
         r"--out='.*' holds another run: --batch-size \(32 -> 4\); expected the same run to "
         r"resume\. Pass --overwrite to start over, or use another --out directory$"),
    ],
)
def test_explain_errors_exit_2_with_one_line(explain_dir, capsys, argv, match):
    cli.main(["explain", "scoremod_cli:total", "x.npy", "--method", "saliency", "--out", "o",
              "--no-progress"])
    rc, _, err = _explain([*argv, "--method", "saliency", "--out", "o"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search("^jaxattr explain: error: " + match, lines[0]), err
    assert "overwrite=True" not in err and "Traceback" not in err


def test_explain_out_that_is_a_file(explain_dir, capsys):
    rc, _, err = _explain(["scoremod_cli:total", "x.npy", "--method", "saliency", "--out",
                           "x.npy"], capsys)
    assert rc == 2 and re.fullmatch(r"jaxattr explain: error: --out='.*x.npy' is an existing "
                                    r"file, not a directory; expected a directory .* Choose "
                                    r"another --out directory\n", err), err


def test_explain_bad_options_exit_2(explain_dir, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "scoremod_cli:total", "x.npy", "--method", "lime", "--out", "o"])
    assert e.value.code == 2 and "invalid choice: 'lime'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ plotting


def test_to_2d_sums_channels():
    a = np.arange(12.0).reshape(2, 2, 3)
    np.testing.assert_array_equal(to_2d(a), [[3.0, 12.0], [21.0, 30.0]])
    np.testing.assert_array_equal(to_2d(a[..., 0]), a[..., 0])
    with pytest.raises(ValueError, match=r"attr.shape=\(2,\) must be \(H, W\) or \(H, W, C\)"):
        to_2d(np.ones(2))


def test_color_limits():
    a = np.array([[0.0, -1.0], [2.0, -4.0]])  # |a| = 0, 1, 2, 4
    assert color_limits(a, signed=True, clip_percentile=100) == (-4.0, 4.0)
    assert color_limits(a, signed=False, clip_percentile=100) == (0.0, 4.0)
    # 50th percentile of (0, 1, 2, 4), linear interpolation: (1 + 2) / 2
    assert color_limits(a, signed=True, clip_percentile=50) == (-1.5, 1.5)
    assert color_limits(np.zeros((2, 2)), signed=True) == (-1.0, 1.0)
    for bad in (0.0, 101.0):
        with pytest.raises(ValueError, match=rf"clip_percentile={bad} must be in \(0, 100\]"):
            color_limits(a, signed=True, clip_percentile=bad)


def test_heatmap_signed_and_unsigned():
    ax = Figure().subplots()
    a = np.array([[-2.0, 1.0], [0.5, 0.0]])[..., None]
    im = heatmap(ax, a, clip_percentile=100, title="t")
    assert im.get_clim() == (-2.0, 2.0) and im.get_cmap().name == "RdBu_r"
    assert ax.get_title() == "t"
    im2 = heatmap(Figure().subplots(), a, signed=False, clip_percentile=100)
    assert im2.get_clim() == (0.0, 2.0) and im2.get_cmap().name == "inferno"
    np.testing.assert_array_equal(im2.get_array(), np.abs(a[..., 0]))
    im3 = heatmap(Figure().subplots(), np.abs(a), clip_percentile=100, colorbar=True)
    assert im3.get_clim() == (0.0, 2.0)  # auto: no negative value -> unsigned
    assert len(im3.figure.axes) == 2


def test_overlay_opacity_follows_magnitude():
    ax = Figure().subplots()
    attr = np.diag([4.0, -2.0, 0.0, 1.0])
    im = overlay(ax, np.full((4, 4, 1), 0.5), attr, alpha=0.5, clip_percentile=100)
    rgba = im.get_array()
    np.testing.assert_allclose(np.diag(rgba[..., 3]), [0.5, 0.25, 0.0, 0.125])
    assert np.all(rgba[..., 3][~np.eye(4, dtype=bool)] == 0)
    # signed: positive is red-ish, negative blue-ish in RdBu_r
    assert rgba[0, 0, 0] > rgba[0, 0, 2] and rgba[1, 1, 2] > rgba[1, 1, 0]
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0, 1\]"):
        overlay(ax, np.zeros((4, 4)), attr, alpha=1.5)
    with pytest.raises(ValueError, match=r"attr H, W = \(4, 4\) must match image H, W = \(3, 3\)"):
        overlay(ax, np.zeros((3, 3)), attr)
    with pytest.raises(ValueError, match=r"image.shape=\(4, 4, 2\) must be"):
        overlay(ax, np.zeros((4, 4, 2)), attr)


def test_method_grid_layout():
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1))
    maps = {"saliency": np.ones((3, 8, 8, 1)), "a very long method name": -np.ones((3, 8, 8))}
    fig = method_grid(x, maps, row_labels=["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 3
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles[0] == "input" and titles[1] == "saliency"
    assert titles[2].replace("\n", " ") == "a very long method name" and "\n" in titles[2]
    assert [fig.axes[3 * i].get_ylabel() for i in range(3)] == ["a", "b", "c"]
    one = {k: v[:1] for k, v in maps.items()}
    assert len(method_grid(x[:1], one, show_overlay=True).axes) == 3
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("images", "maps", "kw", "match"),
    [
        (np.zeros((2, 8, 8, 1)), {}, {}, r"maps_by_method is empty"),
        (np.zeros((2, 8, 8, 1)), {"sg": np.zeros((3, 8, 8))}, {},
         r"maps_by_method\['sg'\].shape=\(3, 8, 8\) must start with \(N, H, W\)=\(2, 8, 8\)"),
        (np.zeros((8, 8)), {"sg": np.zeros((8, 8))}, {},
         r"images.shape=\(8, 8\) must be \(N, H, W\) or \(N, H, W, C\)"),
        (np.zeros((2, 8, 8)), {"sg": np.zeros((2, 8, 8))}, {"row_labels": ["a"]},
         r"len\(row_labels\)=1 must equal the number of images 2"),
    ],
)
def test_method_grid_errors(images, maps, kw, match):
    with pytest.raises(ValueError, match=match):
        method_grid(images, maps, **kw)
