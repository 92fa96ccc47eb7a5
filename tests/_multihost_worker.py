"""One process of an explain_dataset run, for tests/test_multihost.py and tests/test_batch.py.

    python tests/_multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT SLOW

With NUM_PROCESSES > 1 it joins ``jax.distributed`` at ``localhost:PORT`` with 2 forced CPU
devices; SLOW seconds are slept after each committed batch (so a test can kill it mid-run). The
problem (data, attr_fn, key, batch size) is defined here and imported by the tests for the
single-process reference.
"""

from __future__ import annotations

import os
import sys
import time

N, BATCH = 37, 6  # 7 batches; 6 is not a multiple of the 4 devices of 2 processes: padded to 8
W = None


def problem():
    """(data, attr_fn, key) of the run; attr_fn(x, key, label) returns a pytree of 3 leaves."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6)).astype(np.float32)
    y = rng.integers(0, 4, size=N).astype(np.int32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32))

    def score(x, y):
        return jnp.tanh(x @ w)[y]

    def attr(x, key, y):
        g = jax.grad(score)(x, y)
        return {"grad": g, "noisy": g + 0.1 * jax.random.normal(key, x.shape, x.dtype),
                "score": score(x, y)}

    return (x, y), attr, jax.random.key(7)


def main(argv: list[str]) -> None:
    pid, nproc, port, out, slow = int(argv[0]), int(argv[1]), argv[2], argv[3], float(argv[4])
    flags = os.environ.get("XLA_FLAGS", "")  # the test process's (tests/conftest.py), plus devices
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_enable_x64", True)  # as tests/conftest.py, so fingerprints agree
    if nproc > 1:
        jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                                   num_processes=nproc, process_id=pid)
        assert jax.process_count() == nproc and jax.device_count() == 2 * nproc
    import jaxattr as ja

    data, attr, key = problem()
    calls: list[int] = []

    def callback(done: int, total: int | None) -> None:
        calls.append(done)
        if slow:
            time.sleep(slow)

    ja.explain_dataset(attr, data, batch_size=BATCH, key=key, out=out, progress=False,
                       callback=callback)
    print(f"WORKER-DONE pid={pid} first={calls[0] if calls else -1} calls={len(calls)}",
          flush=True)
    if nproc > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
