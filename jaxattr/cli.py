"""The ``jaxattr`` command line: ``jaxattr demo`` and ``jaxattr explain``.

``jaxattr explain MODULE:FUNCTION DATA --method M --out DIR`` explains every example of a dataset
with :func:`jaxattr.explain_dataset`: the same command on every host of a cluster (with
``--distributed``) runs a multi-host job on ``jax.distributed``.

``jaxattr demo`` (:func:`jaxattr.demo.run_demo`) trains the RectGrad paper's CIFAR-10 CNN on
procedural shapes with ground-truth object masks (or on scikit-learn's 8x8 digits), explains a few
test images with every method, prints a line per stage and a metrics table, and saves the
method-by-example grid and a JSON report. About 1.5 minutes on 2 CPU cores. ``jaxattr --version``
prints the version.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["main"]

DEFAULT_OUT = "./jaxattr-demo"
DEFAULT_Q = 90.0

# Why q=90 and not the paper's 98 on these inputs: RectGrad keeps, per layer, the units whose
# a * R is above the layer's q-th percentile, i.e. round((n - 1)(1 - q/100)) of its n units. On
# 32x32 CIFAR images the first conv layer has 32*32*32 = 32768 units and q=98 keeps ~655 of them; on
# 8x8 digits it has 8*8*32 = 2048 and q=98 keeps 41 (20 at the 4x4x64 layers, 5 in the 256-unit
# dense layer), too few paths for a map of the digit. q=90 keeps 205 / 102 / 25: about the same
# fraction of the 64 input pixels as q=98 reaches of CIFAR's 1024.
_Q_NOTE = (
    "RectGrad keeps round((n-1)(1-q/100)) of each layer's n units; on 8x8 inputs the conv layers "
    "have 16x fewer units than on 32x32 CIFAR, so q=98 keeps only 41/20/5 units per layer here; "
    "q={q:g} keeps {kept}."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed={value} must be >= 0")
    return value


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"q={value} must be in [0, 100]")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxattr", description="Attribution methods as JAX function transforms."
    )
    from jaxattr import __version__

    parser.add_argument("--version", action="version", version=f"jaxattr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train a small CNN, compare attribution methods against a ground truth, report",
        description=(
            "Train the RectGrad paper's CIFAR-10 CNN on procedural shapes with object masks and "
            "a distractor patch (or on scikit-learn's 8x8 digits), explain a few test images "
            "with saliency, guided backprop, deconvnet, RectGrad and SmoothGrad, print a line per "
            "stage and a metrics table, and save the method grid (methods.png) and a JSON report "
            "(report.json) in --out."
        ),
    )
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    demo.add_argument("--dataset", choices=("shapes", "digits"), default="shapes",
                      help="shapes: 32x32, object masks and a distractor (default); digits: 8x8")
    demo.add_argument("--steps", type=_positive_int, default=None,
                      help="Adam steps (default 300 shapes / 200 digits; half with --quick)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the split, init and noise")
    demo.add_argument("--quick", action="store_true",
                      help="fewer steps, images and noise samples (for tests and CI)")
    demo.add_argument("--q", type=_percentile, default=None,
                      help="RectGrad percentile (default 98 on shapes, 90 on digits)")
    demo.add_argument("--images", type=_positive_int, default=None,
                      help="number of test images to explain, at most 10 (default 6; 3 --quick); "
                           "more is an error")
    demo.add_argument("--model", choices=("cifar", "digits"), default=None,
                      help="cifar: the paper's conv32-32-64-64-dense256 CNN; digits: half width "
                           "(default: half width on shapes, cifar on digits)")
    demo.set_defaults(func=_demo)

    ex = sub.add_parser(
        "explain",
        help="explain every example of a dataset into an output directory (resumable)",
        description=(
            "Explain every example of DATA with an attribution METHOD of the score function "
            "MODULE:FUNCTION, f(x, *args) -> scalar for one example, and write one .npy per output "
            "into --out with a fingerprinted manifest. Rerunning the same command resumes; "
            "the same command on every host (with --distributed) runs a multi-host job. "
            "Method options (--q, --tau, --maxpool, --padding-trick, --raw-max, --steps, --sigma, "
            "--n, --composite) are an error with a method that has no such option. lrp is "
            "layer-wise relevance propagation (its relevance starts at the score's value), "
            "deeplift the rescale rule against a zero baseline. The official RectGrad "
            "code's methods: --method rectgrad_x_input --padding-trick (its rectgrad), the same "
            "with --maxpool prr (rectgradprr), or with --tau T (rectgradconst)."
        ),
    )
    ex.add_argument("function", metavar="MODULE:FUNCTION",
                    help="importable score function f(x, *args) of one example (the current "
                         "directory is on the import path)")
    ex.add_argument("data", metavar="DATA",
                    help="X.npy (memory-mapped), or X.npy,Y.npy,... (memory-mapped; example i "
                         "calls f(X[i], Y[i], ...); labels must be integers), or one .npz "
                         "(arrays in stored order)")
    ex.add_argument("--method", required=True, choices=sorted(_METHODS),
                    help="attribution method (noise methods use --key)")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--batch-size", type=_positive_int, default=32,
                    help="examples per step (default 32)")
    ex.add_argument("--key", type=_seed, default=None,
                    help="seed of jax.random.key for noise methods (default 0)")
    threshold = ex.add_mutually_exclusive_group()
    threshold.add_argument("--q", type=_percentile, default=None,
                           help="rectgrad, rectgrad_x_input: percentile of each layer's "
                                "threshold (default 98)")
    threshold.add_argument("--tau", type=float, default=None,
                           help="rectgrad, rectgrad_x_input: a fixed threshold instead of --q "
                                "(--tau 0 is Guided Backprop on ReLU nets)")
    ex.add_argument("--maxpool", choices=("winner", "prr"), default=None,
                    help="rectgrad, rectgrad_x_input: max-pool gradient, winner-take-all "
                         "(default) or prr (proportional redistribution)")
    ex.add_argument("--padding-trick", action="store_true",
                    help="rectgrad, rectgrad_x_input: zero the outer one-pixel ring of the "
                         "gradient at the output of each SAME-padded convolution (the official "
                         "code's border fix)")
    ex.add_argument("--raw-max", action="store_true",
                    help="guided, deconvnet, rectgrad, rectgrad_x_input: also treat every "
                         "max(x, 0) written in the score's own code as a ReLU (default: only "
                         "jax.nn.relu); only when each such max is an activation, not a clamp")
    ex.add_argument("--sigma", type=float, default=None,
                    help="smoothgrad, smoothgrad_sq, vargrad: noise level (default 0.15)")
    ex.add_argument("--n", type=_positive_int, default=None,
                    help="smoothgrad, smoothgrad_sq, vargrad: noise samples (default 50)")
    ex.add_argument("--steps", type=_positive_int, default=None,
                    help="integrated_gradients, layer_integrated_gradients: steps (default 50)")
    ex.add_argument("--composite", default=None,
                    choices=("epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1",
                             "attn_lrp"),
                    help="lrp: the rules per layer (default epsilon_plus_flat; attn_lrp for "
                         "transformers; see jaxattr.relevance)")
    ex.add_argument("--at", default=None, metavar="LAYER",
                    help="grad_cam, guided_grad_cam, layer_gradient_x_activation, "
                         "layer_integrated_gradients: the layer, by Flax module path as in the "
                         "jaxpr's name stack (CifarCNN/conv4, or a unique suffix: conv4) or "
                         "checkpoint_name")
    ex.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    ex.add_argument("--no-progress", action="store_true", help="no progress output")
    ex.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first (auto-detects SLURM, Open MPI "
                         "and TPU pods; or give --coordinator, --num-processes, --process-id)")
    ex.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="coordinator address for --distributed")
    ex.add_argument("--num-processes", type=_positive_int, default=None)
    ex.add_argument("--process-id", type=_seed, default=None)
    ex.set_defaults(func=_explain)
    return parser


def _rectgrad(ja: Any, f: Callable, o: dict) -> Callable:
    if o.get("q") is None and o.get("tau") is None:
        o = {**o, "q": 98.0}
    return ja.rectgrad(f, **o)


def _at(o: dict) -> str:
    if "at" not in o:
        raise _CliError("--at is required with this method: the module path (as in the jaxpr's "
                        "name stack, e.g. CifarCNN/conv4 or conv4) or checkpoint_name of the layer")
    return o["at"]


_RECTGRAD = ("q", "tau", "maxpool", "padding_trick", "raw_max")
_NOISE = ("sigma", "n")
_METHODS = {
    # name: (noise method?, its options, builder(ja, f, options given) -> attribution function)
    "saliency": (False, (), lambda ja, f, o: ja.saliency(f)),
    "guided": (False, ("raw_max",), lambda ja, f, o: ja.guided_backprop(f, **o)),
    "deconvnet": (False, ("raw_max",), lambda ja, f, o: ja.deconvnet(f, **o)),
    "rectgrad": (False, _RECTGRAD, _rectgrad),
    "rectgrad_x_input": (False, _RECTGRAD, lambda ja, f, o: ja.times_input(_rectgrad(ja, f, o))),
    "lrp": (False, ("composite",), lambda ja, f, o: ja.lrp(
        f, composite=o.get("composite", "epsilon_plus_flat"))),
    "deeplift": (False, (), lambda ja, f, o: ja.deeplift(f)),
    "grad_cam": (False, ("at",), lambda ja, f, o: ja.grad_cam(f, _at(o))),
    "guided_grad_cam": (False, ("at",), lambda ja, f, o: ja.guided_grad_cam(f, _at(o))),
    "layer_gradient_x_activation": (False, ("at",),
                                    lambda ja, f, o: ja.layer_gradient_x_activation(f, _at(o))),
    "layer_integrated_gradients": (False, ("at", "steps"), lambda ja, f, o: (
        ja.layer_integrated_gradients(f, _at(o), steps=o.get("steps", 50)))),
    "integrated_gradients": (False, ("steps",),
                             lambda ja, f, o: ja.integrated_gradients(f, **{"steps": 50, **o})),
    "smoothgrad": (True, _NOISE, lambda ja, f, o: ja.smoothgrad(
        ja.saliency(f), **{"sigma": 0.15, "n": 50, **o})),
    "smoothgrad_sq": (True, _NOISE, lambda ja, f, o: ja.smoothgrad_sq(
        ja.saliency(f), **{"sigma": 0.15, "n": 50, **o})),
    "vargrad": (True, _NOISE, lambda ja, f, o: ja.vargrad(
        ja.saliency(f), **{"sigma": 0.15, "n": 50, **o})),
}
_OPTIONS = ("q", "tau", "maxpool", "padding_trick", "raw_max", "sigma", "n", "steps", "composite",
            "at")


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line, as keywords of the method's transform; an
    option the method does not have is an error, not silently ignored."""
    given = {k: v for k in _OPTIONS  # not given: None (valued flags) or False (switches)
             if (v := getattr(args, k)) is not None and v is not False}
    allowed = _METHODS[args.method][1]
    for k in given:
        if k not in allowed:
            flag = "--" + k.replace("_", "-")
            has = sorted(m for m, (_, opts, _) in _METHODS.items() if k in opts)
            raise _CliError(f"{flag} does not apply to --method {args.method}; expected it "
                            f"only with --method {' or '.join(has)}")
    return given


# Python argument names in jaxattr's messages -> the flags that set them on the command line
_FLAGS = {"overwrite=True": "--overwrite", "batch_size": "--batch-size", "out": "--out",
          "key": "--key", "padding_trick": "--padding-trick", "raw_max": "--raw-max",
          **{k: f"--{k}" for k in ("q", "tau", "maxpool", "sigma", "n", "steps", "composite",
                                   "at")}}
_FLAG_RE = re.compile(r"(?<![\w.\-'\[])(overwrite=True|(?:batch_size|out|key|padding_trick|"
                      r"raw_max|q|tau|maxpool|sigma|n|steps|composite|at)(?==| \())")


def _cli_message(text: str) -> str:
    """A jaxattr error message in the command line's words: ``overwrite=True`` -> ``--overwrite``,
    ``batch_size=`` / ``batch_size (32 -> 4)`` -> ``--batch-size``, and so on."""
    text = text.removeprefix("explain_dataset: ")
    text = _FLAG_RE.sub(lambda m: _FLAGS[m.group(1)], text)
    text = text.replace("--key (another PRNG key, or a key given/omitted)",
                        "--key (another seed, or a seed given/omitted)")
    text = text.replace("attr_fn (its traced jaxpr or constants differ)",
                        "MODULE:FUNCTION, --method or a method option (the traced attribution "
                        "function or its constants differ)")
    return text.replace("another out directory", "another --out directory")


def _load_function(spec: str) -> Callable[..., Any]:
    import importlib

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise _CliError(f"MODULE:FUNCTION={spec!r} has no ':'; expected e.g. mymodel:score")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise _CliError(f"cannot import module {module!r}: {e}") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise _CliError(f"module {module!r} has no attribute {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise _CliError(f"{spec} is not a function (it has type {type(obj).__name__})")
    return obj


def _load_data(spec: str) -> tuple[Any, list[tuple[str, np.ndarray]]]:
    """``DATA`` as explain_dataset's data, and ``(name, array)`` of each argument it holds."""
    paths = spec.split(",")
    expected = "X.npy, X.npy,Y.npy,... (one .npy per argument) or one .npz"
    for p in paths:
        if not (p.endswith(".npy") or (p.endswith(".npz") and len(paths) == 1)):
            what = "a .npz in a list" if p.endswith(".npz") else "not a .npy or .npz file"
            raise _CliError(f"DATA={spec!r}: {p!r} is {what}; expected {expected}")
        if not os.path.isfile(p):
            raise _CliError(f"DATA file {p!r} does not exist")
        magic = b"PK\x03\x04" if p.endswith(".npz") else b"\x93NUMPY"
        with open(p, "rb") as fh:
            if fh.read(len(magic)) != magic:
                kind = ".npz (zip) archive" if p.endswith(".npz") else ".npy file (no NUMPY header)"
                raise _CliError(f"DATA={spec!r}: {p!r} is not a {kind}; expected {expected} "
                                "written by numpy.save / numpy.savez")
    try:
        if paths[0].endswith(".npz"):
            with np.load(paths[0]) as z:  # npz members cannot be memory-mapped: loaded one by one
                named = [(f"{paths[0]}:{k}", z[k]) for k in z.files]
        else:
            named = [(p, np.load(p, mmap_mode="r")) for p in paths]
    except (ValueError, OSError, EOFError) as e:
        raise _CliError(f"DATA={spec!r} cannot be read by numpy.load ({str(e).splitlines()[0]}); "
                        f"expected {expected} of numeric arrays (no pickled objects)") from None
    if not named:
        raise _CliError(f"DATA file {paths[0]!r} holds no arrays; expected {expected}")
    arrays = tuple(a for _, a in named)
    return (arrays[0] if len(arrays) == 1 else arrays), named


class _CliError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


def _explain(args: argparse.Namespace) -> int:
    import jax

    from jaxattr.errors import ArgumentError

    if args.distributed:
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)
    import jaxattr as ja

    try:
        f = _load_function(args.function)
        noisy, _, build = _METHODS[args.method]
        options = _method_options(args)
        data, named = _load_data(args.data)
        attr = build(ja, f, options)
        key = jax.random.key(args.key or 0) if noisy else None
        if args.key is not None and not noisy:
            print(f"note: --key is ignored by the deterministic method {args.method}",
                  file=sys.stderr)
        t0 = time.perf_counter()
        result = ja.explain_dataset(attr, data, batch_size=args.batch_size, key=key,
                                    out=args.out, overwrite=args.overwrite,
                                    progress=not args.no_progress)
    except _CliError as e:
        print(f"jaxattr explain: error: {e}", file=sys.stderr)
        return 2
    except ArgumentError as e:
        leaf = getattr(e, "data_leaf", None)
        if leaf is not None:  # float labels used as an index: name the file, say how to fix it
            name, arr = named[leaf]
            fix = (f"np.save({name!r}, labels.astype(np.int32))" if name.endswith(".npy")
                   else "labels.astype(np.int32)")
            message = (f"DATA file {name!r} (dtype {arr.dtype}) holds floats that "
                       f"{args.function} uses as an index (labels); expected integer labels. "
                       f"Save them with an int dtype, e.g. {fix}")
        else:
            message = _cli_message(str(e))
        print(f"jaxattr explain: error: {message}", file=sys.stderr)
        return 2
    leaves = jax.tree.leaves(result)
    n = leaves[0].shape[0]
    if jax.process_index() == 0:
        shapes = ", ".join(f"{tuple(x.shape)} {x.dtype}" for x in leaves)
        print(f"explained {n} examples with {args.method} in {time.perf_counter() - t0:.1f} s: "
              f"{shapes} in {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxattr`` console script.

    Args:
        argv: the arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status (0 on success, 2 when no command is given).

    Raises:
        SystemExit: from argparse on a bad option (status 2, message on stderr).

    Example:
        >>> from jaxattr.cli import main
        >>> main([])  # doctest: +ELLIPSIS
        usage: jaxattr [-h] [--version] COMMAND ...
        ...
        2
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(file=sys.stdout)
        return 2
    return args.func(args)


def _kept(model: Any, q: float) -> str:
    f1, f2, f3, f4 = model.features
    sizes = [64 * f1, 64 * f2, 16 * f3, 16 * f4, model.dense]
    # the engine's TF 'nearest' rule: round_half_even((n - 1)(1 - q/100)) units, in float64
    from jaxattr._select import nearest_rank

    return "/".join(str(nearest_rank(n, q)) for n in sizes)


def _total_variation(maps: np.ndarray) -> np.ndarray:
    """:func:`jaxattr.metrics.total_variation` (normalised) of each (H, W) map."""
    import jax
    import jax.numpy as jnp

    from jaxattr.metrics import total_variation

    return np.asarray(jax.vmap(total_variation)(jnp.asarray(maps)))


def _ink_fraction(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`jaxattr.metrics.mass_in_region` of each (H, W) map on its mask."""
    import jax
    import jax.numpy as jnp

    from jaxattr.metrics import mass_in_region

    mask = np.broadcast_to(mask, maps.shape)
    return np.asarray(jax.vmap(mass_in_region)(jnp.asarray(maps), jnp.asarray(mask)))


def _gini(maps: np.ndarray) -> np.ndarray:
    """:func:`jaxattr.metrics.gini` of each (H, W) map."""
    import jax
    import jax.numpy as jnp

    from jaxattr.metrics import gini

    return np.asarray(jax.vmap(gini)(jnp.asarray(maps)))


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[np.ndarray, float, float]:
    """Runs ``fn`` twice: returns the result, the first call's time (compile) and the second's."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    t1 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    t2 = time.perf_counter()
    return np.asarray(out), t1 - t0, t2 - t1


def _pick_images(labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first test image of each of the classes 0..k-1."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(k)])


def _demo(args: argparse.Namespace) -> int:
    from jaxattr.demo import run_demo
    from jaxattr.errors import ArgumentError

    try:
        run_demo(out=args.out, dataset=args.dataset, images=args.images, steps=args.steps,
                 seed=args.seed, q=args.q, quick=args.quick,
                 width={None: None, "cifar": "full", "digits": "half"}[args.model])
    except ArgumentError as e:
        print(f"jaxattr demo: error: {e}", file=sys.stderr)
        return 2
    return 0


def _metrics(out: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    m2 = out.sum(axis=-1)  # (N, H, W)
    return (_mean_finite(_total_variation(m2)), _mean_finite(_ink_fraction(m2, mask)),
            _mean_finite(_gini(m2)))


def _mean_finite(v: np.ndarray) -> float:
    """Mean over the finite entries; nan when there are none (all-zero maps)."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
