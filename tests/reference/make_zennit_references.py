# ruff: noqa: E402, E501  (a generation script: imports after the torchvision stand-in)
"""Generate Zennit LRP reference maps for jaxattr's future LRP implementation.

Issue: "Zennit parity on identical weights, float64, relative max difference <= 1e-8 per map".

Regenerate (from the repository root, in an environment with torch and zennit)::

    pip install --no-deps zennit==0.5.1      # its deps click/numpy/Pillow/torch
    python tests/reference/make_zennit_references.py

Writes ``tests/reference/zennit_vgg.npz`` and ``tests/reference/zennit_resnet.npz``.
Everything is float64 (``model.double()``); seeds are fixed.  The versions used
are recorded in every npz as 0-d string arrays ``version/<package>``; the
description of every map (composite / rule and its exact parameters) is stored
as ``config/<map name>`` string arrays.  The Flax twins of both models live in
``tests/lrp_models.py`` (``check_twins()`` there checks logits and saliency).

torchvision
-----------
``zennit/__init__.py`` imports ``zennit.torchvision``, which imports
``torchvision.models.resnet.{BasicBlock, Bottleneck}`` (used only for
``isinstance`` checks in ``ResNetCanonizer``).  The only torchvision wheel that
pairs with torch 2.13.0 on PyPI (0.28.0) is a CUDA build whose ``_C.so`` cannot
load against ``torch 2.13.0+cpu`` (``import torchvision`` then raises
``RuntimeError: operator torchvision::nms does not exist``).  So when
torchvision is not importable this script registers a tiny stand-in module
``torchvision.models.resnet`` holding a verbatim copy of torchvision's
``conv3x3``/``conv1x1``/``BasicBlock``/``Bottleneck`` (torchvision 0.28,
BSD-3-Clause) before importing zennit; ``ResNetCanonizer`` then recognises our
blocks exactly as it would torchvision's.  When a working torchvision is
installed, its own classes are used (the maps are identical).

Output relevance
----------------
``zennit.attribution.Gradient(model, composite)(x, attr_output)`` feeds
``attr_output`` as ``grad_outputs`` of the logits.  In Zennit this tensor *is*
the output relevance (rules compute ``R_in = reducer(x', out_grad / stab(z'))``).
``map/*`` uses ``attr_output = torch.eye(10)[target]`` (one-hot; relevance 1 at
the target logit: Zennit's usual call).  ``map_logit/*`` (VGG, the four built-in
composites only; for the single rules the script checks the same identity) uses
``torch.eye(10)[target] * logits`` (one-hot times the target logit); since all
backward passes are linear in the output relevance, ``map_logit = logit[target]
* map`` up to rounding.  ``saliency`` is the plain input gradient of the target
logit (no composite).

Layer -> rule assignment (Zennit 0.5.1 built-in composites)
----------------------------------------------------------
All built-in composites prepend ``layer_map_base(stabilizer)``:
``Activation (ReLU) -> Pass`` (relevance passed through unchanged, NOT gated),
``Sum -> Norm(stabilizer)``, ``AvgPool (incl. AdaptiveAvgPool2d) -> Norm(stabilizer)``,
``BatchNorm -> Pass``.  MaxPool, Flatten and anything else unlisted get the plain
gradient (max-pool: all relevance to the arg-max; no ties with these inputs).
* EpsilonPlusFlat(epsilon=1e-6, stabilizer=1e-6): first Conv/Linear -> Flat;
  other Conv -> ZPlus; Linear -> Epsilon(1e-6).
* EpsilonGammaBox(low, high, epsilon=1e-6, gamma=0.25, stabilizer=1e-6): first
  Conv -> ZBox(low, high); other Conv -> Gamma(0.25); Linear -> Epsilon(1e-6).
* EpsilonAlpha2Beta1(epsilon=1e-6, stabilizer=1e-6): Conv -> AlphaBeta(2, 1);
  Linear -> Epsilon(1e-6).
* EpsilonPlus(epsilon=1e-6, stabilizer=1e-6): Conv -> ZPlus; Linear -> Epsilon(1e-6).
Single-rule maps ``map/rule_*``: ``LayerMapComposite(layer_map_base(1e-6) +
[(zennit.types.Linear, RULE)])``, i.e. RULE on every Conv2d and Linear layer
(first layer included), ReLU -> Pass.

Weights
-------
Stored in torch layout as ``param/<state_dict name>``: conv ``(O, I, kH, kW)``,
Linear ``(out, in)``; BatchNorm ``weight``, ``bias``, ``running_mean``,
``running_var`` (eps = 1e-5).  The ResNet maps use ``ResNetCanonizer`` which
merges each BN into the preceding conv *before* attribution:
``W' = W * g/sqrt(var+eps)``, ``b' = (b_or_0 - mean) * g/sqrt(var+eps) + beta``
(a bias is created for bias-free convs), and sets the BN to weight 1, bias 0,
mean 0, var 1 -- but keeps ``eps``, so after canonization each BN computes
``x / sqrt(1 + 1e-5)``, not the identity.  The forward pass Zennit attributes
therefore differs from the original model by ~1e-5 relative: its logits are
stored as ``logits_canonized``.  A parity implementation must reproduce this
(BN rule is Pass, so only the forward activations see the factor).
"""

from __future__ import annotations

import collections
import os
import platform
import sys
import types

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# torchvision stand-in (verbatim copy of the needed parts of
# torchvision/models/resnet.py, torchvision 0.28, BSD-3-Clause)
# --------------------------------------------------------------------------
def _vendored_resnet_module():
    def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
        return nn.Conv2d(
            in_planes,
            out_planes,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            groups=groups,
            bias=False,
            dilation=dilation,
        )

    def conv1x1(in_planes, out_planes, stride=1):
        return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(
            self,
            inplanes,
            planes,
            stride=1,
            downsample=None,
            groups=1,
            base_width=64,
            dilation=1,
            norm_layer=None,
        ):
            super().__init__()
            if norm_layer is None:
                norm_layer = nn.BatchNorm2d
            if groups != 1 or base_width != 64:
                raise ValueError("BasicBlock only supports groups=1 and base_width=64")
            if dilation > 1:
                raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = norm_layer(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = norm_layer(planes)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x):
            identity = x
            out = self.conv1(x)
            out = self.bn1(out)
            out = self.relu(out)
            out = self.conv2(out)
            out = self.bn2(out)
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
            out = self.relu(out)
            return out

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(
            self,
            inplanes,
            planes,
            stride=1,
            downsample=None,
            groups=1,
            base_width=64,
            dilation=1,
            norm_layer=None,
        ):
            super().__init__()
            if norm_layer is None:
                norm_layer = nn.BatchNorm2d
            width = int(planes * (base_width / 64.0)) * groups
            self.conv1 = conv1x1(inplanes, width)
            self.bn1 = norm_layer(width)
            self.conv2 = conv3x3(width, width, stride, groups, dilation)
            self.bn2 = norm_layer(width)
            self.conv3 = conv1x1(width, planes * self.expansion)
            self.bn3 = norm_layer(planes * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
            return self.relu(out)

    mod = types.ModuleType("torchvision.models.resnet")
    mod.conv3x3, mod.conv1x1 = conv3x3, conv1x1
    mod.BasicBlock, mod.Bottleneck = BasicBlock, Bottleneck
    return mod


try:  # pragma: no cover - depends on the environment
    import torchvision
    from torchvision.models import resnet as tv_resnet

    TORCHVISION = f"torchvision {torchvision.__version__}"
except Exception:  # ImportError, or RuntimeError from a CUDA wheel on CPU torch
    for _name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[_name]
    tv_resnet = _vendored_resnet_module()
    _tv = types.ModuleType("torchvision")
    _tv.__version__ = "stand-in"
    _tv_models = types.ModuleType("torchvision.models")
    _tv.models, _tv_models.resnet = _tv_models, tv_resnet
    sys.modules.update(
        {
            "torchvision": _tv,
            "torchvision.models": _tv_models,
            "torchvision.models.resnet": tv_resnet,
        }
    )
    TORCHVISION = (
        "vendored copy of torchvision 0.28 models/resnet.py BasicBlock (torchvision not importable)"
    )

import zennit  # noqa: E402
from zennit import rules as zr  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,  # noqa: E402
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.torchvision import ResNetCanonizer  # noqa: E402
from zennit.types import Linear as ZLinear  # noqa: E402

try:
    from importlib.metadata import version as _pkg_version

    ZENNIT_VERSION = _pkg_version("zennit")
except Exception:  # pragma: no cover
    ZENNIT_VERSION = getattr(zennit, "__version__", "unknown")

EPS = 1e-6  # Zennit default epsilon
STAB = 1e-6  # Zennit default stabilizer
GAMMA = 0.25  # Zennit default gamma
ZBOX_LOW, ZBOX_HIGH = 0.0, 1.0  # VGG inputs are uniform in [0, 1)


def versions():
    return {
        "version/zennit": ZENNIT_VERSION,
        "version/torch": torch.__version__,
        "version/torchvision": TORCHVISION,
        "version/numpy": np.__version__,
        "version/python": platform.python_version(),
    }


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------
def make_vgg():
    """conv(3->8)-ReLU-conv(8->8)-ReLU-maxpool2-conv(8->16)-ReLU-maxpool2-flatten-fc(256->16)-ReLU-fc(16->10)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        collections.OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(8, 8, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(8, 16, 3, padding=1)),
                ("relu3", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 4 * 4, 16)),
                ("relu4", nn.ReLU()),
                ("fc2", nn.Linear(16, 10)),
            ]
        )
    )
    # spread biases a bit (torch default init gives small ones) so bias handling matters
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-0.1, 0.1)
    return model.double().eval()


class SmallResNet(nn.Module):
    """torchvision ``ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)`` with widths (4, 8, 8, 16).

    Identical to torchvision's ResNet except that the hard-coded widths (64, 128, 256, 512)
    are reduced; attribute names and module order are torchvision's (conv1, bn1, relu,
    maxpool, layer1..layer4, avgpool, fc), so ``ResNetCanonizer`` treats it the same way.
    """

    def __init__(self, widths=(4, 8, 8, 16), layers=(1, 1, 1, 1), num_classes=10):
        super().__init__()
        block = tv_resnet.BasicBlock
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                tv_resnet.conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def make_resnet():
    torch.manual_seed(1)
    model = SmallResNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.double().eval()


# --------------------------------------------------------------------------
# attribution helpers
# --------------------------------------------------------------------------
def attribute(model, x, relevance, composite=None):
    attributor = Gradient(model, composite) if composite is not None else Gradient(model)
    with attributor:
        out, attr = attributor(x.clone().requires_grad_(True), relevance)
    return out.detach(), attr.detach().numpy()


def single_rule(rule):
    return LayerMapComposite(layer_map=layer_map_base(STAB) + [(ZLinear, rule)])


def params_of(model):
    return {
        f"param/{k}": v.detach().numpy()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def run_vgg():
    model = make_vgg()
    gen = torch.Generator().manual_seed(10)
    x = torch.rand(2, 3, 16, 16, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    targets = torch.tensor([int(logits[0].argmax()), 7])
    onehot = torch.eye(10, dtype=torch.float64)[targets]
    target_logit = logits[torch.arange(len(targets)), targets]

    composites = {
        "EpsilonPlusFlat": (
            lambda: EpsilonPlusFlat(),
            f"EpsilonPlusFlat(epsilon={EPS}, stabilizer={STAB}); first Conv -> Flat, "
            f"Conv -> ZPlus, Linear -> Epsilon({EPS}), ReLU -> Pass",
        ),
        "EpsilonGammaBox": (
            lambda: EpsilonGammaBox(low=ZBOX_LOW, high=ZBOX_HIGH),
            f"EpsilonGammaBox(low={ZBOX_LOW}, high={ZBOX_HIGH}, epsilon={EPS}, gamma={GAMMA}, "
            f"stabilizer={STAB}); first Conv -> ZBox(low, high), Conv -> Gamma({GAMMA}), "
            f"Linear -> Epsilon({EPS}), ReLU -> Pass",
        ),
        "EpsilonAlpha2Beta1": (
            lambda: EpsilonAlpha2Beta1(),
            f"EpsilonAlpha2Beta1(epsilon={EPS}, stabilizer={STAB}); Conv -> AlphaBeta(2, 1), "
            f"Linear -> Epsilon({EPS}), ReLU -> Pass",
        ),
        "EpsilonPlus": (
            lambda: EpsilonPlus(),
            f"EpsilonPlus(epsilon={EPS}, stabilizer={STAB}); Conv -> ZPlus, "
            f"Linear -> Epsilon({EPS}), ReLU -> Pass",
        ),
        "rule_Epsilon_1e-06": (
            lambda: single_rule(zr.Epsilon(epsilon=1e-6)),
            "Epsilon(epsilon=1e-6) on all Conv/Linear",
        ),
        "rule_Epsilon_0.25": (
            lambda: single_rule(zr.Epsilon(epsilon=0.25)),
            "Epsilon(epsilon=0.25) on all Conv/Linear",
        ),
        "rule_ZPlus": (
            lambda: single_rule(zr.ZPlus(stabilizer=STAB)),
            f"ZPlus(stabilizer={STAB}) on all Conv/Linear",
        ),
        "rule_AlphaBeta_2_1": (
            lambda: single_rule(zr.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STAB)),
            f"AlphaBeta(alpha=2, beta=1, stabilizer={STAB}) on all Conv/Linear",
        ),
        "rule_AlphaBeta_1_0": (
            lambda: single_rule(zr.AlphaBeta(alpha=1.0, beta=0.0, stabilizer=STAB)),
            f"AlphaBeta(alpha=1, beta=0, stabilizer={STAB}) on all Conv/Linear",
        ),
        "rule_Flat": (
            lambda: single_rule(zr.Flat(stabilizer=STAB)),
            f"Flat(stabilizer={STAB}) on all Conv/Linear",
        ),
        "rule_WSquare": (
            lambda: single_rule(zr.WSquare(stabilizer=STAB)),
            f"WSquare(stabilizer={STAB}) on all Conv/Linear (bias squared too)",
        ),
        "rule_Gamma_0.25": (
            lambda: single_rule(zr.Gamma(gamma=0.25, stabilizer=STAB)),
            f"Gamma(gamma=0.25, stabilizer={STAB}) on all Conv/Linear",
        ),
    }
    data = {**versions(), **params_of(model)}
    data.update(
        {
            "x": x.numpy(),
            "targets": targets.numpy(),
            "logits": logits.numpy(),
            "attr_output": onehot.numpy(),
            "attr_output_logit": (onehot * logits).numpy(),
            "zbox_low": np.float64(ZBOX_LOW),
            "zbox_high": np.float64(ZBOX_HIGH),
            "input_bounds": "x ~ U[0, 1) (torch.rand, generator seed 10); ZBox low=0.0, high=1.0",
            "attr_output_doc": "map/*: Gradient(model, composite)(x, torch.eye(10)[targets]); "
            "map_logit/*: Gradient(model, composite)(x, torch.eye(10)[targets] * logits)",
            "layout": "torch: x NCHW; conv weight (O,I,kH,kW); Linear weight (out,in); flatten in (C,H,W) order",
        }
    )
    _, data["saliency"] = attribute(model, x, onehot)
    for name, (make, desc) in composites.items():
        _, data[f"map/{name}"] = attribute(model, x, onehot, make())
        _, map_logit = attribute(model, x, onehot * logits, make())
        data[f"config/{name}"] = desc
        scaled = target_logit.numpy()[:, None, None, None] * data[f"map/{name}"]
        err = np.abs(scaled - map_logit).max() / np.abs(scaled).max()
        assert err < 1e-12, (name, err)
        if not name.startswith(
            "rule_"
        ):  # keep the file small: logit-scaled maps for composites only
            data[f"map_logit/{name}"] = map_logit
    return data


def run_resnet():
    model = make_resnet()
    gen = torch.Generator().manual_seed(20)
    x = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        logits = model(x)
    targets = torch.tensor([int(logits[0].argmax()), 5])
    onehot = torch.eye(10, dtype=torch.float64)[targets]
    data = {**versions(), **params_of(model)}
    data.update(
        {
            "x": x.numpy(),
            "targets": targets.numpy(),
            "logits": logits.numpy(),
            "attr_output": onehot.numpy(),
            "input_bounds": "x ~ U[-1, 1) (2*torch.rand-1, generator seed 20)",
            "attr_output_doc": "map/*: Gradient(model, composite)(x, torch.eye(10)[targets])",
            "architecture": "torchvision ResNet(BasicBlock, [1,1,1,1], num_classes=10) with widths (4, 8, 8, 16) "
            "instead of (64, 128, 256, 512); BN eps=1e-5, eval mode",
            "layout": "torch: x NCHW; conv weight (O,I,kH,kW); Linear weight (out,in)",
        }
    )
    _, data["saliency"] = attribute(model, x, onehot)
    comps = {
        "EpsilonPlusFlat": (
            lambda: EpsilonPlusFlat(canonizers=[ResNetCanonizer()]),
            f"EpsilonPlusFlat(epsilon={EPS}, stabilizer={STAB}, canonizers=[ResNetCanonizer()]); "
            f"BN merged into preceding conv; first Conv (stem) -> Flat, Conv -> ZPlus, "
            f"Linear -> Epsilon({EPS}), residual Sum -> Norm({STAB}), AdaptiveAvgPool -> Norm({STAB}), "
            "ReLU -> Pass, BN (identity after merge) -> Pass, MaxPool -> gradient",
        ),
        "EpsilonAlpha2Beta1": (
            lambda: EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()]),
            f"EpsilonAlpha2Beta1(epsilon={EPS}, stabilizer={STAB}, canonizers=[ResNetCanonizer()]); "
            f"BN merged; Conv -> AlphaBeta(2, 1), Linear -> Epsilon({EPS}), "
            f"residual Sum -> Norm({STAB}), AdaptiveAvgPool -> Norm({STAB}), ReLU -> Pass, "
            "BN -> Pass, MaxPool -> gradient",
        ),
    }
    for name, (make, desc) in comps.items():
        out, data[f"map/{name}"] = attribute(model, x, onehot, make())
        # Zennit's merge leaves every BN as x / sqrt(1 + eps) (eps = 1e-5 is kept), so the
        # canonized forward differs from the original model by ~1e-5 relative.
        assert torch.allclose(out, logits, rtol=1e-3, atol=0), (
            "canonized forward changed the logits"
        )
        data["logits_canonized"] = out.numpy()
        data[f"config/{name}"] = desc
    # canonizer must be removed cleanly
    with torch.no_grad():
        assert torch.equal(model(x), logits)
    return data


def save(name, data):
    path = os.path.join(HERE, name)
    arrays = {k: (np.array(v) if isinstance(v, str) else np.asarray(v)) for k, v in data.items()}
    np.savez_compressed(path, **arrays)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(arrays)} arrays")


def main():
    torch.set_default_dtype(torch.float64)
    save("zennit_vgg.npz", run_vgg())
    save("zennit_resnet.npz", run_resnet())


if __name__ == "__main__":
    main()
