"""Write the Captum reference maps that tests/test_conformance.py compares jaxattr against.

Regenerate (needs the benchmark extras, ``pip install -e '.[bench]'``: torch and captum)::

    python tests/reference/make_captum_references.py          # writes tests/reference/*.npz

Three small float64 torch models with ReLUs, each built from a fixed seed:

* ``mlp_layernorm``: Linear(16, 32) - LayerNorm(32) - ReLU - Linear(32, 5);
* ``cnn_groupnorm``: Conv2d(3, 8, 3, padding=1) - GroupNorm(4, 8) - ReLU - Conv2d(8, 8, 3,
  padding=1) - GroupNorm(4, 8) - ReLU - global average pool - Linear(8, 5), input 3x8x8;
* ``vit_relu``: 4x4 patch embedding of a 3x8x8 image (Conv2d stride 4), a class token, learned
  position embeddings, two pre-LayerNorm encoder blocks (2-head attention written out with
  separate q/k/v/out Linear layers and an explicit softmax; MLP Linear(16, 32) - ReLU -
  Linear(32, 16)), a final LayerNorm and a Linear(16, 5) head on the class token.

Every ReLU is its own ``nn.ReLU`` module (Captum rewrites the backward pass of ``nn.ReLU``
modules only, via backward hooks: Guided Backprop returns ``relu(grad_input)`` =
``where(x > 0, relu(R_out), 0)``, Deconvolution returns ``relu(grad_output)`` = ``relu(R_out)``).
LayerNorm/GroupNorm affine parameters are drawn at random (not 1/0) so that the weight transfer
is tested. All epsilons are 1e-5 (torch's default; the Flax models set ``epsilon=1e-5``).

Each ``<model>.npz`` holds, all in torch's layouts (NCHW inputs and maps, Linear weights
``(out, in)``, Conv2d weights ``(out, in, kh, kw)``):

* ``w/<state_dict name>``: every parameter, e.g. ``w/fc1.weight``;
* ``x``: 3 inputs; ``target``: the class explained for each (one per input);
* ``guided``, ``deconvnet``: Captum's ``GuidedBackprop`` / ``Deconvolution`` maps;
* ``saliency``: torch's plain gradient of the target logit (checks the weight transfer);
* ``logits``: the model's output on ``x``;
* ``versions``: torch, captum, numpy and Python versions that produced the file (strings).

The test never imports torch or captum: it rebuilds the models in Flax from ``w/...``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
N_EXAMPLES = 3
N_CLASSES = 5
EPS = 1e-5


def _randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    """LayerNorm/GroupNorm weight ~ 1 + 0.3 N(0, 1), bias ~ 0.2 N(0, 1) (defaults are 1 and 0)."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm | nn.GroupNorm):
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=gen,
                                                       dtype=torch.float64))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen,
                                               dtype=torch.float64))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32, eps=EPS)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, N_CLASSES)

    def forward(self, x):
        return self.fc2(self.relu(self.norm(self.fc1(x))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 8, eps=EPS)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gn2 = nn.GroupNorm(4, 8, eps=EPS)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, N_CLASSES)

    def forward(self, x):
        h = self.relu1(self.gn1(self.conv1(x)))
        h = self.relu2(self.gn2(self.conv2(h)))
        return self.fc(h.mean(dim=(2, 3)))


class Block(nn.Module):
    """Pre-LN encoder block: x + attn(ln1(x)); x + fc2(relu(fc1(ln2(x))))."""

    def __init__(self, dim: int = 16, heads: int = 2, hidden: int = 32):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=EPS)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=EPS)
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)

    def attention(self, x):
        b, t, e = x.shape
        d = e // self.heads
        split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)  # (b, heads, t, d)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        w = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
        return self.out((w @ v).transpose(1, 2).reshape(b, t, e))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(self.relu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 5, dim))
        self.blocks = nn.ModuleList([Block(dim) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=EPS)
        self.head = nn.Linear(dim, N_CLASSES)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (b, 4, dim), patches row-major
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1) + self.pos
        for block in self.blocks:
            t = block(t)
        return self.head(self.ln(t[:, 0]))


MODELS = {
    "mlp_layernorm": (MLP, (16,), 0),
    "cnn_groupnorm": (CNN, (3, 8, 8), 1),
    "vit_relu": (ViT, (3, 8, 8), 2),
}


def build(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    cls, shape, seed = MODELS[name]
    torch.manual_seed(seed)
    model = cls().double().eval()
    gen = torch.Generator().manual_seed(100 + seed)
    _randomize_norms(model, gen)
    if isinstance(model, ViT):
        with torch.no_grad():
            model.cls.copy_(0.5 * torch.randn(model.cls.shape, generator=gen,
                                              dtype=torch.float64))
            model.pos.copy_(0.5 * torch.randn(model.pos.shape, generator=gen,
                                              dtype=torch.float64))
    x = torch.randn((N_EXAMPLES, *shape), generator=gen, dtype=torch.float64)
    target = torch.tensor([(seed + 2 * i) % N_CLASSES for i in range(N_EXAMPLES)])
    return model, x, target


def versions() -> np.ndarray:
    import captum

    return np.array([f"torch={torch.__version__}", f"captum={captum.__version__}",
                     f"numpy={np.__version__}", f"python={platform.python_version()}"])


def references(name: str) -> dict[str, np.ndarray]:
    from captum.attr import Deconvolution, GuidedBackprop

    model, x, target = build(name)
    n_relu = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert n_relu >= 1 and not any(getattr(m, "inplace", False) for m in model.modules())
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    (saliency,) = torch.autograd.grad(logits[torch.arange(len(x)), target].sum(), xg)
    guided = GuidedBackprop(model).attribute(x.clone(), target=target)
    deconv = Deconvolution(model).attribute(x.clone(), target=target)
    out = {f"w/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    out.update(x=x.numpy(), target=target.numpy(), logits=logits.detach().numpy(),
               saliency=saliency.numpy(), guided=guided.detach().numpy(),
               deconvnet=deconv.detach().numpy(), versions=versions())
    # The modified maps differ from the plain gradient (else the test would test nothing).
    for k in ("guided", "deconvnet"):
        assert np.abs(out[k] - out["saliency"]).max() > 1e-3 * np.abs(out["saliency"]).max(), k
    return out


def main() -> None:
    for name in MODELS:
        path = HERE / f"{name}.npz"
        np.savez_compressed(path, **references(name))
        print(f"wrote {path.relative_to(HERE.parents[1])} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
