"""Write Captum DeepLift / DeepLiftShap reference maps for a future jaxattr DeepLIFT.

Regenerate (needs torch and captum, the ``bench`` extras)::

    python tests/reference/make_captum_deeplift.py  # writes tests/reference/deeplift_{mlp,cnn}.npz

Produced with torch 2.13.0+cpu and captum 0.9.0 (the exact strings are in ``versions``).
Everything is float64.

Models (each built from a fixed ``torch.Generator`` seed; every ReLU / MaxPool is its own module
instance, which Captum requires: it stores the forward input/output on the module)
----------------------------------------------------------------------------------

* ``mlp``: ``fc1`` Linear(6, 16) - ``relu1`` - ``fc2`` Linear(16, 8) - ``relu2`` -
  ``fc3`` Linear(8, 3). Input (N, 6).
* ``cnn``: input (N, 2, 8, 8) NCHW. ``conv1`` Conv2d(2, 4, 3, padding=1) - ``relu1`` -
  ``pool1`` MaxPool2d(2) (4x4) - ``conv2`` Conv2d(4, 4, 3, padding=1) - ``relu2`` -
  ``pool2`` AvgPool2d(2) (2x2) - flatten (C, H, W order, 16) - ``fc`` Linear(16, 3).

Weights ~ N(0, 1) / sqrt(fan_in) * 1.5, biases ~ 0.3 N(0, 1) (non-zero, so the zero baseline
is not a trivial point of the network).

Captum 0.9.0 DeepLift rules (``captum/attr/_core/deep_lift.py``)
----------------------------------------------------------------

Captum runs the model once on ``cat([x, x0])`` and overrides, with full backward hooks, the
gradient of every *module* whose type is in ``SUPPORTED_NON_LINEAR`` (``nn.ReLU, ELU, LeakyReLU,
Sigmoid, Tanh, Softplus`` -> ``nonlinear``; ``nn.MaxPool1d/2d/3d`` -> ``maxpool``;
``nn.Softmax`` -> ``softmax``). Linear, Conv, AvgPool, flatten (and functional ops) keep their
ordinary gradient, i.e. the "linear rule". The multiplier map ``m`` is back-propagated with the
same value for the input half and the reference half, and the attribution is
``(x - x0) * m`` (``multiply_by_inputs=True``, the default). ``eps`` is the ``DeepLift(model,
eps=1e-10)`` constructor argument (default ``1e-10``); the comparison is a strict
``abs(delta_in) < eps``.

* Rescale rule (``nonlinear``; used here for ``nn.ReLU``), elementwise with
  ``dx = x - x0``, ``dy = f(x) - f(x0)``, incoming multiplier ``g``::

      m_in = where(|dx| < 1e-10, grad_input, g * dy / dx)

  where ``grad_input`` is the ordinary autograd gradient (``g * f'(x)``; for the reference half
  ``g * f'(x0)``, but only the input half's gradient is used for the attributions).

* MaxPool (``maxpool``; here ``nn.MaxPool2d(2)``), with ``y = maxpool(x)``, ``y0 = maxpool(x0)``,
  ``ymax = max(y, y0)`` elementwise on the pooled outputs, ``unpool(v, idx)`` scattering a pooled
  value back to the argmax position ``idx`` (``F.max_unpool2d``), ``idx_x`` / ``idx_x0`` the
  argmax indices of the windows of ``x`` and of ``x0``::

      num  = unpool(g * (ymax - y0), idx_x) + unpool(g * (y - ymax), idx_x0)
      m_in = where(|x - x0| < 1e-10, grad_input, num / (x - x0))

  so within a window the argmax of x receives ``g * (max(y, y0) - y0)`` and the argmax of x0
  receives ``g * (y - max(y, y0))`` (one of the two terms is zero; if both argmaxes coincide
  they add to ``g * (y - y0)``); every other position gets multiplier 0. ``grad_input`` is the
  ordinary max-pool gradient (``g`` scattered to ``idx_x``). The two contributions within a
  window sum to ``g * (y - y0)``, so summation-to-delta holds unless an argmax position has
  ``|x - x0| < 1e-10`` (gradient fallback).

* Caveat found in 0.9.0 (verified in this script): the rule of a hooked module B is *skipped*
  when B's input tensor is directly the output of another hooked module A (here ``relu1`` ->
  ``pool1``). Captum's ``_register_backward_hook`` (``captum/_utils/common.py``) records A's
  ``grad_output`` with a tensor hook on A's output and applies B's rule with a tensor hook on
  B's input; for the same tensor, A's recording hook was registered first and so sees the
  gradient *before* B's rule replaces it. A's multiplier is then ``g_plain * dy/dx`` where
  ``g_plain`` is the ordinary max-pool gradient (routed to the argmax of x); B's rule only
  reaches A at A's ``|dx| < 1e-10`` fallback positions. Hence, for ``cnn`` as written, Captum's
  DeepLift/DeepLiftShap equal the rescale rule at the ReLUs with the *plain max-pool gradient*
  (``independent_deeplift`` reproduces them to 1e-16); summation-to-delta still holds for the
  zero baseline (x0 is then spatially constant per channel, so ``x0[argmax x] = max x0``) but
  fails for DeepLiftShap's random baselines (|delta| up to 1.29). ``pool1(relu1(h).clone())``
  (``CNN.isolate_pool``, same function) puts a fresh tensor between the modules: Captum then
  applies the MaxPool rule above, and summation-to-delta holds to 1e-15; those maps are stored
  with the suffix ``_maxrule``. (The MLP has no two hooked modules in a row.)

* (not used here) Softmax: rescale multipliers, then ``m - m.sum() / m.numel()`` (mean over the
  *whole* tensor, batch included).

DeepLiftShap (``DeepLiftShap(model).attribute(x, baselines=B, target=t)``, B of shape (K, ...),
K > 1 required): each input is repeated ``K`` times (``repeat_interleave``), the baselines are
tiled (``repeat``), DeepLift is run on every (x_n, b_k) pair, giving
``(x_n - b_k) * m(x_n, b_k)``, and the result is the mean over k::

    DLS(x_n) = 1/K * sum_k (x_n - b_k) * m(x_n, b_k)

``return_convergence_delta=True`` gives, per pair (``DeepLift``: shape (N,); ``DeepLiftShap``:
shape (N*K,), ordered n-major i.e. index ``n*K + k``)::

    delta = sum(attribution of the pair) - (f_t(x) - f_t(x0))

(Captum's sign convention: attribution sum minus output difference.)

File contents (``deeplift_<model>.npz``, torch layouts: Linear ``(out, in)``, Conv2d
``(out, in, kh, kw)``, NCHW inputs and maps)
----------------------------------------------------------------------------

* ``w/<state_dict name>``: every parameter, e.g. ``w/fc1.weight``, ``w/conv1.bias``;
* ``x`` (3, ...): inputs; ``target`` (3,): class explained (int64);
* ``baseline`` (1, ...): zeros, used by DeepLift;
* ``baselines_shap`` (5, ...): random baselines (0.5 N(0,1)) used by DeepLiftShap;
* ``deeplift`` (3, ...), ``deeplift_delta`` (3,): ``DeepLift(model).attribute(x, baseline,
  target, return_convergence_delta=True)``;
* ``deeplift_shap`` (3, ...), ``deeplift_shap_delta`` (15,): the same for DeepLiftShap;
* ``logits`` (3, 3): model at ``x``; ``logits_baseline`` (1, 3): at ``baseline``;
  ``logits_baselines_shap`` (5, 3): at ``baselines_shap``;
* ``independent_deeplift``, ``independent_deeplift_shap``: the same maps recomputed in this
  script without Captum (torch autograd through surrogate functions whose gradient is the
  formula above; for ``cnn`` with the plain max-pool gradient, see the caveat), as a check that
  the documented formulas are what Captum computes;
* ``cnn`` only: ``deeplift_maxrule``, ``deeplift_delta_maxrule``, ``deeplift_shap_maxrule``,
  ``deeplift_shap_delta_maxrule``, ``independent_deeplift_maxrule``,
  ``independent_deeplift_shap_maxrule``: the same with the MaxPool rule in effect
  (``isolate_pool=True``; identical weights, inputs and logits);
* ``versions``: torch, captum, numpy, Python version strings.

Summation-to-delta (asserted by ``check``; printed): ``|deeplift.sum() - (f_t(x) - f_t(0))|``
and ``|deeplift_shap.sum() - (f_t(x) - mean_k f_t(b_k))|`` are <= 5e-16 for ``mlp`` and for
``cnn`` (both ``deeplift`` variants and ``deeplift_shap_maxrule``); the exception is ``cnn``
``deeplift_shap`` (MaxPool rule skipped by Captum): 0.84 (per-pair Captum delta up to 1.29).
All Captum maps match the independent re-implementation to <= 2.3e-16.
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
N_EXAMPLES = 3
N_SHAP = 5
SEEDS = {"mlp": 20240601, "cnn": 20240602}
EPS = 1e-10  # Captum's default DeepLift eps


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 8)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    #: True: ``pool1(relu1(h).clone())``, same function, but the extra tensor between the two
    #: hooked modules lets Captum's MaxPool rule take effect (see the module docstring).
    isolate_pool: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))
        h = self.pool1(h.clone() if self.isolate_pool else h)
        h = self.pool2(self.relu2(self.conv2(h)))
        return self.fc(h.flatten(1))


INPUT_SHAPE = {"mlp": (6,), "cnn": (2, 8, 8)}


def build(name: str):
    gen = torch.Generator().manual_seed(SEEDS[name])
    model = (MLP() if name == "mlp" else CNN()).double().eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("weight"):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(
                    1.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64) / np.sqrt(fan_in)
                )
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    shape = INPUT_SHAPE[name]
    x = torch.randn((N_EXAMPLES, *shape), generator=gen, dtype=torch.float64)
    baseline = torch.zeros((1, *shape), dtype=torch.float64)
    baselines_shap = 0.5 * torch.randn((N_SHAP, *shape), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        target = model(x).argmax(1)
    # Explain a non-argmax class for one example so that targets differ.
    target[1] = (target[1] + 1) % 3
    return model, x, baseline, baselines_shap, target


# ---------------------------------------------------------------------------------------------
# Independent (Captum-free) implementation of the documented rules, via surrogate forwards
# whose value is the model's but whose gradient is the DeepLift multiplier.
# ---------------------------------------------------------------------------------------------


def _rescale(x: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y, y0 = F.relu(x), F.relu(x0)
    dx = (x - x0).detach()
    grad = (x > 0).to(x.dtype)
    m = torch.where(dx.abs() < EPS, grad, (y - y0).detach() / torch.where(dx == 0, 1.0, dx))
    return y.detach() + (x - x.detach()) * m.detach(), y0.detach()


def _maxpool(x: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y, ix = F.max_pool2d(x.detach(), 2, return_indices=True)
    y0, ix0 = F.max_pool2d(x0.detach(), 2, return_indices=True)
    ymax = torch.max(y, y0)
    size = list(x.shape)
    num = F.max_unpool2d(ymax - y0, ix, 2, output_size=size) + F.max_unpool2d(
        y - ymax, ix0, 2, output_size=size
    )
    dx = (x - x0).detach()
    grad = F.max_unpool2d(torch.ones_like(y), ix, 2, output_size=size)
    m = torch.where(dx.abs() < EPS, grad, num / torch.where(dx == 0, 1.0, dx))
    # 2x2 sum-pool of (x - stop_grad(x)) * m has value 0 and gradient g * m per position.
    return y + 4.0 * F.avg_pool2d((x - x.detach()) * m, 2), y0


def _maxpool_gradient(x: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordinary max-pool (gradient routed to the argmax of x): what Captum 0.9.0 effectively
    applies when the MaxPool2d module directly consumes a hooked ReLU module's output."""
    return F.max_pool2d(x, 2), F.max_pool2d(x0, 2).detach()


def independent_deeplift(
    model: nn.Module,
    x: torch.Tensor,
    x0: torch.Tensor,
    target: torch.Tensor,
    pool_rule: bool = True,
) -> torch.Tensor:
    """(x - x0) * multipliers for paired rows of x and x0 (same batch size).

    ``pool_rule``: apply Captum's MaxPool DeepLift rule (True) or the plain max-pool gradient."""
    x = x.clone().requires_grad_(True)
    if isinstance(model, MLP):
        h, h0 = _rescale(model.fc1(x), model.fc1(x0))
        h, h0 = _rescale(model.fc2(h), model.fc2(h0))
        out = model.fc3(h)
    else:
        h, h0 = _rescale(model.conv1(x), model.conv1(x0))
        h, h0 = (_maxpool if pool_rule else _maxpool_gradient)(h, h0)
        h, h0 = _rescale(model.conv2(h), model.conv2(h0))
        h, h0 = model.pool2(h), model.pool2(h0)
        out = model.fc(h.flatten(1))
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return (x - x0).detach() * g


def versions() -> np.ndarray:
    import captum

    return np.array(
        [
            f"torch={torch.__version__}",
            f"captum={captum.__version__}",
            f"numpy={np.__version__}",
            f"python={platform.python_version()}",
        ]
    )


def _captum(model: nn.Module, x, baseline, bshap, target) -> dict[str, np.ndarray]:
    from captum.attr import DeepLift, DeepLiftShap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl, dl_delta = DeepLift(model).attribute(
            x.clone(), baselines=baseline, target=target, return_convergence_delta=True
        )
        dls, dls_delta = DeepLiftShap(model).attribute(
            x.clone(), baselines=bshap, target=target, return_convergence_delta=True
        )
    return {
        "deeplift": dl.detach().numpy(),
        "deeplift_delta": dl_delta.detach().numpy(),
        "deeplift_shap": dls.detach().numpy(),
        "deeplift_shap_delta": dls_delta.detach().numpy(),
    }


def _independent(
    model: nn.Module, x, baseline, bshap, target, pool_rule: bool
) -> dict[str, np.ndarray]:
    n = len(x)
    dl = independent_deeplift(model, x, baseline.expand_as(x), target, pool_rule)
    xr = x.repeat_interleave(N_SHAP, 0)
    br = bshap.repeat((n,) + (1,) * (x.dim() - 1))
    dls = independent_deeplift(model, xr, br, target.repeat_interleave(N_SHAP), pool_rule)
    dls = dls.view(n, N_SHAP, *x.shape[1:]).mean(1)
    return {"independent_deeplift": dl.numpy(), "independent_deeplift_shap": dls.numpy()}


def references(name: str) -> dict[str, np.ndarray]:
    model, x, baseline, bshap, target = build(name)
    with torch.no_grad():
        logits, logits_b, logits_bs = model(x), model(baseline), model(bshap)
    out = {f"w/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    out.update(
        x=x.numpy(),
        target=target.numpy(),
        baseline=baseline.numpy(),
        baselines_shap=bshap.numpy(),
        logits=logits.numpy(),
        logits_baseline=logits_b.numpy(),
        logits_baselines_shap=logits_bs.numpy(),
        versions=versions(),
    )
    out.update(_captum(model, x, baseline, bshap, target))
    # As run, Captum skips the MaxPool rule in the CNN (ReLU module feeds MaxPool module).
    out.update(_independent(model, x, baseline, bshap, target, pool_rule=name == "mlp"))
    if name == "cnn":
        model.isolate_pool = True
        with torch.no_grad():
            assert np.allclose(model(x).numpy(), logits.numpy(), rtol=0, atol=1e-14)
        out.update(
            {f"{k}_maxrule": v for k, v in _captum(model, x, baseline, bshap, target).items()}
        )
        out.update(
            {
                f"{k}_maxrule": v
                for k, v in _independent(model, x, baseline, bshap, target, pool_rule=True).items()
            }
        )
    return out


def check(name: str, r: dict[str, np.ndarray]) -> dict[str, float]:
    t, n = r["target"], len(r["x"])
    ft = r["logits"][np.arange(n), t]
    axes = tuple(range(1, r["x"].ndim))
    ref = {
        "deeplift": ft - r["logits_baseline"][0, t],
        "deeplift_shap": ft - r["logits_baselines_shap"][:, t].mean(0),
    }
    stats: dict[str, float] = {}
    for suffix in ("", "_maxrule") if name == "cnn" else ("",):
        for k in ("deeplift", "deeplift_shap"):
            a = r[k + suffix]
            stats[f"{k}{suffix}:sum_err"] = float(np.abs(a.sum(axes) - ref[k]).max())
            stats[f"{k}{suffix}:captum_delta"] = float(np.abs(r[f"{k}_delta{suffix}"]).max())
            stats[f"{k}{suffix}:vs_independent"] = float(
                np.abs(a - r[f"independent_{k}{suffix}"]).max()
            )
    for k, v in stats.items():
        # The one expected failure: CNN DeepLiftShap with the MaxPool rule skipped.
        if name == "cnn" and k.startswith("deeplift_shap:") and not k.endswith("independent"):
            assert v > 1e-2, (name, k, v)
        else:
            assert v < 1e-10, (name, k, v)
    return stats


def main() -> None:
    for name in ("mlp", "cnn"):
        r = references(name)
        stats = check(name, r)
        path = HERE / f"deeplift_{name}.npz"
        np.savez_compressed(path, **r)
        print(f"wrote {path.relative_to(HERE.parents[1])} ({path.stat().st_size} bytes)")
        for k, v in stats.items():
            print(f"  {k:36s} {v:.3g}")


if __name__ == "__main__":
    main()
