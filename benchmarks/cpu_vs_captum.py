"""jaxattr side by side with Captum on CPU: the RectGrad paper's CIFAR CNN, identical weights.

    pip install -e '.[bench]'                    # torch==2.13.0 (CPU build) and captum
    python benchmarks/cpu_vs_captum.py           # methods table, then the convolution probe
    python benchmarks/cpu_vs_captum.py --repeats 5 --skip-conv      # quicker
    python benchmarks/cpu_vs_captum.py --conv-only --conv-repeats 15

The full default run takes ~5 minutes on a 2-core machine (the convolution probe most of it;
``--skip-conv`` ~1.5 minutes).

The network is ``benchmarks/_cnn.py`` in pure JAX and, through ``_cnn.to_torch``, in PyTorch with
the same weights; the score is the logit of the class the network predicts (``target=`` for
Captum, a label argument for jaxattr). Methods: saliency, guided backprop, deconvnet and RectGrad
at batch ``--batch`` (32); SmoothGrad, VarGrad (N=50, ``sigma=0.15`` absolute, Captum's
``stdevs``) and Integrated Gradients (50 Gauss-Legendre steps, both sides' default rule) at batch
``--noise-batch`` (8). Ten samples per pass on both sides: Captum's ``nt_samples_batch_size=10``
against ``chunk=10``, and ``chunk="auto"`` (jaxattr's default). Captum's ``internal_batch_size``
counts rows (examples x steps), so ten steps per pass of the whole batch is
``internal_batch_size=10 * B``. RectGrad has no Captum equivalent: it is compared with the plain
``jit(vmap(grad))`` of the same batch. "plain" rows are the same gradients without any
attribution library: ``jit(vmap(grad))`` in JAX, one ``torch.autograd.grad`` in torch (for the
noise rows, on B x N rows at once: the straight-line limit of 10-per-pass methods).

Timing: one warm-up call each (compile time excluded), then ``--repeats`` rounds that run every
function of a group once, in an order rotated each round, so that the load of a shared machine
falls on all alike. Printed: the median ms, and the ratio jaxattr / Captum as the median of the
per-round ratios with its interquartile range. Maps are checked numerically (max abs difference):
saliency, guided backprop, deconvnet and IG closely; SmoothGrad and VarGrad draw different noise
in the two frameworks, so only their shapes and finiteness are compared.

The convolution probe (``--conv-only`` or after the table) times 160 input gradients of the CNN in
JAX and torch in one process per XLA setting (``XLA_FLAGS`` must be set before JAX starts), each
paired with torch in the same process: the ratio JAX / torch is what compares across settings.
Torch runs at the faster of 1 and all threads, measured at the start: on a loaded machine
OpenMP's spinning threads made 2 threads ~2-3x slower than 1 (2026-11-29).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cnn  # noqa: E402
from _timing import paired_rounds  # noqa: E402

import jaxattr as ja  # noqa: E402

# XLA:CPU settings of the convolution probe: (name, XLA_FLAGS, command prefix)
CONV_SETTINGS = (
    ("default (YNNPACK convs)", "", ()),
    ("Eigen convs (ynn off)", "--xla_cpu_experimental_ynn_fusion_type=", ()),
    ("XNNPACK convs",
     "--xla_cpu_experimental_ynn_fusion_type= "
     "--xla_cpu_experimental_xnn_fusion_type=individual_convolution", ()),
    ("oneDNN convs",
     "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_use_onednn=true "
     "--xla_cpu_experimental_onednn_fusion_type=individual_convolution", ()),
    ("thunk runtime off", "--xla_cpu_use_thunk_runtime=false", ()),
    ("multi_thread_eigen off", "--xla_cpu_multi_thread_eigen=false", ()),
    ("fast math", "--xla_cpu_enable_fast_math=true", ()),
    ("1 core (taskset)", "", ("taskset", "-c", "0")),
)


def quartiles(xs):
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def ratio_str(num, den):
    q1, q2, q3 = quartiles([a / b for a, b in zip(num, den, strict=True)])
    return f"{q2:6.2f} [{q1:.2f}-{q3:.2f}]"


def ms(ts):
    return f"{1e3 * statistics.median(ts):9.1f}"


def maxdiff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------- methods table


def methods_table(args):
    import torch
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        IntegratedGradients,
        NoiseTunnel,
        Saliency,
    )

    params = _cnn.init_params(jax.random.key(0))
    model = _cnn.to_torch(params)
    score = lambda x, y: _cnn.logit_score(params, x, y)
    b, bn, n, steps, chunk, sigma = (args.batch, args.noise_batch, args.n, args.steps, args.chunk,
                                     args.sigma)
    threads = args.torch_threads or calibrate_torch_threads(model, b)
    torch.set_num_threads(threads)
    print(f"jax {jax.__version__} ({jax.devices()[0].device_kind}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), captum {_captum_version()}; CIFAR CNN, "
          f"B={b} (noise/path B={bn}), N={n}, IG {steps} steps, {chunk} per pass, "
          f"{args.repeats} paired rounds")

    xs = jax.random.uniform(jax.random.key(1), (b,) + _cnn.IMAGE_SHAPE, jnp.float32)
    ys = jnp.argmax(_cnn.logits(params, xs), axis=1)
    xt = torch.from_numpy(np.asarray(xs).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.asarray(ys).astype(np.int64))
    with torch.no_grad():
        assert torch.equal(model(xt).argmax(1), yt), "the two networks disagree on the labels"
        print(f"logits max abs diff torch vs jax: "
              f"{maxdiff(model(xt).numpy(), _cnn.logits(params, xs))[0]:.2e}")
    xs8, ys8, xt8, yt8 = xs[:bn], ys[:bn], xt[:bn], yt[:bn]
    keys8 = jax.random.split(jax.random.key(2), bn)

    def jvm(a):  # jit(vmap(map function)) on the batch with labels
        f = jax.jit(jax.vmap(a))
        return lambda: f(xs, ys)

    def torch_grad(x, y):
        def run():
            xi = x.clone().requires_grad_(True)
            out = model(xi).gather(1, y[:, None]).sum()
            return torch.autograd.grad(out, xi)[0]

        return run

    sal, gbp, dec = Saliency(model), GuidedBackprop(model), Deconvolution(model)
    nt = NoiseTunnel(Saliency(model))
    ig = IntegratedGradients(model)
    # B x N copies of the noise batch for the straight-line rows
    xs_rep = jnp.repeat(xs8, n, axis=0)
    ys_rep = jnp.repeat(ys8, n, axis=0)
    xt_rep = xt8.repeat_interleave(n, 0)
    yt_rep = yt8.repeat_interleave(n, 0)
    plain_rep = jax.jit(jax.vmap(jax.grad(score)))

    def noise_fn(transform, c, **kw):
        g = jax.jit(jax.vmap(transform(ja.saliency(score), sigma=sigma, n=n, chunk=c,
                                       relative=False, **kw)))
        return lambda: g(xs8, keys8, ys8)

    def ig_fn(c):
        g = jax.jit(jax.vmap(ja.integrated_gradients(score, steps=steps, method="gausslegendre",
                                                     chunk=c)))
        return lambda: g(xs8, ys8)

    def nt_fn(nt_type):
        return lambda: nt.attribute(xt8, nt_type=nt_type, nt_samples=n,
                                    nt_samples_batch_size=chunk, stdevs=sigma, target=yt8,
                                    abs=False)

    groups = {
        f"B={b}": {
            "plain jax": jvm(jax.grad(score)),
            "plain torch": torch_grad(xt, yt),
            "saliency jax": jvm(ja.saliency(score)),
            "saliency captum": lambda: sal.attribute(xt, target=yt, abs=False),
            "guided jax": jvm(ja.guided_backprop(score)),
            "guided captum": lambda: gbp.attribute(xt, target=yt),
            "deconvnet jax": jvm(ja.deconvnet(score)),
            "deconvnet captum": lambda: dec.attribute(xt, target=yt),
            "rectgrad jax": jvm(ja.rectgrad(score, q=98)),
        },
        f"B={bn}, N={n}": {
            "plain jax": lambda: plain_rep(xs_rep, ys_rep),
            "plain torch": torch_grad(xt_rep, yt_rep),
            "smoothgrad jax c": noise_fn(ja.smoothgrad, chunk),
            "smoothgrad jax auto": noise_fn(ja.smoothgrad, "auto"),
            "smoothgrad captum": nt_fn("smoothgrad"),
            "vargrad jax c": noise_fn(ja.vargrad, chunk, ddof=0),
            "vargrad jax auto": noise_fn(ja.vargrad, "auto", ddof=0),
            "vargrad captum": nt_fn("vargrad"),
            "ig jax c": ig_fn(chunk),
            "ig jax auto": ig_fn("auto"),
            "ig captum": lambda: ig.attribute(xt8, target=yt8, n_steps=steps,
                                              method="gausslegendre",
                                              internal_batch_size=chunk * bn),
        },
    }
    results = {}
    for gname, fns in groups.items():
        t0 = time.perf_counter()
        times, first, outs = paired_rounds(fns, args.repeats)
        results[gname] = (times, first, outs)
        print(f"  [{gname}: {time.perf_counter() - t0:.0f} s]", flush=True)

    # ---- agreement of the maps
    times, first, outs = results[f"B={b}"]
    print("\nmaps, jaxattr vs Captum (max abs diff / max abs value):")
    for m in ("saliency", "guided", "deconvnet"):
        d, s = maxdiff(outs[f"{m} jax"], nhwc(outs[f"{m} captum"]))
        print(f"  {m:12s} {d:.2e} / {s:.2e}")
    d, s = maxdiff(outs["plain jax"], nhwc(outs["plain torch"]))
    print(f"  {'plain grad':12s} {d:.2e} / {s:.2e}")
    times8, first8, outs8 = results[f"B={bn}, N={n}"]
    d, s = maxdiff(outs8["ig jax c"], nhwc(outs8["ig captum"]))
    print(f"  {'IG':12s} {d:.2e} / {s:.2e}   (chunk={chunk} vs auto: "
          f"{maxdiff(outs8['ig jax c'], outs8['ig jax auto'])[0]:.1e})")
    for m in ("smoothgrad", "vargrad"):
        a, c = np.asarray(outs8[f"{m} jax c"]), nhwc(outs8[f"{m} captum"])
        ok = a.shape == c.shape and np.isfinite(a).all() and np.isfinite(c).all()
        print(f"  {m:12s} shapes {a.shape} / {c.shape}, finite: {ok} (different noise: not "
              f"compared; chunk={chunk} vs auto: "
              f"{maxdiff(outs8[f'{m} jax c'], outs8[f'{m} jax auto'])[0]:.1e})")

    # ---- the table
    print(f"\n{'method':28s} {'Captum ms':>9s} {'jaxattr ms':>10s}  jaxattr/Captum [IQR]"
          f"   compile s")
    rows = [
        (f"B={b}", "plain gradient (torch raw)", "plain jax", "plain torch"),
        (f"B={b}", "saliency", "saliency jax", "saliency captum"),
        (f"B={b}", "guided backprop", "guided jax", "guided captum"),
        (f"B={b}", "deconvnet", "deconvnet jax", "deconvnet captum"),
        (f"B={bn}, N={n}", f"plain, {bn * n} gradients", "plain jax", "plain torch"),
        (f"B={bn}, N={n}", f"smoothgrad chunk={chunk}", "smoothgrad jax c", "smoothgrad captum"),
        (f"B={bn}, N={n}", "smoothgrad chunk=auto", "smoothgrad jax auto", "smoothgrad captum"),
        (f"B={bn}, N={n}", f"vargrad chunk={chunk}", "vargrad jax c", "vargrad captum"),
        (f"B={bn}, N={n}", "vargrad chunk=auto", "vargrad jax auto", "vargrad captum"),
        (f"B={bn}, N={n}", f"IG {steps} steps chunk={chunk}", "ig jax c", "ig captum"),
        (f"B={bn}, N={n}", f"IG {steps} steps chunk=auto", "ig jax auto", "ig captum"),
    ]
    for gname, label, jname, cname in rows:
        times, first, _ = results[gname]
        comp = first[jname] - statistics.median(times[jname])
        print(f"{label:28s} {ms(times[cname])} {ms(times[jname]):>10s}  "
              f"{ratio_str(times[jname], times[cname]):20s} {comp:6.1f}")
    times, first, _ = results[f"B={b}"]
    print(f"{'rectgrad q=98 (no Captum)':28s} {'-':>9s} {ms(times['rectgrad jax']):>10s}  "
          f"{ratio_str(times['rectgrad jax'], times['plain jax']):20s} "
          f"{first['rectgrad jax'] - statistics.median(times['rectgrad jax']):6.1f}"
          f"   (ratio to plain jax)")
    times8, _, _ = results[f"B={bn}, N={n}"]
    print(f"\nstraight-line limit (plain jax, {bn * n} gradients in one call) vs jaxattr:")
    for m in ("smoothgrad", "vargrad", "ig"):
        print(f"  {m:10s} chunk={chunk}: {ratio_str(times8[f'{m} jax c'], times8['plain jax'])}"
              f"   auto: {ratio_str(times8[f'{m} jax auto'], times8['plain jax'])}")


def calibrate_torch_threads(model, batch: int, rounds: int = 5) -> int:
    """The faster of 1 and all threads for torch here and now (paired rounds of a plain input
    gradient): on a loaded machine OpenMP's spinning threads can make 2 threads ~3x slower."""
    import torch

    cores = os.cpu_count() or 1
    if cores == 1:
        return 1
    x = torch.rand(batch, 3, 32, 32)

    def run(nt):
        def f():
            torch.set_num_threads(nt)
            xi = x.clone().requires_grad_(True)
            return torch.autograd.grad(model(xi)[:, 0].sum(), xi)[0]

        return f

    times, _, _ = paired_rounds({1: run(1), cores: run(cores)}, rounds)
    best = min(times, key=lambda k: statistics.median(times[k]))
    print(f"torch threads: 1 -> {ms(times[1]).strip()} ms, {cores} -> "
          f"{ms(times[cores]).strip()} ms per {batch} gradients: using {best}")
    return best


def _captum_version():
    import captum

    return captum.__version__


# ----------------------------------------------------------------------------- convolution probe


def _nchw_logits(params_nchw, x):
    h = x
    for i, (w, bias) in enumerate(params_nchw["conv"]):
        h = lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + bias[:, None, None])
        if i % 2 == 1:
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = h.transpose(0, 2, 3, 1).reshape(h.shape[0], -1)
    (w1, b1), (w2, b2) = params_nchw["dense"]
    return jax.nn.relu(h @ w1 + b1) @ w2 + b2


def _reshape_pool_logits(params, x):
    """NHWC with 2x2 max-pools as reshape + max (gradient: a compare-select, no scatter)."""
    h = x
    for i, (w, bias) in enumerate(params["conv"]):
        h = jax.nn.relu(_cnn._conv(h, w, bias))
        if i % 2 == 1:
            n, hh, ww, c = h.shape
            h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
    h = h.reshape(h.shape[0], -1)
    (w1, b1), (w2, b2) = params["dense"]
    return jax.nn.relu(h @ w1 + b1) @ w2 + b2


def conv_probe(repeats: int, batch: int, variants: bool) -> dict:
    """Times ``batch`` input gradients in JAX and torch in this process (paired rounds)."""
    import torch

    params = _cnn.init_params(jax.random.key(0))
    model = _cnn.to_torch(params)
    xs = jax.random.uniform(jax.random.key(1), (batch,) + _cnn.IMAGE_SHAPE, jnp.float32)
    ys = jnp.argmax(_cnn.logits(params, xs), axis=1)
    xt = torch.from_numpy(np.asarray(xs).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.asarray(ys).astype(np.int64))
    threads = torch.get_num_threads()

    def torch_run(nthreads):
        def run():
            torch.set_num_threads(nthreads)
            xi = xt.clone().requires_grad_(True)
            out = model(xi).gather(1, yt[:, None]).sum()
            return torch.autograd.grad(out, xi)[0]

        return run

    def jax_run(logits_fn, p, x):
        g = jax.jit(jax.vmap(jax.grad(lambda xi, yi: logits_fn(p, xi[None])[0, yi])))
        return lambda: g(x, ys)

    fns = {"jax": jax_run(_cnn.logits, params, xs), "torch": torch_run(threads)}
    if variants:
        p_nchw = {"conv": [(jnp.transpose(w, (3, 2, 0, 1)), bb) for w, bb in params["conv"]],
                  "dense": params["dense"]}
        fns["jax NCHW"] = jax_run(_nchw_logits, p_nchw, jnp.transpose(xs, (0, 3, 1, 2)))
        fns["jax reshape-pool"] = jax_run(_reshape_pool_logits, params, xs)
    if threads > 1:  # torch at the faster of 1 and all threads
        fns["torch 1 thread"] = torch_run(1)
    times, first, outs = paired_rounds(fns, repeats)
    torch.set_num_threads(threads)
    if "torch 1 thread" in times and (statistics.median(times["torch 1 thread"])
                                      < statistics.median(times["torch"])):
        times[f"torch {threads} threads"] = times["torch"]
        times["torch"], threads = times.pop("torch 1 thread"), 1
    ref = np.asarray(outs["jax"])
    res = {"torch_threads": threads, "times": times,
           "diff_torch": maxdiff(ref, nhwc(outs["torch"]))[0]}
    if variants:
        res["diff_nchw"] = maxdiff(ref, np.asarray(outs["jax NCHW"]).transpose(0, 2, 3, 1))[0]
        res["diff_reshape_pool"] = maxdiff(ref, outs["jax reshape-pool"])[0]
    return res


def conv_section(args):
    print(f"\nXLA:CPU vs torch: {args.conv_batch} input gradients of the CIFAR CNN, "
          f"{args.conv_repeats} paired rounds per process; ratio = JAX / torch in the same "
          f"process, median [IQR]; torch at the faster of 1 and all threads")
    here = os.path.abspath(__file__)
    for i, (name, flags, prefix) in enumerate(CONV_SETTINGS):
        env = dict(os.environ, XLA_FLAGS=flags)
        cmd = [*prefix, sys.executable, here, "--conv-probe", "--conv-repeats",
               str(args.conv_repeats), "--conv-batch", str(args.conv_batch)]
        if i == 0:
            cmd.append("--conv-variants")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {name:26s} failed: {err[:120]}")
            continue
        res = json.loads(lines[-1])
        t = res["times"]
        print(f"  {name:26s} jax {ms(t['jax'])} ms  torch ({res['torch_threads']} thr) "
              f"{ms(t['torch'])} ms  jax/torch {ratio_str(t['jax'], t['torch'])}  "
              f"[{flags or 'no flags'}]")
        if i == 0:
            for v in ("jax NCHW", "jax reshape-pool", "torch 1 thread",
                      f"torch {os.cpu_count()} threads"):
                if v in t:
                    base = "torch" if v.startswith("torch") else "jax"
                    print(f"      {v:22s} {ms(t[v])} ms  x{ratio_str(t[v], t[base])} of {base}")
            print(f"      max abs diff vs torch {res['diff_torch']:.1e}, "
                  f"NCHW {res['diff_nchw']:.1e}, reshape-pool {res['diff_reshape_pool']:.1e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--noise-batch", type=int, default=8)
    p.add_argument("--n", type=int, default=50, help="noise samples")
    p.add_argument("--steps", type=int, default=50, help="IG steps")
    p.add_argument("--chunk", type=int, default=10, help="samples (steps) per pass")
    p.add_argument("--sigma", type=float, default=0.15, help="absolute noise level")
    p.add_argument("--repeats", type=int, default=9, help="paired rounds of the methods table")
    p.add_argument("--conv-repeats", type=int, default=15)
    p.add_argument("--conv-batch", type=int, default=160)
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads (default: the faster of 1 and all, measured)")
    p.add_argument("--skip-conv", action="store_true")
    p.add_argument("--conv-only", action="store_true")
    p.add_argument("--conv-probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--conv-variants", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.conv_probe:
        print(json.dumps(conv_probe(args.conv_repeats, args.conv_batch, args.conv_variants)))
        return
    try:
        import captum  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        sys.exit("torch and captum are needed: pip install -e '.[bench]'")
    if not args.conv_only:
        methods_table(args)
    if not args.skip_conv:
        conv_section(args)


if __name__ == "__main__":
    main()
