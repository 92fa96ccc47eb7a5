"""The logic of ``jaxattr demo``: train a small CNN, explain a few images, and report.

:func:`run_demo` trains the RectGrad paper's CIFAR-10 CNN (Kim et al. 2019, arXiv:1902.04893) on
procedural shapes with a ground-truth object mask and a class-independent distractor patch
(:func:`jaxattr.data.make_shapes`) or on scikit-learn's 8x8 digits, explains a few test images
with saliency, Guided Backprop, DeconvNet, RectGrad (x input and alone) and SmoothGrad, and
writes into ``out``:

- ``methods.png``: the method-by-example grid, with a title that states the colour scale (red
  positive, blue negative, white 0; each panel scaled to the 99th percentile of its ``|map|``)
  and the outlines of the object (green) and of the distractor (orange) where ground truth exists;
- ``report.json``: metrics per method (total variation, Gini, share of ``|map|`` inside the object
  and on the distractor, pointing game, deletion AUC), timings per stage, versions, and the checks
  that ran with their outcome.

It prints one line per stage with the elapsed time (training reports every few seconds), so it is
never silent for long, and it checks its arguments (an unwritable ``out``, too many images)
before any training starts. About 40-90 s on 2 CPU cores at the default sizes.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from ._checks import check_bool, check_choice, check_int, check_real, fail, fail_type

__all__ = ["MAX_IMAGES", "METHODS", "run_demo"]

MAX_IMAGES = 10
"""Most images the figure holds (one row each)."""

METHODS = ("saliency", "guided backprop", "deconvnet", "rectgrad x input", "rectgrad",
           "smoothgrad", "lrp", "deeplift", "grad-cam", "guided grad-cam")
"""Method keys of :func:`run_demo`, in column order (names in the outputs carry q and n)."""

COLOUR_SCALE = ("red = positive, blue = negative, white = 0; each panel scaled to the 99th "
                "percentile of its |map|")
_HALF = {"features": (16, 16, 32, 32), "dense": 128}


class _Clock:
    """Progress lines ``[  12.3 s] message`` from one start time."""

    def __init__(self, log: Callable[[str], Any]):
        self.t0 = time.perf_counter()
        self.log = log
        self.stages: dict[str, float] = {}

    def __call__(self, msg: str) -> None:
        self.log(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _check_out(out: Any) -> str:
    """``out`` as an existing (created) writable directory, else :class:`ArgumentError`."""
    if not isinstance(out, (str, os.PathLike)):
        fail_type("run_demo", "out", out, f"has type {type(out).__name__}", "a directory path")
    path = os.fspath(out)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        fail("run_demo", "out", path, f"is not a writable directory ({e.strerror or e})",
             "a directory this user can create and write", "choose another output directory")
    return path


def _versions() -> dict[str, str]:
    import flax
    import jax
    import matplotlib

    import jaxattr

    return {"jaxattr": jaxattr.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "numpy": np.__version__, "matplotlib": matplotlib.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _train(model, x, y, *, key, steps, clock, every=5.0):
    """:func:`jaxattr.models.train`'s loop (same result) with a progress line every ``every`` s."""
    import jax
    import jax.numpy as jnp
    import optax

    from .models import training

    init_key, data_key = training._rbg_keys(key, fn="run_demo")
    x, y = jnp.asarray(x), jnp.asarray(y)
    clock("training: initialising the model (compiles once)")
    variables = training._init(model, init_key, x[:1])
    idx = training._minibatches(data_key, steps, 32, x.shape[0])
    opt_state = optax.adam(3e-3).init(variables)
    last = time.perf_counter()
    clock(f"training: compiling the Adam step, then {steps} steps of 32 images")
    for i, rows in enumerate(idx, start=1):
        variables, opt_state = training._step(model, 3e-3, variables, opt_state, x, y, rows)
        if time.perf_counter() - last > every and i < steps:
            jax.block_until_ready(variables)
            clock(f"training: step {i}/{steps}")
            last = time.perf_counter()
    return jax.block_until_ready(variables)


def _per_pixel(cam_fn: Callable) -> Callable:
    """A Grad-CAM map (one value per pixel) as a map shaped like the image (every channel)."""

    def g(x, *args):
        import jax.numpy as jnp

        return jnp.broadcast_to(cam_fn(x, *args)[..., None], x.shape)

    return g


def run_demo(
    *,
    out: str | os.PathLike = "./jaxattr-demo",
    dataset: str = "shapes",
    images: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    q: float | None = None,
    width: str | None = None,
    quick: bool = False,
    methods: Sequence[str] = METHODS,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Trains, explains and reports: the ``jaxattr demo`` command as a function.

    Args:
        out: output directory (created); checked writable before anything else.
        dataset: ``"shapes"`` (32x32 shapes with object masks and a distractor patch) or
            ``"digits"`` (8x8, no ground truth: the strokes are only a proxy, not outlined).
        images: test images to explain, 1..``MAX_IMAGES`` (default 6; 3 with ``quick``): one per
            class, first of each.
        steps: Adam steps (default 300 shapes / 200 digits; 150 / 100 with ``quick``).
        seed: seed of the data, the initialisation and the noise.
        q: RectGrad percentile (default 98 on 32x32 shapes as in the paper, 90 on 8x8 digits).
        width: ``"full"`` (the paper's conv32-32-64-64-dense256) or ``"half"``
            (conv16-16-32-32-dense128); default half on shapes (5x faster to train on CPU),
            full on digits.
        quick: fewer steps, training images, images and SmoothGrad samples (tests, CI).
        methods: keys from :data:`METHODS` to run, in order.
        log: called with each progress line (default ``print``).

    Returns:
        The report written to ``out/report.json`` (a dict).

    Raises:
        ArgumentError: if ``out`` is not writable, ``images`` is outside 1..``MAX_IMAGES``,
            ``dataset``/``width``/a method is unknown, or ``steps``/``q``/``seed`` is out of
            range; all raised before any training.
        ArgumentTypeError: for an argument of the wrong type.

    Example:
        >>> from jaxattr.demo import run_demo
        >>> try:
        ...     run_demo(images=11)  # checked before any work
        ... except ValueError as e:
        ...     print(e)
        run_demo: images=11 is more than the figure holds; expected an int in [1, 10]
    """
    fn = "run_demo"
    dataset = check_choice(dataset, "dataset", ("shapes", "digits"), fn=fn)
    quick = check_bool(quick, "quick", fn=fn)
    if images is not None:
        images = check_int(images, "images", fn=fn, minimum=1)
        if images > MAX_IMAGES:
            fail(fn, "images", images, "is more than the figure holds",
                 f"an int in [1, {MAX_IMAGES}]")
    n_images = images or (3 if quick else 6)
    if steps is not None:
        steps = check_int(steps, "steps", fn=fn, minimum=1)
    steps = steps or {("shapes", False): 300, ("shapes", True): 150, ("digits", False): 200,
                      ("digits", True): 100}[dataset, quick]
    seed = check_int(seed, "seed", fn=fn, minimum=0)
    q = check_real(q, "q", fn=fn, lo=0.0, hi=100.0) if q is not None else (
        98.0 if dataset == "shapes" else 90.0)
    width = check_choice(width, "width", ("full", "half"), fn=fn) if width is not None else (
        "half" if dataset == "shapes" else "full")
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods:
        fail_type(fn, "methods", methods, "is not a non-empty list", "keys of jaxattr.demo.METHODS")
    for m in methods:
        check_choice(m, "methods", METHODS, fn=fn)
    out = _check_out(out)

    clock = _Clock(log)
    clock(f"jaxattr demo: dataset={dataset}, {n_images} images, {steps} Adam steps, q={q:g}, "
          f"width={width}, out={out}")
    import jax
    import jax.numpy as jnp

    import jaxattr as ja

    from .data import load_digits, make_shapes
    from .metrics import deletion_curve, energy_in_mask, gini, pointing_game, total_variation
    from .models import CifarCNN, accuracy
    from .plot.attribution import method_grid

    timings: dict[str, float] = {}
    checks: list[dict[str, Any]] = [
        {"check": "out is a writable directory", "passed": True, "detail": out},
        {"check": f"images in 1..{MAX_IMAGES}", "passed": True, "detail": n_images},
    ]

    # ---- data
    t = time.perf_counter()
    if dataset == "shapes":
        n_train = 600 if quick else 1500
        tr = make_shapes(n_train, seed=2 * seed, distractor=True)
        te = make_shapes(200, seed=2 * seed + 1, distractor=True)
        x_train, y_train, x_test, y_test = tr.images, tr.labels, te.images, te.labels
        classes = list(te.class_names)
        obj, dis = te.object_mask, te.distractor_mask
    else:
        d = load_digits(seed=seed)
        x_train, y_train, x_test, y_test = d.x_train, d.y_train, d.x_test, d.y_test
        classes = [str(c) for c in range(10)]
        obj = dis = None
    k = len(classes)
    if n_images > k:
        fail(fn, "images", n_images, f"is more than the {k} classes (one image per class)",
             f"an int in [1, {min(k, MAX_IMAGES)}] for dataset={dataset!r}")
    timings["data"] = time.perf_counter() - t
    clock(f"data: {dataset}, {len(y_train)} train / {len(y_test)} test images of "
          f"{'x'.join(map(str, x_train.shape[1:]))}, {k} classes")

    # ---- train
    model = CifarCNN(num_classes=k) if width == "full" else CifarCNN(**_HALF, num_classes=k)
    key = jax.random.key(seed)
    train_key, noise_key = jax.random.split(key)
    t = time.perf_counter()
    params = _train(model, x_train, y_train, key=train_key, steps=steps, clock=clock)
    timings["train"] = time.perf_counter() - t
    acc = accuracy(model, params, x_test, y_test)
    clock(f"trained {steps} steps in {timings['train']:.1f} s; test accuracy {acc:.3f} "
          f"(chance {1 / k:.3f})")
    checks.append({"check": "test accuracy above chance", "passed": bool(acc > 1 / k),
                   "detail": f"{acc:.3f} vs {1 / k:.3f}"})

    # ---- explain
    idx = np.array([int(np.flatnonzero(y_test == c)[0]) for c in range(n_images)])
    x = jnp.asarray(x_test[idx])
    y = jnp.asarray(y_test[idx])
    preds = np.asarray(model.apply(params, x)).argmax(axis=-1)

    def f(xi, yi):
        return cast(jax.Array, model.apply(params, xi[None]))[0, yi]  # no mutable collections

    sg_n = 10 if quick else 50
    rg = {"maxpool": "prr", "padding_trick": True} if dataset == "shapes" else {}
    table = {
        "saliency": ("saliency", lambda: ja.saliency(f)),
        "guided backprop": ("guided backprop", lambda: ja.guided_backprop(f)),
        "deconvnet": ("deconvnet", lambda: ja.deconvnet(f)),
        "rectgrad x input": (f"rectgrad q={q:g} x input",
                             lambda: ja.times_input(ja.rectgrad(f, q=q, **rg))),
        "rectgrad": (f"rectgrad q={q:g}", lambda: ja.rectgrad(f, q=q, **rg)),
        "smoothgrad": (f"smoothgrad n={sg_n}",
                       lambda: ja.smoothgrad(ja.saliency(f), sigma=0.15, n=sg_n)),
        "lrp": ("lrp epsilon plus flat", lambda: ja.lrp(f, "epsilon_plus_flat")),
        "deeplift": ("deeplift (zero baseline)", lambda: ja.deeplift(f)),
        "grad-cam": ("grad-cam conv4", lambda: _per_pixel(ja.grad_cam(f, "conv4"))),
        "guided grad-cam": ("guided grad-cam conv4", lambda: ja.guided_grad_cam(f, "conv4")),
    }
    h, w = x_train.shape[1:3]
    f1, f2, f3, f4 = model.features
    units = [h * w * f1, h * w * f2, h * w * f3 // 4, h * w * f4 // 4, model.dense]
    from ._select import nearest_rank

    kept = "/".join(str(nearest_rank(u, q)) for u in units)
    clock(f"rectgrad q={q:g} keeps round((n-1)(1-q/100)) of each layer's n units: {kept} of "
          f"{'/'.join(map(str, units))} (conv1/conv2/conv3/conv4/dense1)")
    keys = jax.random.split(noise_key, n_images)
    maps: dict[str, np.ndarray] = {}
    rows: dict[str, dict[str, float]] = {}
    for m in methods:
        name, build = table[m]
        g = jax.jit(jax.vmap(build()))
        call = (lambda g=g: g(x, keys, y)) if m == "smoothgrad" else (lambda g=g: g(x, y))
        t = time.perf_counter()
        jax.block_until_ready(call())
        t1 = time.perf_counter()
        maps[name] = np.asarray(jax.block_until_ready(call()))
        t2 = time.perf_counter()
        rows[name] = {"ms": (t2 - t1) * 1e3, "compile_s": t1 - t}
        clock(f"explained with {name}: compile+run {t1 - t:.1f} s, run {(t2 - t1) * 1e3:.1f} ms")
    timings["explain"] = sum(r["compile_s"] + r["ms"] / 1e3 for r in rows.values())

    # ---- metrics
    t = time.perf_counter()

    def deletion_one(xi, attr, yi):
        def prob(v):
            return jax.nn.softmax(model.apply(params, v[None])[0])[yi]

        base = jnp.broadcast_to(xi.mean(axis=(0, 1)), xi.shape)
        return deletion_curve(prob, xi, attr, steps=8, baseline=base, channel_axis=-1).auc

    deletion = jax.jit(jax.vmap(deletion_one))
    for name, mp in maps.items():
        m2 = jnp.asarray(mp)
        r = rows[name]
        r["TV"] = _mean(jax.vmap(total_variation)(m2))
        r["Gini"] = _mean(jax.vmap(gini)(m2.sum(axis=-1)))
        r["deletion AUC"] = _mean(deletion(x, m2, y))
        if obj is not None and dis is not None:
            o, dd = jnp.asarray(obj[idx]), jnp.asarray(dis[idx])
            r["object mass"] = _mean(jax.vmap(energy_in_mask)(m2, o))
            r["pointing game"] = _mean(jax.vmap(pointing_game)(m2, o))
            r["distractor mass"] = _mean(jax.vmap(energy_in_mask)(m2, dd))
    finite = all(np.isfinite(v).all() for v in maps.values())
    checks.append({"check": "every map is finite and shaped like its input",
                   "passed": bool(finite and all(v.shape == x.shape for v in maps.values())),
                   "detail": f"{len(maps)} methods x {x.shape}"})
    if obj is not None and dis is not None:
        area = float(obj[idx].mean())
        checks.append({"check": "object masks non-empty and disjoint from the distractor",
                       "passed": bool(obj[idx].any(axis=(1, 2)).all()
                                      and not (obj[idx] & dis[idx]).any()),
                       "detail": f"object area fraction {area:.3f} (= a uniform map's object "
                                 "mass)"})
    timings["metrics"] = time.perf_counter() - t
    clock(f"metrics of {len(maps)} methods in {timings['metrics']:.1f} s")

    # ---- table
    cols = ["ms", "compile_s", "TV", "Gini", "deletion AUC"]
    if obj is not None:
        cols += ["object mass", "pointing game", "distractor mass"]
    header = f"{'method':<24} " + " ".join(f"{c:>10}" for c in cols)
    log("")
    log(header)
    log("-" * len(header))
    for name, r in rows.items():
        log(f"{name:<24} " + " ".join(f"{r[c]:>10.3f}" for c in cols))
    log("TV: total variation / L1 (lower = smoother); Gini: sparsity of |map|; deletion AUC: "
        "class probability as the most attributed pixels are removed (lower = more faithful)"
        + ("; object mass / distractor mass: share of |map| (channel-summed) inside the object / "
           "on the distractor patch; pointing game: the |map| peak is on the object"
           if obj is not None else ""))

    # ---- figure
    t = time.perf_counter()
    fig = method_grid(np.asarray(x), maps, signed=True,
                      row_labels=[f"{classes[int(a)]}\n(pred {classes[int(b)]})"
                                  for a, b in zip(np.asarray(y), preds, strict=True)])
    ncols = 1 + len(maps)
    if obj is not None and dis is not None:
        axes = fig.axes
        for i in range(n_images):
            for j in range(ncols):
                ax = axes[i * ncols + j]
                ax.contour(obj[idx[i]].astype(float), levels=[0.5], colors="limegreen",
                           linewidths=0.8)
                ax.contour(dis[idx[i]].astype(float), levels=[0.5], colors="darkorange",
                           linewidths=0.8)
    outline = "; outline: object (green), distractor patch (orange)" if obj is not None else ""
    fig.suptitle(f"jaxattr demo: {dataset}, CifarCNN ({width} width), test accuracy {acc:.2f}\n"
                 f"{COLOUR_SCALE}{outline}", fontsize="small")
    png = os.path.join(out, "methods.png")
    fig.savefig(png, dpi=100)
    timings["figure"] = time.perf_counter() - t
    checks.append({"check": "figure written", "passed": os.path.getsize(png) > 0, "detail": png})
    clock(f"saved {png}")

    timings["total"] = clock.elapsed()
    report = {
        "command": "jaxattr demo",
        "config": {"dataset": dataset, "images": n_images, "steps": steps, "seed": seed, "q": q,
                   "width": width, "quick": quick, "smoothgrad_n": sg_n,
                   "rectgrad_options": rg, "rectgrad_units_kept": kept,
                   "score": "logit of the true label",
                   "image_indices": idx.tolist(), "classes": classes},
        "accuracy": acc,
        "metrics": rows,
        "timings_s": timings,
        "versions": _versions(),
        "checks": checks,
        "colour_scale": COLOUR_SCALE,
        "figure": png,
    }
    path = os.path.join(out, "report.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)
    clock(f"saved {path}; total {timings['total']:.1f} s")
    return report


def _mean(v: Any) -> float:
    """Mean over the finite entries; nan when there are none (all-zero maps)."""
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
