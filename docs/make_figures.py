"""Make the figures of the documentation site: ``docs/figures/*.png``.

Run from the repository root::

    python docs/make_figures.py                       # every figure, about 1-2 min on 2 CPU cores
    python docs/make_figures.py --only theory,layer   # some of them

The PNGs are committed, so the site builds without running this script; rerun it (and commit
the result) when a method, the demo or a plot changes. Everything is deterministic: fixed data
seeds and PRNG keys, float32 (x64 is never enabled globally; ``jaxattr.slowroll`` enables it
locally, as it always does).

What it writes:

- ``methods.png``: the method-by-example grid of ``jaxattr demo``: the maps of
  :func:`jaxattr.demo.run_demo` at its defaults on shapes (same model, images and keys), drawn
  with its plotting calls in a narrower figure;
- ``backprop.png``, ``noise.png``, ``path.png``, ``relevance.png``, ``layer.png``: one figure per
  method family, from the same trained model and four of the same test images;
- ``theory.png``: SmoothGrad and VarGrad by Monte Carlo against their series (WHI 2018) as a
  function of sigma, on a small sine network with closed forms;
- ``slowroll.png``: the slow-roll power spectrum at orders 0-3 against the numerical
  Mukhanov-Sasaki solution, and the error of each order.

The model is the RectGrad paper's CIFAR CNN at half width, trained once per run on procedural
shapes with a class-independent distractor patch, exactly as ``jaxattr demo`` trains it (same
data, seed, steps, batch and learning rate, hence the same parameters).
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import jaxattr as ja  # noqa: E402
from jaxattr.demo import COLOUR_SCALE  # noqa: E402

OUT = Path(__file__).resolve().parent / "figures"
DPI = 100
WIDTH = 9.5  # inches, the widest figure
SEED = 0
N_IMAGES = 6  # rows of methods.png: the demo's default (one test image per class)
FAMILY_ROWS = 4  # rows of the method-family figures: the first four of those images
STEPS = 300  # the demo's Adam steps on shapes (batch 32, learning rate 3e-3)
Q = 98.0  # RectGrad percentile, the demo's (and the paper's) on 32x32 images
RECTGRAD = {"maxpool": "prr", "padding_trick": True}  # the demo's RectGrad options on shapes
SG_N, SG_SIGMA = 50, 0.15  # noise samples and relative noise level, as in the demo
OUTLINE = "outline: object (green), distractor patch (orange)"

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", flush=True)


def save(fig: Figure, name: str, out: Path) -> None:
    """Writes ``fig`` as a 256-colour PNG (median cut, no dithering): indistinguishable from
    the 24-bit rendering at this size, and 2-3x smaller."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    image = Image.open(buf).convert("RGB")
    image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = out / name
    image.save(path, optimize=True)
    log(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


# ---------------------------------------------------------------------------------------------
# The trained model and the images it explains.


@dataclass
class Setup:
    """The trained model, its score and the explained test images (with ground truth)."""

    f: Callable  # f(x, label): the logit of ``label`` for one image, as in the demo
    x: np.ndarray  # (N_IMAGES, 32, 32, 3)
    y: np.ndarray  # true labels
    pred: np.ndarray  # predicted labels
    keys: jax.Array  # one noise key per image, as in the demo
    obj: np.ndarray  # object masks
    dis: np.ndarray  # distractor masks
    classes: list[str]
    accuracy: float


def train_model() -> Setup:
    """Trains the demo's model on the demo's data (``run_demo`` at its defaults on shapes)."""
    from jaxattr.data import make_shapes
    from jaxattr.models import CifarCNN, accuracy, train

    tr = make_shapes(1500, seed=2 * SEED, distractor=True)
    te = make_shapes(200, seed=2 * SEED + 1, distractor=True)
    classes = list(te.class_names)
    model = CifarCNN(features=(16, 16, 32, 32), dense=128, num_classes=len(classes))
    train_key, noise_key = jax.random.split(jax.random.key(SEED))
    log(f"training CifarCNN (half width) for {STEPS} Adam steps on {len(tr.labels)} shapes")
    params = train(model, (tr.images, tr.labels), key=train_key, steps=STEPS, batch_size=32)
    acc = accuracy(model, params, te.images, te.labels)
    log(f"trained; test accuracy {acc:.3f}")

    idx = np.array([int(np.flatnonzero(te.labels == c)[0]) for c in range(N_IMAGES)])
    x = np.asarray(te.images[idx], np.float32)

    def f(xi, yi):
        return model.apply(params, xi[None])[0, yi]

    return Setup(f=f, x=x, y=np.asarray(te.labels[idx]),
                 pred=np.asarray(model.apply(params, x)).argmax(axis=-1),
                 keys=jax.random.split(noise_key, N_IMAGES),
                 obj=np.asarray(te.object_mask[idx]), dis=np.asarray(te.distractor_mask[idx]),
                 classes=classes, accuracy=acc)


def blurred(x: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Each image blurred spatially by a Gaussian of ``sigma`` pixels (an IG baseline)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect").astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Attribution maps: one table, each map computed once per run and shared by the figures.
#
# Every entry builds ``m(x, y, key, blur) -> map`` for ONE image (its label, its noise key, its
# blurred copy); it is batched with ``jax.vmap`` and compiled with ``jax.jit``, as in the demo.


def method_table(f: Callable) -> dict[str, Callable]:
    r = ja.relevance
    sal = ja.saliency(f)
    rect = ja.rectgrad(f, q=Q, **RECTGRAD)

    def ig(baseline):
        return lambda x, y, k, b: ja.integrated_gradients(f, baseline=baseline(x, b))(x, y)

    return {
        "saliency": lambda x, y, k, b: sal(x, y),
        "guided backprop": lambda x, y, k, b: ja.guided_backprop(f)(x, y),
        "deconvnet": lambda x, y, k, b: ja.deconvnet(f)(x, y),
        "rectgrad": lambda x, y, k, b: rect(x, y),
        "rectgrad x input": lambda x, y, k, b: ja.times_input(rect)(x, y),
        "smoothgrad": lambda x, y, k, b: ja.smoothgrad(sal, sigma=SG_SIGMA, n=SG_N)(x, k, y),
        "smoothgrad_sq": lambda x, y, k, b: ja.smoothgrad_sq(sal, sigma=SG_SIGMA, n=SG_N)(x, k, y),
        "vargrad": lambda x, y, k, b: ja.vargrad(sal, sigma=SG_SIGMA, n=SG_N)(x, k, y),
        "grad x input": lambda x, y, k, b: ja.times_input(sal)(x, y),
        "ig zero": ig(lambda x, b: None),
        "ig blur": ig(lambda x, b: b),
        "ig mean": ig(lambda x, b: jnp.broadcast_to(x.mean(axis=(0, 1)), x.shape)),
        "lrp epsilon plus flat": lambda x, y, k, b: ja.lrp(f, "epsilon_plus_flat")(x, y),
        "lrp alpha2 beta1": lambda x, y, k, b: ja.lrp(f, "epsilon_alpha2_beta1")(x, y),
        "lrp z+": lambda x, y, k, b: ja.lrp(f, r.Composite.of(r.ZPlus()))(x, y),
        "lrp gamma box": lambda x, y, k, b: ja.lrp(f, r.epsilon_gamma_box(0.0, 1.0))(x, y),
        "deeplift": lambda x, y, k, b: ja.deeplift(f)(x, y),
        "grad-cam conv4": lambda x, y, k, b: ja.grad_cam(f, "conv4")(x, y),
        "grad-cam conv4 signed": lambda x, y, k, b: ja.grad_cam(f, "conv4", relu=False)(x, y),
        "grad-cam++ conv4": lambda x, y, k, b: ja.grad_cam_pp(f, "conv4")(x, y),
        "grad-cam conv3": lambda x, y, k, b: ja.grad_cam(f, "conv3")(x, y),
        "guided grad-cam conv4": lambda x, y, k, b: ja.guided_grad_cam(f, "conv4")(x, y),
    }


class Maps:
    """The maps of :func:`method_table` on the setup's images, computed on first use."""

    def __init__(self, s: Setup):
        self.s = s
        self.table = method_table(s.f)
        self.blur = blurred(s.x)
        self.cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.cache:
            t = time.perf_counter()
            g = jax.jit(jax.vmap(self.table[name]))
            out = g(jnp.asarray(self.s.x), jnp.asarray(self.s.y), self.s.keys, self.blur)
            self.cache[name] = np.asarray(jax.block_until_ready(out))
            log(f"  {name}: {time.perf_counter() - t:.1f} s (compile + run)")
        return self.cache[name]


# ---------------------------------------------------------------------------------------------
# Method-by-example grids.

# The home page figure: the demo's columns and column titles.
DEMO_COLUMNS = [
    ("saliency", "saliency"),
    ("guided backprop", "guided backprop"),
    ("deconvnet", "deconvnet"),
    (f"rectgrad q={Q:g} x input", "rectgrad x input"),
    (f"rectgrad q={Q:g}", "rectgrad"),
    (f"smoothgrad n={SG_N}", "smoothgrad"),
    ("lrp epsilon plus flat", "lrp epsilon plus flat"),
    ("deeplift (zero baseline)", "deeplift"),
    ("grad-cam conv4", "grad-cam conv4"),
    ("guided grad-cam conv4", "guided grad-cam conv4"),
]

# name -> (title line, [(column title, method key)])
FAMILIES = {
    "backprop": ("Modified backprop: the gradient and its rectified variants", [
        ("gradient (saliency)", "saliency"),
        ("guided backprop", "guided backprop"),
        ("deconvnet", "deconvnet"),
        (f"rectgrad q={Q:g}", "rectgrad"),
        (f"rectgrad q={Q:g} x input", "rectgrad x input"),
    ]),
    "noise": (f"Noise transforms of the gradient: n={SG_N} samples, sigma={SG_SIGMA:g} x the "
              "image's range, fixed keys", [
        ("gradient (no noise)", "saliency"),
        ("smoothgrad", "smoothgrad"),
        ("smoothgrad²", "smoothgrad_sq"),
        ("vargrad", "vargrad"),
    ]),
    "path": ("Gradient x input and Integrated Gradients (50 Gauss-Legendre nodes) from three "
             "baselines", [
        ("gradient x input", "grad x input"),
        ("IG, black baseline", "ig zero"),
        ("IG, blurred baseline (Gaussian, 3 px)", "ig blur"),
        ("IG, mean-colour baseline", "ig mean"),
    ]),
    "relevance": ("Relevance: LRP composites and DeepLIFT (rescale rule, zero baseline)", [
        ("LRP epsilon-plus-flat", "lrp epsilon plus flat"),
        ("LRP epsilon-alpha2-beta1", "lrp alpha2 beta1"),
        ("LRP z+ (every layer)", "lrp z+"),
        ("LRP epsilon-gamma-box, box [0, 1]", "lrp gamma box"),
        ("DeepLIFT", "deeplift"),
    ]),
    "layer": ("Layer methods: class activation maps (CAM), upsampled to the image; a blank "
              "panel: a CAM <= 0 everywhere, removed by its ReLU", [
        ("grad-cam conv4", "grad-cam conv4"),
        ("grad-cam conv4 without its ReLU", "grad-cam conv4 signed"),
        ("grad-cam++ conv4", "grad-cam++ conv4"),
        ("grad-cam conv3", "grad-cam conv3"),
        ("guided grad-cam conv4", "guided grad-cam conv4"),
    ]),
}


def grid_figure(s: Setup, maps: Maps, columns: list[tuple[str, str]], title: str,
                rows: int, width: float = WIDTH) -> Figure:
    """The demo's grid: input then one column per method, signed colours, outlines drawn."""
    from jaxattr.plot.attribution import method_grid

    ncols = 1 + len(columns)
    cell = min(1.8, width / ncols)
    fontsize = 7 if cell < 1.2 else 8.5
    fig = method_grid(
        s.x[:rows], {t: maps[k][:rows] for t, k in columns}, signed=True, cell_size=cell,
        row_labels=[f"{s.classes[a]}\n(pred {s.classes[b]})"
                    for a, b in zip(s.y[:rows], s.pred[:rows], strict=True)])
    chars = int(cell * 72 / (0.55 * fontsize))  # characters that fit above one cell
    for j, name in enumerate(["input", *(t for t, _ in columns)]):
        fig.axes[j].set_title(textwrap.fill(name, chars, break_long_words=False),
                              fontsize=fontsize)
    for i in range(rows):
        fig.axes[i * ncols].yaxis.label.set_fontsize(fontsize)
        for j in range(ncols):
            ax = fig.axes[i * ncols + j]
            ax.contour(s.obj[i].astype(float), levels=[0.5], colors="limegreen", linewidths=0.8)
            ax.contour(s.dis[i].astype(float), levels=[0.5], colors="darkorange", linewidths=0.8)
    fig.suptitle(f"{title}\n{COLOUR_SCALE};\n{OUTLINE}", fontsize=fontsize + 0.5)
    return fig


def make_methods(s: Setup, maps: Maps, out: Path) -> None:
    title = (f"jaxattr demo: shapes, CifarCNN (half width), test accuracy {s.accuracy:.2f}")
    save(grid_figure(s, maps, DEMO_COLUMNS, title, N_IMAGES, width=10.0), "methods.png", out)


def make_family(name: str, s: Setup, maps: Maps, out: Path) -> None:
    title, columns = FAMILIES[name]
    title += f"\nCifarCNN (half width) trained on shapes, test accuracy {s.accuracy:.2f}"
    save(grid_figure(s, maps, columns, title, FAMILY_ROWS), f"{name}.png", out)


# ---------------------------------------------------------------------------------------------
# Theory: SmoothGrad and VarGrad as series in sigma (WHI 2018), against Monte Carlo.


def sine_net():
    """The theory notebook's 3-input sine network (closed-form SmoothGrad and VarGrad)."""
    from jaxattr import theory as T

    return T.sine_network(jnp.array([1.0, -0.8, 0.6]),
                          jnp.array([[0.9, -0.5, 0.3], [0.2, 0.8, -0.6], [-0.4, 0.3, 1.0]]),
                          jnp.array([0.3, -0.2, 0.5]))


def series_coefficients(f: Callable, x: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """The series as polynomials in sigma^2: rows = the terms' coefficients at x.

    ``sg[k]`` multiplies ``sigma^(2k)`` in SmoothGrad (k = 0, 1, 2) and ``vg[k]`` multiplies
    ``sigma^(2k + 2)`` in VarGrad (k = 0, 1), read off the series at sigma = 1.
    """
    from jaxattr import theory as T

    sg = np.stack([np.asarray(jax.jit(T.smoothgrad_series(f, 1.0, order=k))(x))
                   for k in range(3)])
    vg = np.stack([np.asarray(jax.jit(T.vargrad_series(f, 1.0, order=k))(x)) for k in (1, 2)])
    return np.diff(sg, axis=0, prepend=0.0), np.diff(vg, axis=0, prepend=0.0)


def monte_carlo(f: Callable, x: jax.Array, sigmas: np.ndarray, *, n: int, batches: int):
    """SmoothGrad and VarGrad of ``grad f`` by Monte Carlo at each sigma (absolute), with
    standard errors from the spread of ``batches`` independent estimates of ``n`` samples."""

    @jax.jit
    def estimates(sigma, keys):  # sigma traced: one compilation for every sigma
        sg = ja.smoothgrad(jax.grad(f), sigma=sigma, n=n, relative=False)
        vg = ja.vargrad(jax.grad(f), sigma=sigma, n=n, relative=False)
        return jax.vmap(sg, in_axes=(None, 0))(x, keys), jax.vmap(vg, in_axes=(None, 0))(x, keys)

    out = {"sg": [], "sg_se": [], "vg": [], "vg_se": []}
    for i, s in enumerate(sigmas):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(1), i), batches)
        for stat, est in zip(("sg", "vg"), estimates(jnp.float32(s), keys), strict=True):
            est = np.asarray(est)
            out[stat].append(est.mean(axis=0))
            out[f"{stat}_se"].append(est.std(axis=0, ddof=1) / np.sqrt(batches))
    return {k: np.asarray(v) for k, v in out.items()}


def make_theory(out: Path) -> None:
    from jaxattr.plot.series import error_vs_sigma

    net = sine_net()
    x = jnp.array([0.2, -0.3, 0.1])
    sg_c, vg_c = series_coefficients(net.f, x)
    grad = sg_c[0]
    sigmas = np.geomspace(0.1, 0.8, 8)
    fine = np.geomspace(0.08, 0.9, 60)[:, None]
    n, batches = 4000, 16
    mc = monte_carlo(net.f, x, sigmas, n=n, batches=batches)
    log(f"  theory Monte Carlo: {len(sigmas)} sigmas x {n * batches} samples")

    fig = Figure(figsize=(WIDTH, 3.6), layout="constrained")
    ax_sg, ax_vg, ax_err = fig.subplots(1, 3)
    for i in range(x.size):
        c = f"C{i}"
        ax_sg.errorbar(sigmas, mc["sg"][:, i] - grad[i], yerr=2 * mc["sg_se"][:, i], fmt="o",
                       ms=3, capsize=2, color=c, label=f"MC, i={i}")
        ax_sg.plot(fine, fine**2 * sg_c[1, i], "--", color=c, lw=1)
        ax_sg.plot(fine, fine**2 * sg_c[1, i] + fine**4 * sg_c[2, i], "-", color=c, lw=1)
        ax_vg.errorbar(sigmas, mc["vg"][:, i], yerr=2 * mc["vg_se"][:, i], fmt="o", ms=3,
                       capsize=2, color=c, label=f"MC, i={i}")
        ax_vg.plot(fine, fine**2 * vg_c[0, i], "-", color=c, lw=1)
    ax_sg.plot([], [], "k--", lw=1, label="(σ²/2) ∂ᵢΔf")
    ax_sg.plot([], [], "k-", lw=1, label="+ (σ⁴/8) ∂ᵢΔ²f")
    ax_sg.set(xlabel="sigma", ylabel="SmoothGrad$_i$ − ∂$_i$f",
              title="SmoothGrad − gradient")
    ax_vg.plot([], [], "k-", lw=1, label="σ² Σⱼ Hᵢⱼ²")
    ax_vg.set(xscale="log", yscale="log", xlabel="sigma", ylabel="VarGrad$_i$",
              title="VarGrad")
    for ax in (ax_sg, ax_vg):
        ax.legend(fontsize=7)

    exact_sg = np.stack([np.asarray(net.smoothgrad(x, float(s))) for s in sigmas])
    exact_vg = np.stack([np.asarray(net.vargrad(x, float(s))) for s in sigmas])
    s2 = sigmas[:, None] ** 2
    sg_k = np.cumsum(sg_c[None] * s2[..., None] ** np.arange(3)[None, :, None], axis=1)
    vg_k = np.cumsum(vg_c[None] * s2[..., None] ** np.arange(1, 3)[None, :, None], axis=1)
    errors = {f"SG, K={k}": np.linalg.norm(sg_k[:, k] - exact_sg, axis=-1) for k in range(3)}
    errors |= {f"VG, order {k + 1}": np.linalg.norm(vg_k[:, k] - exact_vg, axis=-1)
               for k in range(2)}
    error_vs_sigma(sigmas, errors, ax=ax_err)
    ax_err.set(ylabel="|series − closed form|", title="Series truncation error")
    for ax in (ax_vg, ax_err):
        ax.set_xticks([0.1, 0.2, 0.4, 0.8], labels=["0.1", "0.2", "0.4", "0.8"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_err.legend(fontsize=7)
    fig.suptitle("SmoothGrad and VarGrad as series in sigma (WHI 2018) on a 3-input sine network "
                 f"f = Σ c sin(w·x + b): Monte Carlo (n = {n * batches}, ±2 SE) vs series",
                 fontsize="small")
    save(fig, "theory.png", out)


# ---------------------------------------------------------------------------------------------
# Slow roll.


def make_slowroll(out: Path, n_k: int = 15) -> None:
    from jaxattr import slowroll as sr
    from jaxattr.plot.spectrum import power_spectra, spectrum_errors

    bg = sr.background(sr.monomial(2.0, 0.5), 17.0, efolds=60)
    n_star = float(bg.n_end) - 60
    k = sr.horizon_k(bg, np.linspace(n_star - 4, n_star + 4, n_k))
    p_ms = np.asarray(sr.mukhanov_sasaki(bg, k))
    spectra = {f"order {o}": np.asarray(sr.power_spectrum(bg, k, order=o)) for o in range(4)}
    log(f"  slow roll: background, Mukhanov-Sasaki and orders 0-3 at {n_k} wavenumbers")

    fig = Figure(figsize=(WIDTH, 3.6), layout="constrained")
    ax_p, ax_e = fig.subplots(1, 2)
    power_spectra(np.asarray(k), spectra, p_ms, ax=ax_p)
    spectrum_errors(np.asarray(k), spectra, p_ms, ax=ax_e)
    ax_p.set_title("P(k): slow roll at orders 0-3, Mukhanov-Sasaki dashed")
    ax_e.set_title(r"error of order $n$: $\propto \xi^{n+1}$")
    ax_p.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax_p.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    fig.suptitle("Slow-roll power spectrum of V = m²φ²/2 (m = 1, φ₀ = 17, Planck units), k within "
                 "±4 e-folds of horizon exit 60 e-folds before the end", fontsize="small")
    save(fig, "slowroll.png", out)


# ---------------------------------------------------------------------------------------------

FIGURES = ("methods", *FAMILIES, "theory", "slowroll")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(FIGURES),
                   help=f"comma-separated figures to make, from {', '.join(FIGURES)}")
    p.add_argument("--out", type=Path, default=OUT, help="output directory (docs/figures)")
    a = p.parse_args(argv)
    only = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    a.out.mkdir(parents=True, exist_ok=True)

    if any(n in only for n in ("methods", *FAMILIES)):
        s = train_model()
        maps = Maps(s)
        if "methods" in only:
            make_methods(s, maps, a.out)
        for name in FAMILIES:
            if name in only:
                make_family(name, s, maps, a.out)
    if "theory" in only:
        make_theory(a.out)
    if "slowroll" in only:
        make_slowroll(a.out)
    log(f"done: {', '.join(only)}")


if __name__ == "__main__":
    main(sys.argv[1:])
