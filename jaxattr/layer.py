"""Attribution at an intermediate value of ``f``, named without changing the model.

``at`` names a value inside ``f`` (``jaxattr._rules_at``): a Flax module path as it appears in
the jaxpr's name stack (``"CifarCNN/Conv_3"``, or the suffix ``"Conv_3"`` when one module ends
with it; the module's output, at its last call), or a ``jax.ad_checkpoint.checkpoint_name`` the
model carries (Equinox, NNX, plain JAX). A name that matches nothing, or more than one module,
raises an error listing the names ``f`` holds.

Every transform has the calling convention of ``jax.grad`` (``g(*args, **kwargs)``; ``argnums``
attributed, the rest passed through; one example per call, batch with ``jax.vmap``):

==============================================  ===========================================
transform                                       returns (``A`` = the value at ``at``)
==============================================  ===========================================
``layer_activation(f, at)``                     ``A``
``layer_gradient(f, at)``                       ``dS/dA`` (Captum: LayerGradientXActivation
                                                with ``multiply_by_inputs=False``)
``layer_gradient_x_activation(f, at)``          ``A * dS/dA`` (LayerGradientXActivation)
``grad_cam(f, at)``                             Grad-CAM (LayerGradCam), upsampled to ``x``
``grad_cam_pp(f, at)``                          Grad-CAM++ (Chattopadhay et al. 2018)
``guided_grad_cam(f, at)``                      Guided Backprop x Grad-CAM (GuidedGradCam)
``layer_integrated_gradients(f, at)``           IG in ``A``'s space (LayerIntegratedGradients)
``layer_conductance(f, at)``                    conductance of ``A``'s units (LayerConductance)
``neuron_gradient(f, at, neuron)``              ``dA[neuron]/dx`` (NeuronGradient)
``neuron_integrated_gradients(f, at, neuron)``  IG of ``A[neuron]`` (NeuronIntegratedGradients)
``token_attribution(f, at)``                    ``A * dS/dA`` summed (or L2) per token
==============================================  ===========================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from ._calling import jit_with_static, mark_map, mark_transform
from ._checks import check_choice, check_int, fail, fail_type
from ._jaxpr import Rules, rewrite
from ._rules_at import AtOptions, occurrences, resolve
from .backprop import _check_inputs, _check_score, _check_score_fn, guided_backprop
from .path import _METHODS, _quadrature, baseline_like

__all__ = [
    "grad_cam", "grad_cam_pp", "guided_grad_cam", "layer_activation", "layer_conductance",
    "layer_gradient", "layer_gradient_x_activation", "layer_integrated_gradients",
    "neuron_gradient", "neuron_integrated_gradients", "token_attribution",
]


def _check_at(at: Any, fn: str) -> str:
    if not isinstance(at, str) or not at:
        fail_type(fn, "at", at, "is not a non-empty string",
                  "a Flax module path (or its last parts) or a checkpoint_name")
    return at


class _Probe:
    """``f`` with the value at ``at`` exposed: ``probe(x, delta)`` -> (f's output, A), with
    ``A + delta`` in place of ``A`` inside ``f`` (``delta=None``: unchanged)."""

    def __init__(self, f: Callable, at: str, fn: str, args: tuple, kwargs: dict):
        x = args[0]

        def score(xx):
            return f(xx, *args[1:], **kwargs)

        self.score = score
        self.x = x
        closed = jax.make_jaxpr(score)(x)
        kind, target = resolve(closed.jaxpr, at, fn)
        single = occurrences(closed.jaxpr, kind, target) == 1  # else a first walk counts them
        self.opts = AtOptions(at, fn, state={"resolved": (kind, target), "single": single})
        self.run = rewrite(score, Rules(options=(self.opts,)), name=fn)

    def __call__(self, xx, delta=None):
        self.opts.state["delta"] = delta
        self.opts.state.pop("value", None)
        out = self.run(xx)
        value = cast(jax.Array, self.opts.state.get("value"))  # stored by the walk at ``at``
        self.opts.state["delta"] = None
        return out, value


def _transform(fn: str, f: Callable, compute: Callable, *, scalar: bool = True,
               float_input: bool = False) -> Callable:
    """The map function ``g(*args, **kwargs)``: ``compute(args, kwargs)`` compiled once per
    static signature; ``args[0]`` is the input (integer token ids allowed unless
    ``float_input``: the methods that differentiate with respect to ``x`` itself)."""
    f = _check_score_fn(f, fn) if scalar else f

    def run(args: tuple, kwargs: dict):
        if not args:
            fail_type(fn, "the map", args, "was called without arguments", "g(x, *args)")
        if float_input:
            _check_inputs(args, (0,), fn)
        if scalar:
            shape = jax.eval_shape(lambda xx: f(xx, *args[1:], **kwargs), args[0])
            _check_score(shape, False, fn, x=args[0])
        return compute(args, kwargs)

    g = jit_with_static(run, fn=fn, dynamic_argnums=(0,))
    return mark_map(functools.wraps(f)(g))


def _value_and_grad(probe: _Probe, x, select: Callable | None = None):
    """(A, dS/dA) at ``x``; ``select(out, A)`` the scalar differentiated (default: ``f``'s)."""
    _, a = probe(x)

    def s(delta):
        out, value = probe(x, delta)
        return (out if select is None else select(out, value)), value

    grad, value = jax.grad(s, has_aux=True)(jnp.zeros_like(a))
    return value, grad


# ---------------------------------------------------------------------------------------------
# Layer gradient, gradient x activation, activation.


@mark_transform
def layer_activation(f: Callable, at: str) -> Callable:
    """The value at ``at`` (a Flax module's output, a ``checkpoint_name``) for input ``x``.

    >>> import jax, jax.numpy as jnp, jaxattr as ja
    >>> from jax.ad_checkpoint import checkpoint_name
    >>> f = lambda x: jnp.sum(checkpoint_name(jnp.tanh(2.0 * x), "h") ** 2)
    >>> ja.layer.layer_activation(f, "h")(jnp.zeros(3)).tolist()
    [0.0, 0.0, 0.0]
    """
    fn = "layer_activation"
    at = _check_at(at, fn)

    def compute(args, kwargs):
        return _Probe(f, at, fn, args, kwargs)(args[0])[1]

    return _transform(fn, f, compute, scalar=False)


@mark_transform
def layer_gradient(f: Callable, at: str) -> Callable:
    """``dS/dA``: the gradient of the score with respect to the value ``A`` at ``at``.

    >>> import jax, jax.numpy as jnp, jaxattr as ja
    >>> from jax.ad_checkpoint import checkpoint_name
    >>> f = lambda x: jnp.sum(3.0 * checkpoint_name(2.0 * x, "h"))
    >>> ja.layer.layer_gradient(f, "h")(jnp.ones(2)).tolist()
    [3.0, 3.0]
    """
    fn = "layer_gradient"
    at = _check_at(at, fn)

    def compute(args, kwargs):
        return _value_and_grad(_Probe(f, at, fn, args, kwargs), args[0])[1]

    return _transform(fn, f, compute)


@mark_transform
def layer_gradient_x_activation(f: Callable, at: str) -> Callable:
    """``A * dS/dA`` at the value ``A`` named by ``at`` (Captum's LayerGradientXActivation)."""
    fn = "layer_gradient_x_activation"
    at = _check_at(at, fn)

    def compute(args, kwargs):
        a, g = _value_and_grad(_Probe(f, at, fn, args, kwargs), args[0])
        return a * g

    return _transform(fn, f, compute)


# ---------------------------------------------------------------------------------------------
# Grad-CAM family.


def _spatial_axes(a, channel_axis: int) -> tuple[int, ...]:
    c = channel_axis % a.ndim
    return tuple(i for i in range(a.ndim) if i != c)


def _upsample(cam, x, channel_axis_x: int | None, mode: str):
    """``cam`` (the layer's spatial shape) resized to ``x``'s spatial shape."""
    if channel_axis_x is None:
        spatial = x.shape
    else:
        c = channel_axis_x % x.ndim
        spatial = tuple(s for i, s in enumerate(x.shape) if i != c)
    while cam.ndim > len(spatial) and cam.shape[0] == 1:  # a model called on x[None]
        cam = cam[0]
    if cam.shape == spatial:
        return cam
    if cam.ndim != len(spatial):
        fail("grad_cam", "at", None, f"gives a map of shape {cam.shape}, which cannot be resized "
             f"to the input's spatial shape {spatial}", "a layer with as many spatial axes as x",
             "pass upsample=None to get the map at the layer's resolution")
    return jax.image.resize(cam, spatial, method=mode, antialias=False)


def _cam(a, g, channel_axis: int, relu: bool, plus: bool):
    axes = _spatial_axes(a, channel_axis)
    if plus:  # Grad-CAM++: alpha = g^2 / (2 g^2 + sum_ij A g^3), weights sum_ij alpha relu(g)
        g2, g3 = g * g, g * g * g
        denom = 2.0 * g2 + jnp.sum(a * g3, axis=axes, keepdims=True)
        alpha = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1.0), 0.0)
        weights = jnp.sum(alpha * jax.nn.relu(g), axis=axes, keepdims=True)
    else:
        weights = jnp.mean(g, axis=axes, keepdims=True)
    cam = jnp.sum(weights * a, axis=channel_axis % a.ndim)
    return jax.nn.relu(cam) if relu else cam


def _grad_cam(fn: str, f: Callable, at: str, channel_axis: int, relu: bool,
              upsample: str | None, input_channel_axis: int | None, plus: bool) -> Callable:
    at = _check_at(at, fn)
    if upsample is not None:
        upsample = check_choice(upsample, "upsample", ("bilinear", "nearest", "linear", "cubic"),
                                fn=fn)

    def compute(args, kwargs):
        a, g = _value_and_grad(_Probe(f, at, fn, args, kwargs), args[0])
        cam = _cam(a, g, channel_axis, relu, plus)
        if upsample is None:
            return cam
        return _upsample(cam, args[0], input_channel_axis, upsample)

    return _transform(fn, f, compute)


@mark_transform
def grad_cam(f: Callable, at: str, *, channel_axis: int = -1, relu: bool = True,
             upsample: str | None = "bilinear", input_channel_axis: int | None = -1) -> Callable:
    """Grad-CAM (Selvaraju et al. 2017) at the layer named ``at``.

    Channel weights are the spatial mean of the layer gradient ``dS/dA`` (over every axis but
    ``channel_axis``); the map is ``relu(sum_c w_c A_c)`` (``relu=False``: without the ReLU),
    resized to ``x``'s spatial shape (the axes of ``x`` but ``input_channel_axis``; ``None``:
    all of them) by ``upsample`` (``"bilinear"`` with half-pixel centres, as torch's
    ``interpolate(..., align_corners=False)`` and Captum's ``LayerAttribution.interpolate``;
    ``None``: the layer's resolution).

    Example (a 1-D "image" of 4 positions, 2 channels; layer = the input scaled):
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> from jax.ad_checkpoint import checkpoint_name
      >>> f = lambda x: jnp.sum(checkpoint_name(2.0 * x, "A") * jnp.array([[1.0, -1.0]]))
      >>> ja.grad_cam(f, "A")(jnp.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])).tolist()
      [2.0, 4.0, 0.0, 0.0]
    """
    return _grad_cam("grad_cam", f, at, channel_axis, relu, upsample, input_channel_axis, False)


@mark_transform
def grad_cam_pp(f: Callable, at: str, *, channel_axis: int = -1, relu: bool = True,
                upsample: str | None = "bilinear", input_channel_axis: int | None = -1
                ) -> Callable:
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19 with the score's own derivatives): channel
    weights ``w_c = sum_ij alpha_ij^c relu(g_ij^c)`` with
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (0 where the denominator is 0); the rest as
    :func:`grad_cam`."""
    return _grad_cam("grad_cam_pp", f, at, channel_axis, relu, upsample, input_channel_axis,
                     True)


@mark_transform
def guided_grad_cam(f: Callable, at: str, *, channel_axis: int = -1, upsample: str = "nearest",
                    input_channel_axis: int = -1) -> Callable:
    """Guided Grad-CAM: Guided Backprop's map times the Grad-CAM map resized to ``x`` (nearest
    neighbour by default, as Captum's ``GuidedGradCam``), broadcast over ``x``'s channels."""
    fn = "guided_grad_cam"
    at = _check_at(at, fn)
    upsample = check_choice(upsample, "upsample", ("bilinear", "nearest", "linear", "cubic"),
                            fn=fn)
    guided = guided_backprop(f)

    def compute(args, kwargs):
        a, g = _value_and_grad(_Probe(f, at, fn, args, kwargs), args[0])
        cam = _upsample(_cam(a, g, channel_axis, True, False), args[0], input_channel_axis,
                        upsample)
        return guided(*args, **kwargs) * jnp.expand_dims(cam, input_channel_axis)

    return _transform(fn, f, compute, float_input=True)


# ---------------------------------------------------------------------------------------------
# Path methods in the layer's space.


def _path(steps: int, method: str, fn: str) -> tuple[np.ndarray, np.ndarray]:
    method = check_choice(method, "method", _METHODS, fn=fn)
    steps = check_int(steps, "steps", fn=fn, minimum=2 if method == "riemann_trapezoid" else 1)
    return _quadrature(method, steps)


@mark_transform
def layer_integrated_gradients(f: Callable, at: str, *, baseline: Any = None, steps: int = 50,
                               method: str = "gausslegendre") -> Callable:
    """Integrated gradients in the space of the value ``A`` at ``at`` (Captum's
    LayerIntegratedGradients): ``(A(x) - A(x')) * sum_k w_k dS/dA`` at
    ``A(x') + alpha_k (A(x) - A(x'))``, the rest of ``f`` evaluated on that value. Sums to
    ``S(x) - S(x')`` up to the quadrature error when ``S`` depends on ``x`` only through ``A``.
    ``baseline``: ``x'`` (``None``: zeros); ``steps``, ``method``: as
    :func:`jaxattr.integrated_gradients`."""
    fn = "layer_integrated_gradients"
    at = _check_at(at, fn)
    alphas, weights = _path(steps, method, fn)

    def compute(args, kwargs):
        x = args[0]
        probe = _Probe(f, at, fn, args, kwargs)
        a1 = probe(x)[1]
        a0 = probe(baseline_like(baseline, x, fn))[1]
        diff = a1 - a0

        def grad_at(alpha):
            delta = (alpha - 1.0) * diff  # A(x) + delta = A(x') + alpha (A(x) - A(x'))
            return jax.grad(lambda d: probe(x, d)[0])(delta)

        grads = jax.lax.map(grad_at, jnp.asarray(alphas, diff.dtype))
        return diff * jnp.tensordot(jnp.asarray(weights, diff.dtype), grads, axes=1)

    return _transform(fn, f, compute)


@mark_transform
def layer_conductance(f: Callable, at: str, *, baseline: Any = None, steps: int = 50,
                      method: str = "gausslegendre") -> Callable:
    """Conductance of the units of ``A`` (Dhamdhere et al. 2018; Captum's LayerConductance):
    along the input path ``x_k = x' + alpha_k (x - x')``,
    ``sum_k dS/dA(x_k) * (A(x_{k+1}) - A(x_k))`` over the ``steps + 1`` nodes of ``method``
    (Captum's convention: the gradients at the first ``steps`` nodes, the differences of ``A``
    between consecutive nodes)."""
    fn = "layer_conductance"
    at = _check_at(at, fn)
    method = check_choice(method, "method", _METHODS, fn=fn)
    steps = check_int(steps, "steps", fn=fn, minimum=1)
    alphas, _ = _quadrature(method, steps + 1)

    def compute(args, kwargs):
        x = args[0]
        probe = _Probe(f, at, fn, args, kwargs)
        x0 = baseline_like(baseline, x, fn)

        def at_node(alpha):
            return _value_and_grad(probe, x0 + alpha * (x - x0))

        acts, grads = jax.lax.map(at_node, jnp.asarray(alphas, x.dtype))
        return jnp.sum(grads[:-1] * (acts[1:] - acts[:-1]), axis=0)

    return _transform(fn, f, compute, float_input=True)


# ---------------------------------------------------------------------------------------------
# Neurons: a unit of a named value as the output.


def _neuron(value, neuron, fn):
    idx = tuple(neuron) if isinstance(neuron, (tuple, list)) else (neuron,)
    if len(idx) != value.ndim:
        fail(fn, "neuron", neuron, f"has {len(idx)} indices for a value of shape {value.shape}",
             f"{value.ndim} indices, one per axis of the value at `at`")
    return value[idx]


@mark_transform
def neuron_gradient(f: Callable, at: str, neuron: Any) -> Callable:
    """``d A[neuron] / dx``: the input gradient of one unit of the value at ``at`` (Captum's
    NeuronGradient). ``neuron``: an int or a tuple of ints indexing ``A`` (one example, no batch
    axis); ``f``'s own output is not used."""
    fn = "neuron_gradient"
    at = _check_at(at, fn)

    def compute(args, kwargs):
        probe = _Probe(f, at, fn, args, kwargs)
        return jax.grad(lambda xx: _neuron(probe(xx)[1], neuron, fn))(args[0])

    return _transform(fn, f, compute, scalar=False, float_input=True)


@mark_transform
def neuron_integrated_gradients(f: Callable, at: str, neuron: Any, *, baseline: Any = None,
                                steps: int = 50, method: str = "gausslegendre") -> Callable:
    """Integrated gradients of one unit ``A[neuron]`` of the value at ``at`` with respect to
    ``x`` (Captum's NeuronIntegratedGradients)."""
    fn = "neuron_integrated_gradients"
    at = _check_at(at, fn)
    alphas, weights = _path(steps, method, fn)

    def compute(args, kwargs):
        x = args[0]
        probe = _Probe(f, at, fn, args, kwargs)
        x0 = baseline_like(baseline, x, fn)
        grad = jax.grad(lambda xx: _neuron(probe(xx)[1], neuron, fn))
        grads = jax.lax.map(lambda al: grad(x0 + al * (x - x0)), jnp.asarray(alphas, x.dtype))
        return (x - x0) * jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1)

    return _transform(fn, f, compute, scalar=False, float_input=True)


# ---------------------------------------------------------------------------------------------
# Tokens.


@mark_transform
def token_attribution(f: Callable, at: str, *, reduce: str = "sum", token_axis: int = 0,
                      method: str = "gradient_x_activation") -> Callable:
    """Attribution to the tokens of a sequence model: ``A * dS/dA`` at the value ``A`` named by
    ``at`` (an embedding layer's output, shape ``(tokens, dim)``), reduced over every axis but
    ``token_axis``: ``reduce="sum"`` (signed, sums to the layer's total) or ``"l2"`` (the norm).
    ``method="integrated_gradients"`` uses :func:`layer_integrated_gradients` (baseline 0)."""
    fn = "token_attribution"
    reduce = check_choice(reduce, "reduce", ("sum", "l2"), fn=fn)
    method = check_choice(method, "method", ("gradient_x_activation", "integrated_gradients"),
                          fn=fn)
    inner = (layer_gradient_x_activation(f, at) if method == "gradient_x_activation"
             else layer_integrated_gradients(f, at))

    @functools.wraps(f)
    def g(*args, **kwargs):
        attr = inner(*args, **kwargs)
        axes = tuple(i for i in range(attr.ndim) if i != token_axis % attr.ndim)
        if reduce == "sum":
            return jnp.sum(attr, axis=axes)
        return jnp.sqrt(jnp.sum(attr * attr, axis=axes))

    return mark_map(g)
