"""Hand-written numpy AttnLRP reference for a tiny pre-LN transformer encoder (float64).

AttnLRP: Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
Transformers", ICML 2024, arXiv:2402.05602. Proposition/equation numbers below are those of the
paper as cited by the authors' reference implementation (LXT, ``lxt/explicit/functional.py``).
This module is a reference for a future jaxattr AttnLRP; it imports numpy only.

Model (``init_params(seed)``; d = 8, 2 heads of size 4, MLP width 16, 3 classes)
------------------------------------------------------------------------------
Input ``X`` (T, d) = token embeddings, row 0 is the class token (T = 5 in the checks)::

    for each of the 2 blocks:
        A_in = LN1(X);  X = X + Attn(A_in)                  # pre-LN residual blocks
        M_in = LN2(X);  X = X + W2^T act(W1^T M_in + b1) + b2
    logits = LNf(X)[0] @ Wh + bh                           # head on the class token

``Attn(x) = concat_h(softmax(q_h k_h^T / sqrt(dh)) v_h) @ Wo + bo`` with ``q = x Wq + bq`` etc.
Linear weights are stored ``(in, out)``; ``LN(x) = gamma * (x - mean) / sqrt(var + 1e-5) + beta``
per token; ``act`` = GELU (tanh approximation) or ReLU (``init_params(..., act="relu")``).

Rules (z is a layer output, R its relevance; ``stab(z) = z + eps * sign(z)``, sign(0) := 1)
----------------------------------------------------------------------------------------
* Linear ``z_j = sum_i x_i W_ij + b_j``: LRP-epsilon (paper Eq. 8; Bach et al. 2015 Eq. 16)::

      R_i = sum_j x_i W_ij / stab(z_j) * R_j

  The bias keeps ``sum_j b_j R_j / stab(z_j)`` (absorbed), eps absorbs ``eps-part``.
* Elementwise activation (GELU/ReLU): identity rule ``R_in = R_out`` (paper Sec. 3, the rule
  for single-input single-output element-wise functions).
* Residual add ``z = a + b``: epsilon rule on the sum ``R_a = a / stab(z) * R``,
  ``R_b = b / stab(z) * R`` (Eq. 8 on an addition; conservative up to eps).
* Softmax ``s = softmax(x)`` along the key axis, x = the scaled scores: Proposition 3.1 (deep
  Taylor decomposition at x itself, bias kept)::

      R_x_i = x_i * (R_s_i - s_i * sum_j R_s_j)

  i.e. ``R_x_i = sum_j x_i (ds_j/dx_i) R_s_j / s_j`` with ``ds_j/dx_i = s_j (delta_ij - s_i)``.
  Not conservative: the Taylor bias ``sum_j R_s_j (1 - sum_i x_i(delta_ij - s_i))`` =
  ``sum_j R_s_j - sum_i R_x_i`` is absorbed (returned as ``absorbed["softmax"]``).
  The scaling ``1/sqrt(dh)`` before it is a linear map of one input: relevance passes unchanged.
* Product of two input-dependent matrices ``O = A @ B`` (``q k^T`` and ``softmax @ v``):
  Proposition 3.3 (epsilon rule on the sum, then the uniform rule of Prop. 3.2 splitting every
  product ``A_ip B_pj`` 50/50)::

      R_A_ip = sum_j A_ip B_pj / (2 stab(O_ij)) * R_O_ij
      R_B_pj = sum_i A_ip B_pj / (2 stab(O_ij)) * R_O_ij

  so ``sum R_A + sum R_B = sum R_O`` up to eps.
* LayerNorm: Proposition 3.4 (identity rule on the normalisation): ``c = 1/sqrt(var + 1e-5)``
  is held constant, which makes LN the per-token linear map
  ``y_j = sum_i x_i W_ij + beta_j`` with ``W_ij = gamma_j * c * (delta_ij - 1/d)``;
  LRP-epsilon through that map::

      R_i = sum_j x_i gamma_j c (delta_ij - 1/d) / stab(y_j) * R_j
          = c x_i [gamma_i R_i / stab(y_i) - (1/d) sum_j gamma_j R_j / stab(y_j)]

  (= LXT's "epsilon on x - mean, identity on 1/std and on * gamma, epsilon on + beta"; with
  eps = 0 the two agree exactly.) beta absorbs ``sum_j beta_j R_j / stab(y_j)``.
* Branching (the LN output feeds q, k and v; the residual stream feeds both the branch and the
  skip): relevances of all uses are summed.
* Start: ``R_logits = onehot(target) * logits[target]``.

Conservation (``check()``; printed when run as a script)
--------------------------------------------------------
With ``bias=False`` (all biases and LN betas zero) and eps = 1e-12 every rule except the
softmax is conservative, so ``sum(R_X) + absorbed["softmax"] = logits[target]`` to ~1e-11
(the eps share; seed 0: GELU logit 0.9931 = sum(R_X) 0.6727 + softmax 0.3204, error 8e-12;
ReLU 0.9565 = 0.6595 + 0.2970, error 7e-12; eps = 0 gives the same map to 2e-11).
``sum(R_X)`` alone is *not* the logit: the softmax Taylor bias absorbs O(0.1-1) here.
With biases, the bias shares are computed separately (``b_j R_j / stab(z_j)`` at every linear
map / LN beta) and the leftover booked as "eps" stays < 1e-8 (seed 0: ~3e-12), i.e.
``sum(R_X) + absorbed["softmax"] + absorbed["bias"] = logit`` up to the eps share. Pieces are
also checked against finite differences:
LRP-0 of a bias-free linear chain = gradient x input; the softmax rule = x * J^T (R/s); the LN
rule = x * J_c^T (R/y) for the Jacobian J_c with c frozen; the uniform rule conserves.
"""

from __future__ import annotations

import numpy as np

D, HEADS, D_FF, N_CLASSES, N_BLOCKS = 8, 2, 16, 3, 2
LN_EPS = 1e-5
DEFAULT_EPS = 1e-12


# ------------------------------------------------------------------------------ parameters


def init_params(seed: int = 0, bias: bool = True, act: str = "gelu") -> dict:
    """Random float64 parameters; ``bias=False`` zeros every bias and LayerNorm beta."""
    rng = np.random.default_rng(seed)

    def lin(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        w = rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)
        b = 0.1 * rng.normal(size=n_out) if bias else np.zeros(n_out)
        return w, b

    def ln() -> tuple[np.ndarray, np.ndarray]:
        g = 1.0 + 0.2 * rng.normal(size=D)
        b = 0.1 * rng.normal(size=D) if bias else np.zeros(D)
        return g, b

    blocks = []
    for _ in range(N_BLOCKS):
        p = {}
        p["ln1_g"], p["ln1_b"] = ln()
        for n in ("q", "k", "v", "o"):
            p[f"W{n}"], p[f"b{n}"] = lin(D, D)
        p["ln2_g"], p["ln2_b"] = ln()
        p["W1"], p["b1"] = lin(D, D_FF)
        p["W2"], p["b2"] = lin(D_FF, D)
        blocks.append(p)
    lnf_g, lnf_b = ln()
    wh, bh = lin(D, N_CLASSES)
    return {"blocks": blocks, "lnf_g": lnf_g, "lnf_b": lnf_b, "Wh": wh, "bh": bh, "act": act}


# ------------------------------------------------------------------------------ forward


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0.0)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (y, c) with c = 1/sqrt(var + LN_EPS) per token, shape (T, 1)."""
    mu = x.mean(-1, keepdims=True)
    c = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + LN_EPS)
    return g * (x - mu) * c + b, c


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _forward(params: dict, X: np.ndarray) -> tuple[np.ndarray, list]:
    dh = D // HEADS
    cache = []
    x = np.asarray(X, dtype=np.float64)
    for p in params["blocks"]:
        c = {"x_in": x}
        c["a_in"], c["c1"] = _layernorm(x, p["ln1_g"], p["ln1_b"])
        q, k, v = (c["a_in"] @ p[f"W{n}"] + p[f"b{n}"] for n in "qkv")
        c["q"], c["k"], c["v"] = q, k, v
        heads = []
        for h in range(HEADS):
            sl = slice(h * dh, (h + 1) * dh)
            s = q[:, sl] @ k[:, sl].T
            logit = s / np.sqrt(dh)
            a = _softmax(logit)
            o = a @ v[:, sl]
            c[f"h{h}"] = {"s": s, "logit": logit, "a": a, "o": o}
            heads.append(o)
        c["ctx"] = np.concatenate(heads, axis=1)
        c["attn"] = c["ctx"] @ p["Wo"] + p["bo"]
        x = x + c["attn"]
        c["x_mid"] = x
        c["m_in"], c["c2"] = _layernorm(x, p["ln2_g"], p["ln2_b"])
        c["pre"] = c["m_in"] @ p["W1"] + p["b1"]
        c["post"] = _act(c["pre"], params["act"])
        c["mlp"] = c["post"] @ p["W2"] + p["b2"]
        x = x + c["mlp"]
        cache.append(c)
    yf, cf = _layernorm(x, params["lnf_g"], params["lnf_b"])
    logits = yf[0] @ params["Wh"] + params["bh"]
    cache.append({"x_out": x, "yf": yf, "cf": cf})
    return logits, cache


def forward(params: dict, X: np.ndarray) -> np.ndarray:
    """Class logits (N_CLASSES,) read from the class token (row 0) of X (T, D)."""
    return _forward(params, X)[0]


# ------------------------------------------------------------------------------ rules


def stab(z: np.ndarray, eps: float) -> np.ndarray:
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def lrp_linear(x, W, b, R, eps):
    """LRP-epsilon for z = x @ W + b (x (..., n_in), W (n_in, n_out)); Eq. 8."""
    z = x @ W + b
    return x * ((R / stab(z, eps)) @ W.T)


def lrp_add(a, b, R, eps):
    """Epsilon rule on z = a + b; returns (R_a, R_b)."""
    r = R / stab(a + b, eps)
    return a * r, b * r


def lrp_softmax(x, s, R):
    """Proposition 3.1: R_x = x * (R - s * sum(R)) along the last axis (s = softmax(x))."""
    return x * (R - s * R.sum(-1, keepdims=True))


def lrp_matmul(A, B, R, eps):
    """Proposition 3.3 (epsilon + uniform rule) for O = A @ B; returns (R_A, R_B)."""
    r = R / (2.0 * stab(A @ B, eps))
    return A * (r @ B.T), B * (A.T @ r)


def lrp_layernorm(x, g, b, R, eps):
    """Proposition 3.4: 1/std held constant, LRP-epsilon through the resulting linear map."""
    y, c = _layernorm(x, g, b)
    r = g * R / stab(y, eps)
    return c * x * (r - r.mean(-1, keepdims=True))


# ------------------------------------------------------------------------------ AttnLRP


def attnlrp(
    params: dict,
    X: np.ndarray,
    target: int,
    eps: float = DEFAULT_EPS,
    return_absorbed: bool = False,
):
    """AttnLRP relevance of the input embeddings X (T, D) for ``logits[target]``.

    ``eps`` stabilises every division (linear, add, LayerNorm, matmul); eps = 0 is allowed when
    no denominator vanishes. With ``return_absorbed`` also returns a dict with the relevance
    absorbed by the softmax Taylor bias, by the biases/betas and by eps (their sum plus
    ``R.sum()`` is the logit)."""
    logits, cache = _forward(params, X)
    dh = D // HEADS
    absorbed = {"softmax": 0.0, "bias": 0.0, "eps": 0.0}

    def account(kind: str, r_out: np.ndarray, r_in_total: float, z=None, bias=None):
        """Book relevance lost in one rule: bias share if known, rest to ``kind``."""
        lost = float(r_out.sum()) - r_in_total
        if bias is not None:
            share = float((bias * r_out / stab(z, eps)).sum())
            absorbed["bias"] += share
            lost -= share
        absorbed[kind] += lost

    # head on the class token
    top = cache[-1]
    r_logits = np.zeros(N_CLASSES)
    r_logits[target] = logits[target]
    yf0 = top["yf"][0]
    r_yf0 = lrp_linear(yf0, params["Wh"], params["bh"], r_logits, eps)
    account("eps", r_logits, r_yf0.sum(), logits, params["bh"])
    r_yf = np.zeros_like(top["yf"])
    r_yf[0] = r_yf0
    R = lrp_layernorm(top["x_out"], params["lnf_g"], params["lnf_b"], r_yf, eps)
    account("eps", r_yf, R.sum(), top["yf"], params["lnf_b"])

    for p, c in zip(reversed(params["blocks"]), reversed(cache[:-1]), strict=False):
        # x_out = x_mid + mlp
        r_mid, r_mlp = lrp_add(c["x_mid"], c["mlp"], R, eps)
        account("eps", R, r_mid.sum() + r_mlp.sum())
        r_post = lrp_linear(c["post"], p["W2"], p["b2"], r_mlp, eps)
        account("eps", r_mlp, r_post.sum(), c["mlp"], p["b2"])
        r_pre = r_post  # identity rule (GELU/ReLU)
        r_min = lrp_linear(c["m_in"], p["W1"], p["b1"], r_pre, eps)
        account("eps", r_pre, r_min.sum(), c["pre"], p["b1"])
        r_x = lrp_layernorm(c["x_mid"], p["ln2_g"], p["ln2_b"], r_min, eps)
        account("eps", r_min, r_x.sum(), c["m_in"], p["ln2_b"])
        R = r_mid + r_x
        # x_mid = x_in + attn
        r_in, r_attn = lrp_add(c["x_in"], c["attn"], R, eps)
        account("eps", R, r_in.sum() + r_attn.sum())
        r_ctx = lrp_linear(c["ctx"], p["Wo"], p["bo"], r_attn, eps)
        account("eps", r_attn, r_ctx.sum(), c["attn"], p["bo"])
        r_q, r_k, r_v = (np.zeros_like(c[n]) for n in "qkv")
        for h in range(HEADS):
            sl = slice(h * dh, (h + 1) * dh)
            ch = c[f"h{h}"]
            r_o = r_ctx[:, sl]
            r_a, r_vh = lrp_matmul(ch["a"], c["v"][:, sl], r_o, eps)
            account("eps", r_o, r_a.sum() + r_vh.sum())
            r_logit = lrp_softmax(ch["logit"], ch["a"], r_a)
            account("softmax", r_a, r_logit.sum())
            r_s = r_logit  # 1/sqrt(dh): one-input linear
            r_qh, r_kT = lrp_matmul(c["q"][:, sl], c["k"][:, sl].T, r_s, eps)
            account("eps", r_s, r_qh.sum() + r_kT.sum())
            r_q[:, sl], r_k[:, sl], r_v[:, sl] = r_qh, r_kT.T, r_vh
        r_ain = np.zeros_like(c["a_in"])
        for n, r_n in zip("qkv", (r_q, r_k, r_v), strict=False):
            r_ain += lrp_linear(c["a_in"], p[f"W{n}"], p[f"b{n}"], r_n, eps)
            account("eps", r_n, 0.0, c[n], p[f"b{n}"])
        absorbed["eps"] -= float(r_ain.sum())
        r_x = lrp_layernorm(c["x_in"], p["ln1_g"], p["ln1_b"], r_ain, eps)
        account("eps", r_ain, r_x.sum(), c["a_in"], p["ln1_b"])
        R = r_in + r_x

    if return_absorbed:
        return R, absorbed
    return R


# ------------------------------------------------------------------------------ checks


def _num_jac(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f(x).ravel() / d x.ravel() by central differences."""
    f0 = np.asarray(f(x)).ravel()
    J = np.zeros((f0.size, x.size))
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        J[:, i] = (np.asarray(f(x + e)).ravel() - np.asarray(f(x - e)).ravel()) / (2 * h)
    return J


def check(seed: int = 0, T: int = 5, verbose: bool = True) -> dict[str, float]:
    rng = np.random.default_rng(seed + 1000)
    out: dict[str, float] = {}

    # LRP-0 through a bias-free linear chain = gradient x input.
    x = rng.normal(size=6)
    W1, W2 = rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
    h = x @ W1
    R_out = np.eye(3)[1] * (h @ W2)[1]
    R_h = lrp_linear(h, W2, np.zeros(3), R_out, 0.0)
    R_x = lrp_linear(x, W1, np.zeros(5), R_h, 0.0)
    out["linear_lrp0_vs_grad_x_input"] = float(np.abs(R_x - x * (W1 @ W2[:, 1])).max())

    # Uniform rule conserves; equals x * grad of sum(R_O/O * O) split in half.
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    R_O = rng.normal(size=(4, 5))
    R_A, R_B = lrp_matmul(A, B, R_O, 0.0)
    out["matmul_uniform_conservation"] = abs(R_A.sum() + R_B.sum() - R_O.sum())
    w = R_O / (A @ B)
    gA = _num_jac(lambda a: (w * (a @ B)).sum(), A).reshape(A.shape)
    out["matmul_uniform_vs_half_grad_x_input"] = float(np.abs(R_A - 0.5 * A * gA).max())

    # Softmax rule = x * J^T (R / s), J the softmax Jacobian (finite differences).
    z = rng.normal(size=5)
    s = _softmax(z)
    R_s = rng.normal(size=5)
    J = _num_jac(_softmax, z)
    out["softmax_vs_taylor"] = float(np.abs(lrp_softmax(z, s, R_s) - z * (J.T @ (R_s / s))).max())

    # LayerNorm with c frozen: R = x * J_c^T (R / y), J_c the Jacobian of the linear map.
    xl = rng.normal(size=D)
    g, bta = 1 + 0.2 * rng.normal(size=D), 0.1 * rng.normal(size=D)
    yl, cl = _layernorm(xl, g, bta)
    R_y = rng.normal(size=D)
    Jc = _num_jac(lambda t: g * (t - t.mean()) * cl, xl)
    out["layernorm_vs_frozen_c_taylor"] = float(
        np.abs(lrp_layernorm(xl, g, bta, R_y, 0.0) - xl * (Jc.T @ (R_y / yl))).max()
    )
    R_nb = lrp_layernorm(xl, g, 0 * bta, R_y, 0.0)
    out["layernorm_bias_free_conservation"] = abs(R_nb.sum() - R_y.sum())

    # Whole model.
    X = rng.normal(size=(T, D))
    for act in ("gelu", "relu"):
        for bias in (False, True):
            params = init_params(seed, bias=bias, act=act)
            logits = forward(params, X)
            t = int(np.argmax(logits))
            R, ab = attnlrp(params, X, t, eps=DEFAULT_EPS, return_absorbed=True)
            tag = f"{act}_{'bias' if bias else 'nobias'}"
            out[f"{tag}:logit"] = float(logits[t])
            out[f"{tag}:sum_R"] = float(R.sum())
            out[f"{tag}:absorbed_softmax"] = ab["softmax"]
            out[f"{tag}:absorbed_bias"] = ab["bias"]
            out[f"{tag}:absorbed_eps"] = ab["eps"]
            out[f"{tag}:bookkeeping_err"] = abs(R.sum() + sum(ab.values()) - logits[t])
            if not bias:
                out[f"{tag}:conservation_err"] = abs(R.sum() + ab["softmax"] - logits[t])
                R0 = attnlrp(params, X, t, eps=0.0)
                out[f"{tag}:eps0_vs_eps1e-12"] = float(np.abs(R0 - R).max())

    tol = {
        "linear_lrp0_vs_grad_x_input": 1e-12,
        "matmul_uniform_conservation": 1e-12,
        "matmul_uniform_vs_half_grad_x_input": 1e-7,
        "softmax_vs_taylor": 1e-7,
        "layernorm_vs_frozen_c_taylor": 1e-7,
        "layernorm_bias_free_conservation": 1e-12,
    }
    for k, v in out.items():
        if k in tol:
            assert v < tol[k], (k, v)
        elif k.endswith("conservation_err"):
            assert v < 1e-8, (k, v)
        elif k.endswith(("bookkeeping_err", "eps0_vs_eps1e-12")):
            assert v < 1e-10, (k, v)
        elif k.endswith("absorbed_eps"):
            assert abs(v) < 1e-8, (k, v)
    if verbose:
        for k, v in out.items():
            print(f"{k:45s} {v: .3e}")
    return out


if __name__ == "__main__":
    check()
