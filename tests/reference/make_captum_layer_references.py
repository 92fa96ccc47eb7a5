"""Write Captum 0.9.0 layer / neuron attribution references (float64) for jaxattr's layer methods.

Regenerate (needs torch and captum, the ``bench`` extras; about 15 s on a CPU)::

    python tests/reference/make_captum_layer_references.py
    # writes tests/reference/captum_layer_cnn.npz and captum_layer_vit.npz
    python tests/layer_models.py  # checks the Flax twins against the stored torch outputs

Produced with torch 2.13.0+cpu and captum 0.9.0 (exact strings under ``version/...``). Every
model is ``.double().eval()`` and every stored array is float64. Flax twins and loaders:
``tests/layer_models.py`` (``load_cnn()`` / ``load_vit()``). Before writing, ``_self_check``
re-derives every Captum map with plain torch autograd from the formulas below and asserts
agreement to 1e-12 (absolute, or relative to the map's max when that is > 1): the formulas
below are what Captum 0.9.0 computes, not what its docs suggest.

Models (fixed seeds; weights ~ N(0, 2 / fan_in), biases ~ 0.2 N(0, 1), LayerNorm scale
~ 1 + 0.3 N(0, 1); every ReLU is its own non-inplace ``nn.ReLU`` module, which Captum's
GuidedBackprop needs)
-------------------------------------------------------------------------------------------

* ``cnn`` (input (2, 3, 16, 16) NCHW, 10 classes, ``target = [3, 7]``): ``conv1`` Conv2d(3, 8,
  3, padding=1) - ``relu1`` - ``conv2`` Conv2d(8, 8, 3, padding=1) - ``relu2`` - ``pool``
  MaxPool2d(2) - ``conv3`` Conv2d(8, 16, 3, padding=1) - ``relu3`` - mean over (H, W) - ``fc``
  Linear(16, 10). Target layer ``conv3``: Captum hooks the *module's output*, i.e. the conv
  output before ``relu3``, shape (2, 16, 8, 8). Neuron ``(5, 3, 4)`` = (c, h, w).
* ``vit`` (input (2, 3, 16, 16), 10 classes, ``target = [2, 5]``): ``patch`` Conv2d(3, 8, 4,
  stride=4) -> 16 tokens (row-major ``flatten(2)``), class token ``cls`` prepended, learned
  ``pos`` (1, 17, 8) added, 2 pre-LN blocks ``blocks.i`` (``t + out(attn(ln1(t)))`` with 2 heads
  written out: separate ``q``/``k``/``v``/``out`` Linear(8, 8), softmax(q k^T / sqrt(4)); then
  ``t + fc2(GELU(fc1(ln2(t))))``, ``fc1`` Linear(8, 16), exact erf ``nn.GELU()``, ``fc2``
  Linear(16, 8)), final LayerNorm ``ln``, ``head`` Linear(8, 10) on the class token; all
  LayerNorm eps 1e-5. Target layers: ``blocks.0`` (the first block's output, (2, 17, 8),
  neuron (token 3, feature 5)) and ``blocks.0.fc1`` (the MLP's first Linear, before the GELU,
  (2, 17, 16), neuron (6, 11)).

Common mechanics (``captum/_utils/gradient.py``)
------------------------------------------------

The target score is ``y = sum_i F(x)[i, target_i]``: Captum calls ``torch.autograd.grad(
torch.unbind(F(x)[arange(N), target]), ...)``, which is the per-example gradient since examples
do not interact. ``A`` = the layer module's output captured by a forward hook
(``attribute_to_layer_input=False``, the default everywhere here); ``G = dy/dA``. Baselines are
``x0 = zeros_like(x)`` in *input* space.

Semantics per stored map (``attr/<layer>/<key>``, all Captum 0.9.0)
--------------------------------------------------------------------

* ``gradcam`` = ``LayerGradCam(model, layer).attribute(x, target, relu_attributions=True)``
  (``captum/attr/_core/layer/grad_cam.py``): ``w = mean(G, dims 2..ndim-1, keepdim)`` (no
  mean if A is 2-D), ``cam = sum(w * A, dim=1, keepdim=True)``, then ``relu(cam)`` -- the ReLU
  is applied *after* the channel sum. CNN: (N, 1, 8, 8). ``gradcam_norelu``: the same with
  ``relu_attributions=False``. On the ViT's (N, T, D) outputs Captum treats dim 1 (tokens) as
  "channels" and dim 2 (features) as "spatial": ``w[n, t] = mean_d G[n, t, d]``, ``cam[n, 0, d]
  = sum_t w[n, t] A[n, t, d]`` -> (N, 1, D). For ``blocks.0`` (the pre-LN residual stream) the
  model is invariant to adding a per-token constant to all features (every consumer is a
  LayerNorm or the residual sum that ends in a LayerNorm), so ``mean_d G = 0`` analytically and
  the stored map is rounding noise (|.| < 1e-16): compare it with an absolute tolerance only.
  For ``blocks.0.fc1`` the map is meaningful.
* ``gradcam_upsampled`` (CNN only) = ``LayerAttribution.interpolate(gradcam, (16, 16),
  interpolate_mode="bilinear")`` = ``F.interpolate(gradcam, (16, 16), mode="bilinear")``,
  ``align_corners=False`` (torch's default), no antialias: source coordinate
  ``(dst + 0.5) * in / out - 0.5`` clamped below at 0, neighbours ``floor`` and ``min(floor +
  1, in - 1)``; equals ``jax.image.resize(..., "linear")`` for this 8 -> 16 upsampling
  (checked in tests/layer_models.py, ``captum_interpolate``). (The ViT maps are (N, 1, D):
  interpolating to (16, 16) is undefined, so not stored.)
* ``guided_gradcam`` (CNN only) = ``GuidedGradCam(model, layer).attribute(x, target)``
  (``captum/attr/_core/guided_grad_cam.py``): ``guided * F.interpolate(gradcam, (16, 16),
  mode="nearest")`` where ``gradcam`` is the ReLU'd map above (``relu_attributions=True`` is
  hard-wired; computed with plain gradients), ``interpolate_mode="nearest"`` is the default
  (torch's legacy nearest: ``src = floor(dst * in / out)``, here ``dst // 2``), the (N, 1, H, W)
  map broadcasts over the 3 input channels, and ``guided`` (stored at top level) is
  ``GuidedBackprop(model).attribute(x, target)``: every ``nn.ReLU`` module's backward returns
  ``relu(grad_input)`` = ``where(z > 0, relu(grad_output), 0)``. Not stored for the ViT (no
  ReLU modules and a (N, 1, D) map: Captum warns and returns an empty tensor).
* ``grad_x_act`` = ``LayerGradientXActivation(model, layer).attribute(x, target)`` = ``G * A``;
  ``grad`` = the same with ``multiply_by_inputs=False`` = ``G``. Shaped like A.
* ``ig_<method>`` = ``LayerIntegratedGradients(model, layer).attribute(x, baselines=x0, target,
  n_steps=16, method=<method>)`` (``layer_integrated_gradients.py``): the path is in the layer's
  *output* space. ``A = layer(x)`` and ``A0`` = the layer's output when the *model* runs on the
  input baseline ``x0`` (so ``A0 != 0``: for the zero image it carries the biases). For each
  node ``alpha_k`` the model is run on ``x`` (the real input) with a forward hook that
  *replaces* the layer output by ``A_k = A0 + alpha_k (A - A0)``; only what lies downstream of
  the layer sees the path (the ViT residual that bypasses ``blocks.0.fc1`` stays at its value
  for ``x``). ``attr = (A - A0) * sum_k w_k G(A_k)`` with Captum's (alpha_k, w_k) for
  ``n_steps`` points (below). Completeness: ``sum attr ~= F(x) - F(x | A := A0)``, which is
  ``F(x) - F(x0)`` only when every path from the input to the output passes through the layer
  (true for ``conv3`` and ``blocks.0``, not for ``blocks.0.fc1``).
* ``conductance_<method>`` = ``LayerConductance(model, layer).attribute(x, baselines=x0,
  target, n_steps=16, method=<method>)`` (``layer_conductance.py``): the path is in *input*
  space, with ``n_steps + 1`` = 17 nodes ``alpha_0..alpha_16 = alphas_func(17)`` of the method
  (the step sizes / quadrature weights are NOT used at all; ``method`` only places the nodes):
  ``x_k = x0 + alpha_k (x - x0)``, ``A_k = layer(x_k)``, ``G_k = dy/dA at x_k``, and
  ``cond = sum_{k=0}^{15} G_k * (A_{k+1} - A_k)`` (a left Riemann-Stieltjes sum: gradient at the
  left end of each step times the difference of consecutive layer outputs), shaped like A.
  ``riemann_trapezoid``: nodes ``linspace(0, 1, 17)`` (exact: k/16), so the sum telescopes to
  about ``F(x) - F(x0)`` for a bottleneck layer. ``gausslegendre``: the 17 Gauss-Legendre nodes
  in (0, 1), 0.004712 .. 0.995288: the segments [0, alpha_0] and [alpha_16, 1] are missing, the
  GL weights are ignored.
* ``neuron_grad`` = ``NeuronGradient(model, layer).attribute(x, neuron_selector=idx)``
  (``neuron_gradient.py``): ``d A[i, *idx] / d x_i`` (grad of ``sum_i A[i, *idx]``; idx indexes
  the layer output without the batch dim, torch layout; a selector with slices would sum the
  selected neurons). Shaped like x.
* ``neuron_ig_<method>`` = ``NeuronIntegratedGradients(model, layer).attribute(x,
  neuron_selector=idx, baselines=x0, n_steps=16, method=<method>)``
  (``neuron_integrated_gradients.py``): ordinary input-space IG of the scalar ``A[*idx]``:
  ``(x - x0) * sum_k w_k d A[*idx](x0 + alpha_k (x - x0)) / dx`` (``multiply_by_inputs=True``).

Captum's quadrature (``captum/attr/_utils/approximation_methods.py`` and
``IntegratedGradients._attribute``), for n points; stored as ``quad/ig_<method>/alphas`` and
``quad/ig_<method>/weights`` (n = 16, exactly the values Captum used, as float64) and
``quad/conductance_<method>/alphas`` (n = 17)
-------------------------------------------------------------------------------------------

* ``gausslegendre``: ``t, w = numpy.polynomial.legendre.leggauss(n)``; alphas ``0.5 * (1 + t)``
  (float64, ascending), step sizes ``0.5 * w``.
* ``riemann_trapezoid``: alphas ``torch.linspace(0, 1, n).tolist()`` -- computed in float32
  (torch's default dtype) and so k/(n-1) rounded to float32 (error up to 4e-8 for n = 16; k/16
  is exact for n = 17); step sizes ``[1/n] * n`` with the first and last halved, which sum to
  ``1 - 1/n`` (0.9375): NOT the trapezoid rule on [0, 1] (weights 1/(n-1)); Captum's
  "trapezoid" IG is ``(n-1)/n`` times the proper trapezoid rule (up to the float32 nodes).
  ``riemann_left/right/middle``: float32 ``linspace(0, 1 - 1/n, n)``, ``linspace(1/n, 1, n)``,
  ``linspace(1/(2n), 1 - 1/(2n), n)``, step sizes ``1/n``.
* In IG (hence LayerIntegratedGradients and NeuronIntegratedGradients) the step sizes are
  multiplied as ``torch.tensor(step_sizes).float()``: rounded to float32 (GL weights off by up
  to 1.9e-9 absolute, ~3e-8 relative, for n = 16), then promoted back to float64 by the
  product. So even Captum's float64 IG carries a ~1e-8 relative weight error; use the stored
  ``quad/...`` arrays to reproduce the maps to ~1e-12.
* jaxattr (``jaxattr/path.py``, ``_quadrature``): its Gauss-Legendre nodes ``0.5 * (t + 1.0)``
  are bit-for-bit Captum's (asserted in ``main``); its weights ``0.5 * w`` stay float64 (for
  float64 inputs), so jaxattr's float64 GL IG differs from Captum's by the float32 rounding of
  the weights (~1e-8 relative). Its ``riemann_trapezoid`` differs more: float64 nodes
  ``linspace(0, 1, n)`` and the proper weights ``1/(n-1)`` (ends halved, sum 1) vs Captum's
  float32 nodes and ``1/n`` weights (sum ``1 - 1/n``). Its left/right/middle nodes are float64
  (Captum: float32, equal only when the nodes are dyadic, e.g. n = 16).

Layout of ``captum_layer_<model>.npz`` (torch layouts: NCHW, Conv2d ``(O, I, kH, kW)``,
Linear ``(out, in)``; strings are 0-d unicode arrays)
-------------------------------------------------------------------------------------------

* ``param/<state_dict name>``: every parameter (e.g. ``param/conv3.weight``, ``param/cls``);
* ``x`` (2, 3, 16, 16); ``target`` (2,); ``logits`` (2, 10); ``saliency`` (input gradient of
  the target logits, checks the weight transfer); ``guided`` (CNN only, see above);
* ``layers``: the target layers' torch module names; ``act/<layer>``: the layer output on x;
  ``neuron/<layer>``: the neuron selector (no batch dim);
* ``attr/<layer>/<key>`` for the keys above; ``doc/<key>``: the exact Captum call (or formula)
  that produced array ``<key>`` (also ``doc/saliency``, ``doc/guided``, ``doc/neuron/<layer>``);
* ``quad/...`` (see above); ``version/captum``, ``version/torch``, ``version/numpy``,
  ``version/python``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
N_STEPS = 16
METHODS = ("gausslegendre", "riemann_trapezoid")
EPS = 1e-5

CNN_TARGET = (3, 7)
CNN_NEURON = {"conv3": (5, 3, 4)}  # (c, h, w) of conv3's (16, 8, 8) output
VIT_TARGET = (2, 5)
VIT_NEURON = {"blocks.0": (3, 5), "blocks.0.fc1": (6, 11)}  # (token, feature)


def _torch_models() -> SimpleNamespace:
    """The torch models (defined here so that importing this file needs no torch:
    ``pytest --doctest-modules`` imports every module under tests/)."""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.relu2 = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
            self.relu3 = nn.ReLU()
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            h = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
            h = self.relu3(self.conv3(h))
            return self.fc(h.mean(dim=(2, 3)))

    class Block(nn.Module):
        """Pre-LN block: t + out(attn(ln1(t))); t + fc2(gelu(fc1(ln2(t))))."""

        def __init__(self, dim, heads, hidden):
            super().__init__()
            self.heads = heads
            self.ln1 = nn.LayerNorm(dim, eps=EPS)
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.out = nn.Linear(dim, dim)
            self.ln2 = nn.LayerNorm(dim, eps=EPS)
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()  # exact (erf) GELU
            self.fc2 = nn.Linear(hidden, dim)

        def attention(self, x):
            b, t, e = x.shape
            d = e // self.heads
            split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)  # (b, heads, t, d)
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            w = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
            return self.out((w @ v).transpose(1, 2).reshape(b, t, e))

        def forward(self, t):
            t = t + self.attention(self.ln1(t))
            return t + self.fc2(self.act(self.fc1(self.ln2(t))))

    class ViT(nn.Module):
        def __init__(self, dim=8, depth=2, heads=2, hidden=16, patch=4, size=16):
            super().__init__()
            n_tokens = (size // patch) ** 2 + 1
            self.patch = nn.Conv2d(3, dim, patch, stride=patch)
            self.cls = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim))
            self.blocks = nn.ModuleList([Block(dim, heads, hidden) for _ in range(depth)])
            self.ln = nn.LayerNorm(dim, eps=EPS)
            self.head = nn.Linear(dim, 10)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)  # (b, 16, dim), patches row-major
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1) + self.pos
            for block in self.blocks:
                t = block(t)
            return self.head(self.ln(t[:, 0]))

    return SimpleNamespace(torch=torch, nn=nn, CNN=CNN, ViT=ViT)


def build(name: str):
    """``(model, x, target, layers)``: float64 model in eval mode, 2 inputs 3x16x16, labels,
    the target layers ``{torch module name: module}``."""
    ns = _torch_models()
    torch, nn = ns.torch, ns.nn
    seed = {"cnn": 0, "vit": 1}[name]
    torch.manual_seed(seed)
    model = (ns.CNN if name == "cnn" else ns.ViT)().double().eval()
    gen = torch.Generator().manual_seed(100 + seed)
    randn = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):  # scale ~ 1 + 0.3 N(0, 1)
                m.weight.copy_(1.0 + 0.3 * randn(*m.weight.shape))
            if isinstance(m, nn.Linear | nn.Conv2d):  # He: N(0, 2 / fan_in)
                fan_in = m.weight[0].numel()
                m.weight.copy_(randn(*m.weight.shape) * (2.0 / fan_in) ** 0.5)
            if isinstance(m, nn.Linear | nn.Conv2d | nn.LayerNorm):  # bias ~ 0.2 N(0, 1)
                m.bias.copy_(0.2 * randn(*m.bias.shape))
        if name == "vit":
            model.cls.copy_(0.5 * randn(*model.cls.shape))
            model.pos.copy_(0.5 * randn(*model.pos.shape))
    x = randn(2, 3, 16, 16)
    target = torch.tensor(CNN_TARGET if name == "cnn" else VIT_TARGET)
    modules = dict(model.named_modules())
    layers = {k: modules[k] for k in (CNN_NEURON if name == "cnn" else VIT_NEURON)}
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    return model, x, target, layers


def versions() -> dict[str, np.ndarray]:
    import captum
    import torch

    return {"version/captum": np.array(captum.__version__),
            "version/torch": np.array(torch.__version__),
            "version/numpy": np.array(np.__version__),
            "version/python": np.array(platform.python_version())}


def captum_quadrature(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` exactly as Captum 0.9.0 uses them for ``n`` points: alphas as the
    Python floats of ``approximation_parameters(method)[1](n)`` (torch.linspace in float32 for
    the Riemann rules), weights as ``torch.tensor(step_sizes(n)).float()`` (float32-rounded)."""
    import torch
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    w = torch.tensor(step_sizes(n)).float().double().numpy()
    return np.asarray(alphas(n), np.float64), w


def references(name: str) -> dict[str, np.ndarray]:
    import torch
    from captum.attr import (
        GuidedBackprop,
        GuidedGradCam,
        LayerAttribution,
        LayerConductance,
        LayerGradCam,
        LayerGradientXActivation,
        LayerIntegratedGradients,
        NeuronGradient,
        NeuronIntegratedGradients,
    )

    model, x, target, layers = build(name)
    zeros = torch.zeros_like(x)
    out: dict[str, np.ndarray] = {f"param/{k}": v.detach().numpy()
                                  for k, v in model.state_dict().items()}
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    (saliency,) = torch.autograd.grad(logits[torch.arange(len(x)), target].sum(), xg)
    out.update(x=x.numpy(), target=target.numpy(), logits=logits.detach().numpy(),
               saliency=saliency.numpy(), layers=np.array(list(layers)))
    out["doc/saliency"] = np.array("torch.autograd.grad(logits[arange(N), target].sum(), x)")
    if name == "cnn":
        out["guided"] = GuidedBackprop(model).attribute(x.clone(), target=target).detach().numpy()
        out["doc/guided"] = np.array("GuidedBackprop(model).attribute(x, target=target)")
    for method in METHODS:
        a, w = captum_quadrature(method, N_STEPS)
        out[f"quad/ig_{method}/alphas"], out[f"quad/ig_{method}/weights"] = a, w
        out[f"quad/conductance_{method}/alphas"] = captum_quadrature(method, N_STEPS + 1)[0]

    for lname, layer in layers.items():
        p = f"{lname}/"
        neuron = CNN_NEURON.get(lname) or VIT_NEURON[lname]
        maps, docs = {}, {}
        lay = f"model.get_submodule({lname!r})"  # the layer, in the doc strings

        def put(key, value, doc, maps=maps, docs=docs):
            maps[key] = value.detach().numpy() if torch.is_tensor(value) else value
            docs[key] = doc

        acts = []
        hook = layer.register_forward_hook(
            lambda m, i, o, acts=acts: acts.append(o.detach().clone()))
        with torch.no_grad():
            model(x)
        hook.remove()
        put("act", acts[0], f"output of module {lname!r} in model(x) (forward hook)")
        out[f"neuron/{lname}"] = np.array(neuron)
        out[f"doc/neuron/{lname}"] = np.array(
            f"neuron_selector={neuron}: index into {lname}'s output without the batch dim")

        gc = LayerGradCam(model, layer)
        put("gradcam", gc.attribute(x, target=target, relu_attributions=True),
            f"LayerGradCam(model, {lay}).attribute(x, target=target, "
            "relu_attributions=True)")
        put("gradcam_norelu", gc.attribute(x, target=target, relu_attributions=False),
            f"LayerGradCam(model, {lay}).attribute(x, target=target, "
            "relu_attributions=False)")
        if name == "cnn":
            put("gradcam_upsampled",
                LayerAttribution.interpolate(torch.from_numpy(maps["gradcam"]), x.shape[2:],
                                             interpolate_mode="bilinear"),
                "LayerAttribution.interpolate(<gradcam>, x.shape[2:], "
                "interpolate_mode='bilinear')")
            put("guided_gradcam", GuidedGradCam(model, layer).attribute(x, target=target),
                f"GuidedGradCam(model, {lay}).attribute(x, target=target) "
                "(interpolate_mode='nearest', the default)")
        put("grad_x_act", LayerGradientXActivation(model, layer).attribute(x, target=target),
            f"LayerGradientXActivation(model, {lay}).attribute(x, target=target)")
        put("grad", LayerGradientXActivation(model, layer, multiply_by_inputs=False)
            .attribute(x, target=target),
            f"LayerGradientXActivation(model, {lay}, multiply_by_inputs=False)"
            ".attribute(x, target=target)")
        for method in METHODS:
            put(f"ig_{method}", LayerIntegratedGradients(model, layer).attribute(
                x, baselines=zeros, target=target, n_steps=N_STEPS, method=method),
                f"LayerIntegratedGradients(model, {lay}).attribute(x, "
                f"baselines=zeros_like(x), target=target, n_steps={N_STEPS}, method={method!r})")
            put(f"conductance_{method}", LayerConductance(model, layer).attribute(
                x, baselines=zeros, target=target, n_steps=N_STEPS, method=method),
                f"LayerConductance(model, {lay}).attribute(x, baselines=zeros_like(x), "
                f"target=target, n_steps={N_STEPS}, method={method!r})")
        put("neuron_grad", NeuronGradient(model, layer).attribute(x, neuron_selector=neuron),
            f"NeuronGradient(model, {lay}).attribute(x, neuron_selector={neuron})")
        for method in METHODS:
            put(f"neuron_ig_{method}", NeuronIntegratedGradients(model, layer).attribute(
                x, neuron_selector=neuron, baselines=zeros, n_steps=N_STEPS, method=method),
                f"NeuronIntegratedGradients(model, {lay}).attribute(x, "
                f"neuron_selector={neuron}, baselines=zeros_like(x), n_steps={N_STEPS}, "
                f"method={method!r})")
        _self_check(model, layer, x, target, neuron, maps, out, name, lname)
        for k, v in maps.items():
            key = "act/" + lname if k == "act" else f"attr/{p}{k}"
            out[key] = np.asarray(v, np.float64) if k != "act" else v
            out[f"doc/{key}"] = np.array(docs[k])
    out.update(versions())
    return out


def _self_check(model, layer, x, target, neuron, maps, out, name, lname) -> None:
    """Re-derive every map from the formulas in the module docstring with plain autograd
    (float64) and assert agreement: the docstring describes what Captum 0.9.0 computes."""
    import torch
    import torch.nn.functional as F

    n, idx = len(x), torch.arange(len(x))

    def run(inp, replace=None):
        """Logits and the layer output; ``replace``: a tensor that replaces the layer output."""
        saved = []

        def hook(m, i, o):
            if replace is not None:
                saved.append(replace)
                return replace
            saved.append(o)

        h = layer.register_forward_hook(hook)
        try:
            logits = model(inp)
        finally:
            h.remove()
        return logits, saved[0]

    def layer_grad(inp):
        logits, a = run(inp)
        (g,) = torch.autograd.grad(logits[torch.arange(len(inp)), target.repeat(
            len(inp) // n)].sum(), a)
        return g, a.detach()

    g, a = layer_grad(x)
    check = {"act": a, "grad": g, "grad_x_act": g * a}
    mean_dims = tuple(range(2, a.ndim))
    cam = (g.mean(dim=mean_dims, keepdim=True) * a).sum(dim=1, keepdim=True)
    check.update(gradcam_norelu=cam, gradcam=F.relu(cam))
    if name == "cnn":
        check["gradcam_upsampled"] = F.interpolate(F.relu(cam), x.shape[2:], mode="bilinear",
                                                   align_corners=False)
        check["guided_gradcam"] = torch.from_numpy(out["guided"]) * F.interpolate(
            F.relu(cam), x.shape[2:], mode="nearest")
    _, a0 = run(torch.zeros_like(x))
    a0 = a0.detach()
    for method in METHODS:
        alphas, w = captum_quadrature(method, N_STEPS)
        tot = 0
        for al, wk in zip(alphas, w, strict=True):
            ai = (a0 + al * (a - a0)).requires_grad_(True)
            logits, _ = run(x, replace=ai)
            (gi,) = torch.autograd.grad(logits[idx, target].sum(), ai)
            tot = tot + wk * gi
        check[f"ig_{method}"] = (a - a0) * tot
        alphas, _ = captum_quadrature(method, N_STEPS + 1)
        gs, acts = zip(*(layer_grad(al * x) for al in alphas), strict=True)
        check[f"conductance_{method}"] = sum(gs[k] * (acts[k + 1] - acts[k])
                                             for k in range(N_STEPS))

    def neuron_grad(inp):
        inp = inp.clone().requires_grad_(True)
        _, a = run(inp)
        (gx,) = torch.autograd.grad(a[(slice(None), *neuron)].sum(), inp)
        return gx

    check["neuron_grad"] = neuron_grad(x)
    for method in METHODS:
        alphas, w = captum_quadrature(method, N_STEPS)
        check[f"neuron_ig_{method}"] = x * sum(wk * neuron_grad(al * x)
                                               for al, wk in zip(alphas, w, strict=True))
    assert set(check) == set(maps), set(check) ^ set(maps)
    for k, v in check.items():
        ref = maps[k]
        err = float(np.abs(v.detach().numpy() - ref).max())
        assert err <= 1e-12 * max(1.0, float(np.abs(ref).max())), (name, k, err)
        if not (lname == "blocks.0" and k.startswith("gradcam")):  # analytically 0 there
            assert np.abs(ref).max() > 1e-6, (name, lname, k)


def main() -> None:
    import captum

    assert captum.__version__ == "0.9.0", captum.__version__
    # jaxattr.path._quadrature's Gauss-Legendre nodes, 0.5 * (t + 1.0) with t from leggauss, are
    # Captum's bit for bit; its weights 0.5 * w stay float64, Captum's are float32-rounded.
    t, wts = np.polynomial.legendre.leggauss(N_STEPS)
    alphas, weights = captum_quadrature("gausslegendre", N_STEPS)
    assert np.array_equal(alphas, 0.5 * (t + 1.0))
    assert np.array_equal(weights, (0.5 * wts).astype(np.float32).astype(np.float64))
    for name in ("cnn", "vit"):
        path = HERE / f"captum_layer_{name}.npz"
        np.savez_compressed(path, **references(name))
        print(f"wrote {path.relative_to(HERE.parents[1])} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
