"""Smoke test of benchmarks/gpu.py: ``--smoke`` runs on CPU and prints every row with a ratio."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
ROWS = ("plain gradient", "guided backprop", "rectgrad q=98", "smoothgrad N=4 chunk=auto",
        "vargrad N=4 chunk=auto", "integrated gradients 4 steps")


def test_gpu_benchmark_smoke():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # --smoke sets its fast-compile flags itself
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ROWS:
        m = re.search(rf"^{re.escape(name)}\s+([0-9.]+) ms\s+x\s*([0-9.eE+-]+|nan|inf) \[",
                      out, re.M)
        assert m, f"no line for {name!r} in:\n{out}"
        ms, ratio = float(m.group(1)), float(m.group(2))
        assert math.isfinite(ms) and ms > 0 and math.isfinite(ratio) and ratio > 0, m.group(0)
    assert re.search(r"^plain gradient\s+\S+ ms\s+x\s*1\.00 ", out, re.M), out
    # bf16 rows where jaxattr has dtype=, else the script says it has none
    m = re.search(r"^smoothgrad N=4 chunk=auto bf16\s+([0-9.]+) ms\s+x\s*([0-9.]+) \[", out, re.M)
    assert "bf16: not implemented" in out or (m and float(m.group(2)) > 0), out
    m = re.search(r"^saliency bf16 vs fp32: cosine ([0-9.]+)", out, re.M)
    assert "bf16: not implemented" in out or (m and float(m.group(1)) > 0.9), out
    m = re.search(r"^explain_dataset saliency\s+([0-9.]+) examples/s\s+x\s*([0-9.]+) .*"
                  r"output ok: True", out, re.M)
    assert m and math.isfinite(float(m.group(1))) and float(m.group(1)) > 0, out
    # Captum rows need a GPU (or --captum-on-cpu); without one the script says why
    assert re.search(r"^captum: skipped, |^Captum Saliency\s", out, re.M), out
