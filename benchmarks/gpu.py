"""GPU benchmark: jaxattr on ResNet-50, B=32 at 224x224, ratios to the plain gradient (same run).

    python benchmarks/gpu.py                     # ResNet-50, B=32, 224x224, N=50, 50 IG steps
    python benchmarks/gpu.py --batch 128 --repeats 10
    python benchmarks/gpu.py --smoke             # CPU-sized: 32x32, B=2, N=4, the stem alone

Rows: the plain ``jit(vmap(grad))`` input gradient (the baseline), guided backprop, RectGrad
q=98, SmoothGrad N=50 (``chunk="auto"``, jaxattr's default, and ``chunk=10`` = Captum's
``nt_samples_batch_size=10``), VarGrad N=50, Integrated Gradients (``--steps`` Gauss-Legendre
steps, ``chunk="auto"``), each as ms per batch and as a ratio to the plain gradient (median of the
per-round ratios, [interquartile range]). Every round runs every function once, in an order
rotated each round, after one warm-up call each (compile time printed apart). Then the
examples/s of ``ja.explain_dataset`` over ``--ds-batches`` batches (saliency), next to the plain
gradient's examples/s. Then, when torch and captum are importable and torch sees a GPU, the same
methods in Captum on the PyTorch twin (``_resnet.to_torch``, identical weights) in the same
rounds: Saliency, GuidedBackprop, NoiseTunnel smoothgrad / vargrad (``nt_samples_batch_size``
10) and IntegratedGradients (``internal_batch_size`` = 10 x B rows, i.e. 10 steps per pass).
The score is the logit of the predicted class (``target=`` in Captum). fp32 (both frameworks'
default convolution precision), plus saliency and SmoothGrad with ``dtype=jnp.bfloat16`` where
jaxattr has that option (otherwise the script says "bf16: not implemented"). JAX preallocates
75% of the GPU: Captum's NoiseTunnel at 10 per pass needed 26 GiB at B=32 on an H200; if torch
runs out of memory, set ``XLA_PYTHON_CLIENT_MEM_FRACTION=.6``.

``--smoke`` runs the ResNet's stem alone (7x7/2 convolution, batch norm, ReLU, max-pool, average
pool, dense) at width 8, compiled with XLA's cheap backend passes (unless ``XLA_FLAGS`` is set),
with rbg noise keys and without the ``chunk=10`` row and Captum: compile time is all it spends on
CPU (the full ResNet-50's alone exceeds a test's budget; one bottleneck block adds ~50%); the
line format is the same.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import statistics
import sys
import time

if "--smoke" in sys.argv and "XLA_FLAGS" not in os.environ:
    # compile time is all a smoke run spends on CPU: skip XLA's expensive backend passes
    os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                               "--xla_llvm_disable_expensive_passes=true")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _resnet  # noqa: E402
from _timing import paired_rounds  # noqa: E402

import jaxattr as ja  # noqa: E402

# the bf16 path (``dtype=`` on the transforms), where this version of jaxattr has it
BF16 = all("dtype" in inspect.signature(t).parameters for t in (ja.saliency, ja.smoothgrad))


def ratio(num, den) -> tuple[float, float, float]:
    rs = [a / b for a, b in zip(num, den, strict=True)]
    if len(rs) < 2:
        return rs[0], rs[0], rs[0]
    q1, q2, q3 = statistics.quantiles(rs, n=4, method="inclusive")
    return q1, q2, q3


def line(name: str, ts, base, first=None) -> str:
    q1, q2, q3 = ratio(ts, base)
    med = statistics.median(ts)
    comp = "" if first is None else f"   (first call {first:.1f} s)"
    return f"{name:34s} {1e3 * med:10.2f} ms  x{q2:6.2f} [{q1:.2f}-{q3:.2f}]{comp}"


def captum_fns(params, xs, ys, n, chunk, steps, force_cpu, smoke):
    """Captum's methods on the torch twin, or (None, reason)."""
    if smoke and not force_cpu:
        return None, "--smoke (importing torch alone takes seconds)"
    try:
        import torch
        from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
    except ImportError as e:
        return None, f"not importable ({e.name}): pip install -e '.[bench]'"
    if not torch.cuda.is_available() and not force_cpu:
        return None, "torch sees no GPU (torch.cuda.is_available() is False)"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = _resnet.to_torch(params).to(dev)
    xt = torch.from_numpy(np.asarray(xs).transpose(0, 3, 1, 2).copy()).to(dev)
    yt = torch.from_numpy(np.asarray(ys).astype(np.int64)).to(dev)
    b = xt.shape[0]
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def timed(fn):
        def run():
            out = fn()
            sync()
            return out

        return run

    def raw():
        xi = xt.clone().requires_grad_(True)
        return torch.autograd.grad(model(xi).gather(1, yt[:, None]).sum(), xi)[0]

    sal, gbp = Saliency(model), GuidedBackprop(model)
    nt, ig = NoiseTunnel(Saliency(model)), IntegratedGradients(model)
    fns = {
        "torch raw gradient": raw,
        "Captum Saliency": lambda: sal.attribute(xt, target=yt, abs=False),
        "Captum GuidedBackprop": lambda: gbp.attribute(xt, target=yt),
        f"Captum smoothgrad N={n}": lambda: nt.attribute(
            xt, nt_type="smoothgrad", nt_samples=n, nt_samples_batch_size=chunk, stdevs=0.15,
            target=yt, abs=False),
        f"Captum vargrad N={n}": lambda: nt.attribute(
            xt, nt_type="vargrad", nt_samples=n, nt_samples_batch_size=chunk, stdevs=0.15,
            target=yt, abs=False),
        f"Captum IG {steps} steps": lambda: ig.attribute(
            xt, target=yt, n_steps=steps, method="gausslegendre", internal_batch_size=chunk * b),
    }
    return {k: timed(f) for k, f in fns.items()}, f"on {dev}, torch {torch.__version__}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=224, help="input height = width")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n", type=int, default=50, help="SmoothGrad / VarGrad samples")
    p.add_argument("--steps", type=int, default=50, help="IG steps")
    p.add_argument("--chunk", type=int, default=10, help="samples per pass of the fixed rows")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ds-batches", type=int, default=8, help="batches for explain_dataset")
    p.add_argument("--smoke", action="store_true",
                   help="tiny CPU run: 32x32, B=2, N=4, 4 IG steps, 2 repeats, the stem alone")
    p.add_argument("--captum-on-cpu", action="store_true",
                   help="run the Captum rows even when torch sees no GPU")
    args = p.parse_args(argv)
    blocks, width = _resnet.BLOCKS, _resnet.WIDTH
    if args.smoke:
        args.size, args.batch, args.n, args.steps, args.repeats = 32, 2, 4, 4, 2
        args.ds_batches, blocks, width = 2, (), 8
    chunk = min(args.chunk, args.n, args.steps)
    net = "ResNet-50" if (blocks, width) == (_resnet.BLOCKS, _resnet.WIDTH) else (
        f"ResNet-50 slimmed to blocks={blocks}, width={width}")
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}); {net}, B={args.batch} "
          f"at {args.size}x{args.size}, fp32, N={args.n}, IG {args.steps} steps, "
          f"median of {args.repeats} paired rounds")

    params = _resnet.init_params(jax.random.key(0), blocks=blocks, width=width)
    shape = (args.batch, args.size, args.size, 3)
    xs = jax.random.uniform(jax.random.key(1), shape, jnp.float32)
    ys = jnp.argmax(jax.jit(_resnet.logits)(params, xs), axis=1)
    # threefry's bits cost seconds of XLA:CPU compile time: a smoke run draws them with rbg
    keys = jax.random.split(jax.random.key(2, impl="rbg" if args.smoke else None), args.batch)
    score = lambda x, y: _resnet.logit_score(params, x, y)

    def jvm(a, *extra):
        f = jax.jit(jax.vmap(a))
        return lambda: jax.block_until_ready(f(xs, *extra, ys))

    def noise(transform, c):
        return jvm(transform(ja.saliency(score), sigma=0.15, n=args.n, chunk=c, relative=False),
                   keys)

    fns = {
        "plain gradient": jvm(jax.grad(score)),
        "guided backprop": jvm(ja.guided_backprop(score)),
        "rectgrad q=98": jvm(ja.rectgrad(score, q=98)),
        f"smoothgrad N={args.n} chunk=auto": noise(ja.smoothgrad, "auto"),
        f"vargrad N={args.n} chunk=auto": noise(ja.vargrad, "auto"),
        **({} if args.smoke else {  # the pass size of Captum's rows (a second compile)
            f"smoothgrad N={args.n} chunk={chunk}": noise(ja.smoothgrad, chunk)}),
        f"integrated gradients {args.steps} steps": jvm(
            ja.integrated_gradients(score, steps=args.steps, method="gausslegendre")),
    }
    if BF16:  # the model in bfloat16, statistics in float32, maps in the input's dtype
        bf16 = jnp.bfloat16
        fns["saliency bf16"] = jvm(ja.saliency(score, dtype=bf16))
        fns[f"smoothgrad N={args.n} chunk=auto bf16"] = jvm(
            ja.smoothgrad(ja.saliency(score, dtype=bf16), sigma=0.15, n=args.n, chunk="auto",
                          relative=False, dtype=bf16), keys)
    captum, why = captum_fns(params, xs, ys, args.n, chunk, args.steps, args.captum_on_cpu,
                             args.smoke)
    if captum:
        fns.update(captum)
    times, first, _ = paired_rounds(fns, args.repeats)
    base = times["plain gradient"]
    for name in fns:
        if name == "torch raw gradient":
            print("-- Captum " + why + " (ratio: to jaxattr's plain gradient)")
        print(line(name, times[name], base, first[name] - statistics.median(times[name])))
        if name == f"smoothgrad N={args.n} chunk=auto" and not BF16:
            print(f"{'smoothgrad bf16':34s} bf16: not implemented (no dtype= option yet)")
    if BF16:  # the bf16 maps really differ from fp32, and stay close
        a = np.asarray(fns["plain gradient"](), np.float64).ravel()
        b = np.asarray(fns["saliency bf16"](), np.float64).ravel()
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        print(f"saliency bf16 vs fp32: cosine {cos:.4f}, max abs diff {np.abs(a - b).max():.1e}")
    if not captum:
        print(f"captum: skipped, {why}")
    else:  # the maps agree across frameworks (noise methods draw different noise: not compared)
        for ours, theirs in (("plain gradient", "torch raw gradient"),
                             ("guided backprop", "Captum GuidedBackprop"),
                             (f"integrated gradients {args.steps} steps",
                              f"Captum IG {args.steps} steps")):
            a = np.asarray(fns[ours](), np.float64)
            b = fns[theirs]().detach().cpu().numpy().transpose(0, 2, 3, 1).astype(np.float64)
            print(f"max abs diff {ours} vs {theirs}: {np.abs(a - b).max():.2e} "
                  f"(max abs value {np.abs(b).max():.2e})")
    if captum:  # jaxattr / Captum, per round
        print("-- jaxattr / Captum (same rounds)")
        fixed = f"smoothgrad N={args.n} chunk={chunk}"
        pairs = [("plain gradient", "torch raw gradient"),
                 ("plain gradient", "Captum Saliency"),
                 ("guided backprop", "Captum GuidedBackprop"),
                 (f"smoothgrad N={args.n} chunk=auto", f"Captum smoothgrad N={args.n}"),
                 (fixed, f"Captum smoothgrad N={args.n}"),
                 (f"vargrad N={args.n} chunk=auto", f"Captum vargrad N={args.n}"),
                 (f"integrated gradients {args.steps} steps", f"Captum IG {args.steps} steps")]
        for ours, theirs in pairs:
            if ours in times:
                q1, q2, q3 = ratio(times[ours], times[theirs])
                print(f"{ours + ' / ' + theirs:60s} {q2:6.2f} [{q1:.2f}-{q3:.2f}]")

    # explain_dataset: examples/s over ds_batches batches (compiled by a one-batch warm-up)
    sal = ja.saliency(score)
    data = (np.asarray(jnp.tile(xs, (args.ds_batches, 1, 1, 1))),
            np.asarray(jnp.tile(ys, args.ds_batches)))
    ja.explain_dataset(sal, (data[0][:args.batch], data[1][:args.batch]),
                       batch_size=args.batch, progress=False)
    t0 = time.perf_counter()
    out = ja.explain_dataset(sal, data, batch_size=args.batch, progress=False)
    jax.block_until_ready(out)
    dt = time.perf_counter() - t0
    n_ex = args.batch * args.ds_batches
    plain = args.batch / statistics.median(base)
    eps = n_ex / dt
    ok = math.isfinite(eps) and np.asarray(out).shape == data[0].shape
    print(f"{'explain_dataset saliency':34s} {eps:10.1f} examples/s  x{eps / plain:6.2f} of the "
          f"plain gradient's {plain:.1f} examples/s ({n_ex} examples, output ok: {ok})")


if __name__ == "__main__":
    main()
