"""explain_dataset on 2 real jax.distributed processes (2 forced CPU devices each) on one machine:
the merged output equals the single-process result bit for bit, and after one process is
SIGKILLed mid-run a restart of both completes it, identical, without starting over."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

import jaxattr as ja

sys.path.insert(0, os.path.dirname(__file__))
import _multihost_worker as worker  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "_multihost_worker.py")
TIMEOUT = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(nproc: int, out, slow: float) -> list[subprocess.Popen]:
    port = _free_port()
    env = dict(os.environ)  # XLA_FLAGS as this process's (compiled alike); the worker sets devices
    env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                              env.get("XLA_FLAGS", "")).strip()
    return [subprocess.Popen([sys.executable, WORKER, str(i), str(nproc), str(port), str(out),
                              str(slow)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in range(nproc)]


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        text, _ = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, text[-4000:]
        outs.append(text)
    return outs


def _committed(out, pid: int) -> int:
    try:
        with open(os.path.join(out, "progress", f"p{pid:05d}.json")) as fh:
            return json.load(fh)["batches"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _reference():
    data, attr, key = worker.problem()
    single = ja.explain_dataset(attr, data, batch_size=worker.BATCH, key=key, progress=False)
    # independent check of the single-process result: one plain vmap over the whole dataset
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(np.arange(worker.N, dtype=np.uint32))
    plain = jax.vmap(attr)(data[0], keys, data[1])
    for name in ("grad", "noisy", "score"):  # float32: batched vs whole-array rounding
        np.testing.assert_allclose(single[name], plain[name], rtol=1e-5, atol=1e-6)
    return single


def _load(out) -> dict:
    return {n: np.load(os.path.join(out, f"{n}.npy")) for n in ("grad", "noisy", "score")}


def test_two_processes_equal_single_process_and_survive_sigkill(tmp_path):
    single = _reference()
    procs: list[subprocess.Popen] = []
    try:
        # 1. a full 2-process run: the merged files equal the single-process result bit for bit
        procs = _start(2, tmp_path / "full", 0.0)
        texts = _finish(procs)
        assert all("WORKER-DONE" in t for t in texts)
        merged = _load(tmp_path / "full")
        for name in ("grad", "noisy", "score"):
            np.testing.assert_array_equal(merged[name], single[name])
        manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
        assert manifest["complete"] and manifest["rows"] == worker.N
        assert manifest["fingerprint"]["layout"] == {"process_count": 2,
                                                     "rows": [[0, 4], [4, 6]]}
        assert len(manifest["data_hash"]) == 2

        # 2. SIGKILL process 1 once both have committed 2 of 7 batches; kill the stranded one
        out = tmp_path / "killed"
        procs = _start(2, out, 0.4)
        deadline = time.monotonic() + TIMEOUT
        while min(_committed(out, 0), _committed(out, 1)) < 2:
            assert time.monotonic() < deadline and procs[1].poll() is None, "no progress"
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        _kill(procs)
        done_before = min(_committed(out, 0), _committed(out, 1))
        assert 2 <= done_before < 7
        assert not json.loads((out / "manifest.json").read_text())["complete"]

        # 3. restart both: complete, identical, resumed (not recomputed from the start)
        procs = _start(2, out, 0.0)
        texts = _finish(procs)
        for t in texts:
            first = int(t.split("first=")[1].split()[0])
            assert first == (done_before + 1) * worker.BATCH, t[-2000:]
        resumed = _load(out)
        for name in ("grad", "noisy", "score"):
            np.testing.assert_array_equal(resumed[name], single[name])
        assert json.loads((out / "manifest.json").read_text())["data_hash"] == \
            manifest["data_hash"]
    finally:
        _kill(procs)
