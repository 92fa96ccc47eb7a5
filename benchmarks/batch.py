"""Benchmark: explain_dataset vs a pure compute loop over pre-placed device batches.

Workload: the per-label saliency of the RectGrad paper's CIFAR CNN (benchmarks/_cnn.py),
``data = (images, labels)``, so each example is explained for its own label. The baseline is the
best a hand-written loop can do: every batch already on the devices (sharded like explain_dataset
shards it), ``jit(vmap(attr))`` dispatched back to back, one ``block_until_ready`` at the end; it
never reads data, copies results back or writes them. explain_dataset reads numpy arrays, hashes
them, transfers, computes, copies back and writes (in memory, or into an output directory).

Each configuration runs in a fresh subprocess with N forced host devices (XLA_FLAGS); ``--processes
2`` runs 2 jax.distributed processes with 2 devices each. Repeats are paired and interleaved
(baseline, in memory, on disk; the order rotates), after one warm-up of each (compilation is not
timed). Printed: median examples/s of each, the median ratio explain_dataset / baseline of the
paired repeats and its spread (min..max). Goal: >= 0.90.

    python benchmarks/batch.py                        # 1 and 4 devices, then 2 processes x 2
    python benchmarks/batch.py --n 256 --repeats 3    # quicker
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# this folder's modules must not shadow the standard library (e.g. a select.py would)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def child(args: argparse.Namespace) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if args.processes > 1:
        jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                                   num_processes=args.processes, process_id=args.pid)
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sys.path.append(HERE)
    import _cnn

    import jaxattr as ja

    params = _cnn.init_params(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, *_cnn.IMAGE_SHAPE)).astype(np.float32)
    y = rng.integers(0, _cnn.NUM_CLASSES, size=args.n).astype(np.int32)

    def attr(x, y):
        return jax.grad(lambda x: _cnn.logits(params, x[None])[0, y])(x)

    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    mesh = Mesh(np.array(devices), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    b = args.batch
    assert b % len(devices) == 0 and args.n % b == 0, "batch must divide n and fill the mesh"
    per = b // jax.process_count()
    lo = jax.process_index() * per

    def place(a, start):
        return jax.make_array_from_process_local_data(sharding, a[start + lo:start + lo + per],
                                                      (b, *a.shape[1:]))

    placed = [(place(x, s), place(y, s)) for s in range(0, args.n, b)]
    step = jax.jit(jax.vmap(attr), out_shardings=sharding)

    def pure():
        jax.block_until_ready([step(xb, yb) for xb, yb in placed])

    tmp = args.tmp  # shared by the processes of a run
    counter = [0]

    def in_memory():
        ja.explain_dataset(attr, (x, y), batch_size=b, progress=False)

    def on_disk():
        counter[0] += 1
        ja.explain_dataset(attr, (x, y), batch_size=b, progress=False,
                           out=os.path.join(tmp, f"run{counter[0]}"))

    runs = {"pure loop": pure, "explain_dataset": in_memory, "explain_dataset out=": on_disk}
    if args.processes > 1:
        del runs["explain_dataset"]  # several processes need out=
    names = list(runs)
    for fn in runs.values():  # warm-up: compile
        fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    if jax.process_index() == 0:
        print("RESULT " + json.dumps(times), flush=True)
    if args.processes > 1:
        jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_config(args: argparse.Namespace, devices: int, processes: int) -> dict:
    base = [sys.executable, os.path.abspath(__file__), "--child", "--devices", str(devices),
            "--processes", str(processes), "--n", str(args.n), "--batch", str(args.batch),
            "--repeats", str(args.repeats), "--port", str(_free_port()),
            "--tmp", tempfile.mkdtemp(prefix="jaxattr-bench-")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([*base, "--pid", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    try:
        outs = [p.communicate(timeout=1800) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode:
            sys.exit(f"child failed:\n{err[-3000:]}")
    line = next(ln for ln in outs[0][0].splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def report(label: str, n: int, times: dict) -> None:
    base = times["pure loop"]
    print(f"\n{label}: {n} examples per run, median of {len(base)} paired repeats")
    print(f"  {'':<24} {'examples/s':>11} {'ratio vs pure':>14} {'spread (min..max)':>18}")
    for name, ts in times.items():
        rate = n / statistics.median(ts)
        ratios = [b / t for b, t in zip(base, ts, strict=True)]  # > 1: faster than the baseline
        print(f"  {name:<24} {rate:>11.1f} {statistics.median(ratios):>14.3f} "
              f"{min(ratios):>8.3f}..{max(ratios):<8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="examples per run")
    ap.add_argument("--batch", type=int, default=64, help="batch size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--devices", type=str, default="1,4", help="forced host device counts")
    ap.add_argument("--processes", type=int, default=2,
                    help="also run this many jax.distributed processes x 2 devices (0: skip)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per configuration")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pid", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.devices = int(args.devices)
        child(args)
        return
    print(f"explain_dataset vs pure loop: CIFAR CNN per-label saliency, batch {args.batch}, "
          f"{os.cpu_count()} CPU cores")
    for d in (int(v) for v in args.devices.split(",")):
        report(f"1 process x {d} device(s)", args.n, run_config(args, d, 1))
    if args.processes > 1:
        report(f"{args.processes} processes x 2 devices (jax.distributed)", args.n,
               run_config(args, 2, args.processes))


if __name__ == "__main__":
    main()
