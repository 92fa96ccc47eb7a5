"""jaxattr's AttnLRP against lxt (AttnLRP's reference implementation) on the same encoder.

    pip install --no-deps lxt==2.1     # its explicit rules need only torch (bench extra)
    python benchmarks/attnlrp_lxt.py

The model is ``tests/attnlrp_numpy.py``'s 2-block pre-LN transformer encoder (float64, identical
weights), written once in JAX (Flax LayerNorm, ``jax.nn.softmax``, GELU) and once in torch with
``lxt.explicit.functional``'s rules (``linear_epsilon``, ``matmul``, ``softmax`` with the
``1/sqrt(d)`` scaling as its temperature, ``add2``, ``layer_norm``, identity at GELU). lxt adds
its stabiliser as ``z + eps`` where jaxattr (and Zennit) use ``z + eps * sign(z)``; the two agree
as eps -> 0. Printed: the relative max difference of the input relevance at eps = 1e-12 in every
rule (parity), and how far lxt's default epsilons (linear 1e-6, matmul and add 1e-8, LayerNorm
1e-6) move its map from eps = 0 (why parity is only meaningful at a stated epsilon). Not a test;
lxt is not a dependency (it pulls in transformers, timm and bitsandbytes).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
jax.config.update("jax_enable_x64", True)

import attnlrp_numpy as ref  # noqa: E402
import flax.linen as nn  # noqa: E402

import jaxattr as ja  # noqa: E402


def jax_encoder(p, X):
    dh = ref.D // ref.HEADS

    def ln(x, g, b):
        return nn.LayerNorm(epsilon=ref.LN_EPS).apply({"params": {"scale": g, "bias": b}}, x)

    x = X
    for b in p["blocks"]:
        a = ln(x, b["ln1_g"], b["ln1_b"])
        q, k, v = (a @ b[f"W{n}"] + b[f"b{n}"][None] for n in "qkv")
        heads = []
        for h in range(ref.HEADS):
            sl = slice(h * dh, (h + 1) * dh)
            att = jax.nn.softmax(q[:, sl] @ k[:, sl].T / np.sqrt(dh), axis=-1)
            heads.append(att @ v[:, sl])
        x = x + (jnp.concatenate(heads, axis=1) @ b["Wo"] + b["bo"][None])
        m = ln(x, b["ln2_g"], b["ln2_b"])
        x = x + (jax.nn.gelu(m @ b["W1"] + b["b1"][None], approximate=True) @ b["W2"]
                 + b["b2"][None])
    return ln(x, p["lnf_g"], p["lnf_b"])[0] @ p["Wh"] + p["bh"]


def lxt_relevance(p, X, t, eps_linear, eps_matmul, eps_add, eps_ln):
    import torch
    from lxt.explicit import functional as lf

    class Identity(torch.autograd.Function):  # AttnLRP's identity rule at GELU
        @staticmethod
        def forward(ctx, x):
            return torch.nn.functional.gelu(x, approximate="tanh")

        @staticmethod
        def backward(ctx, r):
            return r

    T = {k: torch.tensor(v) for k, v in p.items() if isinstance(v, np.ndarray)}
    blocks = [{k: torch.tensor(v) for k, v in b.items()} for b in p["blocks"]]
    dh = ref.D // ref.HEADS

    def ln(x, g, b):
        return lf.layer_norm_grad_fn.apply(x, g, b, ref.LN_EPS, eps_ln)

    def lin(x, w, b):
        return lf.linear_epsilon(x, w.T.contiguous(), b, epsilon=eps_linear)

    x0 = torch.tensor(X, requires_grad=True)
    x = x0
    for b in blocks:
        a = ln(x, b["ln1_g"], b["ln1_b"])
        q, k, v = (lin(a, b[f"W{n}"], b[f"b{n}"]) for n in "qkv")
        heads = []
        for h in range(ref.HEADS):
            sl = slice(h * dh, (h + 1) * dh)
            s = lf.matmul(q[:, sl], k[:, sl].T, epsilon=eps_matmul)
            att = lf.softmax(s, -1, temperature=float(np.sqrt(dh)))
            heads.append(lf.matmul(att, v[:, sl], epsilon=eps_matmul))
        x = lf.add2(x, lin(torch.cat(heads, 1), b["Wo"], b["bo"]), epsilon=eps_add)
        m = ln(x, b["ln2_g"], b["ln2_b"])
        x = lf.add2(x, lin(Identity.apply(lin(m, b["W1"], b["b1"])), b["W2"], b["b2"]),
                    epsilon=eps_add)
    logits = lin(ln(x, T["lnf_g"], T["lnf_b"])[0], T["Wh"], T["bh"])
    (logits[t] * 1.0).backward(logits[t].detach().clone())  # relevance = the logit's value
    return x0.grad.numpy()


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def main() -> None:
    try:
        import lxt  # noqa: F401
    except ImportError:
        print("lxt is not installed: pip install --no-deps lxt==2.1 (needs torch)")
        return
    X = np.random.default_rng(1000).normal(size=(5, ref.D))
    for bias in (False, True):
        p = ref.init_params(0, bias=bias, act="gelu")
        pj = {**{k: jnp.asarray(v) for k, v in p.items() if isinstance(v, np.ndarray)},
              "blocks": [{k: jnp.asarray(v) for k, v in b.items()} for b in p["blocks"]]}
        t = int(np.argmax(ref.forward(p, X)))
        def score(x, pj=pj, t=t):
            return jax_encoder(pj, x)[t]

        ours = {e: np.asarray(ja.lrp(score, ja.relevance.attn_lrp(e))(jnp.asarray(X)))
                for e in (1e-12, 0.0)}
        lxt_tiny = lxt_relevance(p, X, t, 1e-12, 1e-12, 1e-12, 1e-12)
        lxt_default = lxt_relevance(p, X, t, 1e-6, 1e-8, 1e-8, 1e-6)
        numpy_ref = ref.attnlrp(p, X, t, eps=1e-12)
        print(f"bias={bias}: jaxattr vs lxt (eps=1e-12 everywhere) {rel(ours[1e-12], lxt_tiny):.2e}"
              f"; jaxattr vs numpy reference {rel(ours[1e-12], numpy_ref):.2e}; "
              f"lxt's default epsilons vs eps=0: {rel(lxt_default, ours[0.0]):.2e}")


if __name__ == "__main__":
    main()
