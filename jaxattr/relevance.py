"""Layer-wise Relevance Propagation (LRP) as a transform: rules, composites and ``lrp``.

``jaxattr.lrp(f, composite)`` maps a score function ``f: x -> scalar`` to ``g: x -> relevance``
shaped like ``x``, with the calling convention of ``jax.grad``, on any JAX function: Flax (linen,
NNX), Equinox or plain JAX, with no change to the model. The engine re-interprets ``f``'s jaxpr
(``jaxattr._rules_lrp``): a *layer* is a ``dot_general`` or convolution whose weights do not
depend on ``x``, merged with the elementwise affine operations with constant operands that
follow it (bias, inference BatchNorm, scaling) -- canonization found in the graph, not written
per model.

Rules (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview"; the definitions
are Zennit 0.5.1's, which the tests reproduce to 1e-8). For a layer ``z = W x + b`` (merged),
relevance ``R`` of ``z``, ``stab(z) = z + eps * sign(z)`` with ``sign(0) = 1``,
``x^+ = max(x, 0)``, ``x^- = min(x, 0)``:

==================  =====================================================================
rule                relevance of the layer's input
==================  =====================================================================
``Epsilon(eps)``    ``x * W^T (R / stab(W x + b))``; ``eps = 0`` is LRP-0
``ZPlus()``         ``z = W^+ x^+ + b^+ + W^- x^-``; ``x^+ W^+^T (R/stab z) + x^- W^-^T (R/stab z)``
``AlphaBeta(a,b)``  ``a * [ZPlus part] - b * [the same with W^+ and W^- swapped, bias b^-]``
``Gamma(g)``        ZPlus-like with ``W + g W^+`` (where ``z > 0``) and ``W + g W^-`` (``z < 0``)
``ZBox(l, h)``      ``z = W x + b - (W^+ l + b^+) - (W^- h + b^-)``; for the input layer
``Flat()``          ``W := 1, b := 0, x := 1``: relevance spread uniformly over the receptive field
``WSquare()``       ``W := W^2, b := b^2, x := 1``
``Norm()``          ``x * J^T (R / stab(z))``: the proportional rule (sums, average pooling)
``Pass()``          ``R`` unchanged (shape-preserving only)
``Gradient()``      ``J^T R`` (the plain gradient)
==================  =====================================================================

Where each applies by default (every composite): elementwise activations (``jax.nn.relu``,
``gelu``, ...), and elementwise maps with a constant operand outside a layer, *pass*; sums of
input-dependent terms (residual connections), ``reduce_sum`` (a mean) and average pooling,
``Norm(stabilizer)``; max-pooling and ``reduce_max``, winner-take-all (the gradient); reshape,
transpose, slicing, gathering, padding, concatenation, the gradient. Transformers (AttnLRP,
Achtibat et al. 2024, arXiv:2402.05602): ``jax.nn.softmax`` gets ``R_x = x * (R - s * sum(R))``
(Prop. 3.1); a product of two input-dependent values (``q k^T``, ``A v``, a gate) gets the epsilon
rule on the product split 50/50 between the factors (Prop. 3.3); a normalisation layer
(LayerNorm, RMSNorm, GroupNorm of Flax and Equinox, ``jax.nn.standardize``) has its
normalisation factor held constant and the epsilon rule through the resulting linear map
(Prop. 3.4). Anything else that depends on ``x`` raises
:class:`~jaxattr.errors.UnsupportedPrimitiveError`.

Composites choose a rule per dense/conv layer; the first selector that matches wins:
``"first"`` (no other dense/conv layer between ``x`` and it), ``"last"`` (none between it and
the score; found by a first walk of the jaxpr), ``"dense"``, ``"conv"``, ``"sum"``,
``"avgpool"``, ``"linear"`` (dense or conv), a Flax module path pattern (``"*/fc2"``,
``"Dense_0"``; matched against the jaxpr's name stack), or a callable ``Layer -> bool``.

=========================================  ============================================
jaxattr                                    Zennit 0.5.1
=========================================  ============================================
``epsilon_plus_flat()``                    ``EpsilonPlusFlat()``
``epsilon_gamma_box(low, high)``           ``EpsilonGammaBox(low, high)``
``epsilon_alpha2_beta1()``                 ``EpsilonAlpha2Beta1()``
``epsilon_plus()``                         ``EpsilonPlus()``
``Composite.of(rule)``                     ``LayerMapComposite([(Linear, rule)] + base)``
=========================================  ============================================

Differences from Zennit, by design: BatchNorm is merged exactly (Zennit's canonizer keeps the
BN's ``eps`` in an identity BN, changing the function by ~1e-5); an elementwise scaling or
bias outside a layer passes relevance (Zennit's autograd would scale it); a ``"first"`` layer is
found by data flow, not module order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from ._calling import mark_transform
from ._checks import check_bool, fail, fail_type
from ._jaxpr import Rules
from ._rules_lrp import Layer, LrpOptions

__all__ = [
    "AlphaBeta", "Composite", "Epsilon", "Flat", "Gamma", "Gradient", "Layer", "Norm", "Pass",
    "WSquare", "ZBox", "ZPlus", "attn_lrp", "epsilon_alpha2_beta1", "epsilon_gamma_box",
    "epsilon_plus", "epsilon_plus_flat", "lrp",
]


def _nonneg(value: Any, name: str, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0:
        fail(rule, name, value, "is not a finite number >= 0", f"{name} >= 0 (0 allowed)")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Epsilon:
    """LRP-epsilon; ``epsilon=0`` is LRP-0 (Bach et al. 2015)."""

    epsilon: float = 1e-6

    def __post_init__(self):
        _nonneg(self.epsilon, "epsilon", "Epsilon")


@dataclasses.dataclass(frozen=True)
class ZPlus:
    """LRP z+ (alpha=1, beta=0 with negative inputs allowed, as Zennit)."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.stabilizer, "stabilizer", "ZPlus")


@dataclasses.dataclass(frozen=True)
class AlphaBeta:
    """LRP alpha-beta (``alpha - beta = 1``)."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.alpha, "alpha", "AlphaBeta")
        _nonneg(self.beta, "beta", "AlphaBeta")
        _nonneg(self.stabilizer, "stabilizer", "AlphaBeta")
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            fail("AlphaBeta", "alpha", self.alpha, f"minus beta={self.beta} is not 1",
                 "alpha - beta = 1 (conservation), e.g. alpha=2, beta=1 or alpha=1, beta=0")


@dataclasses.dataclass(frozen=True)
class Gamma:
    """LRP-gamma (generalised to negative inputs, as Zennit)."""

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.gamma, "gamma", "Gamma")
        _nonneg(self.stabilizer, "stabilizer", "Gamma")


@dataclasses.dataclass(frozen=True)
class ZBox:
    """LRP z^B for an input bounded in ``[low, high]`` (scalars or arrays broadcasting to x)."""

    low: Any
    high: Any
    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.stabilizer, "stabilizer", "ZBox")


@dataclasses.dataclass(frozen=True)
class Flat:
    """LRP flat: weights 1, bias 0, inputs 1 (Lapuschkin et al. 2019)."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.stabilizer, "stabilizer", "Flat")


@dataclasses.dataclass(frozen=True)
class WSquare:
    """LRP w^2 (Montavon et al. 2017): squared weights (and bias), inputs 1."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.stabilizer, "stabilizer", "WSquare")


@dataclasses.dataclass(frozen=True)
class Norm:
    """Proportional rule ``x * J^T (R / stab(z))`` (sums, average pooling)."""

    stabilizer: float = 1e-6

    def __post_init__(self):
        _nonneg(self.stabilizer, "stabilizer", "Norm")


@dataclasses.dataclass(frozen=True)
class Pass:
    """Relevance passed unchanged."""


@dataclasses.dataclass(frozen=True)
class Gradient:
    """The plain gradient ``J^T R``."""


_RULES = (Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, Flat, WSquare, Norm, Pass, Gradient)
_KEYWORDS = ("first", "last", "dense", "conv", "linear", "sum", "avgpool", "*", "any")


@dataclasses.dataclass(frozen=True)
class Composite:
    """Which rule at which layer: ``layers`` is a sequence of ``(selector, rule)``, first match
    wins; a dense or conv layer no selector matches gets ``default``, a sum or average pooling
    ``sum``. ``epsilon`` stabilises AttnLRP's product and normalisation rules; ``softmax`` is
    ``"taylor"`` (AttnLRP Prop. 3.1) or ``"gradient"``.

    >>> import jaxattr as ja
    >>> c = ja.relevance.Composite([("first", ja.relevance.Flat()), ("conv", ja.relevance.ZPlus())])
    >>> c.rule_for(ja.relevance.Layer("dense", "Model/fc", False, "")).__class__.__name__
    'Epsilon'
    """

    layers: Sequence[tuple[Any, Any]] = ()
    default: Any = Epsilon()
    sum: Any = Norm()
    epsilon: float = 1e-6
    softmax: str = "taylor"

    def __post_init__(self):
        layers = tuple(self.layers)
        for item in layers:
            if not (isinstance(item, tuple) and len(item) == 2):
                fail_type("Composite", "layers", item, "is not a (selector, rule) pair",
                          "a sequence of (selector, rule) pairs")
            sel, rule = item
            if not (callable(sel) or isinstance(sel, str)):
                fail_type("Composite", "selector", sel, "is neither a string nor a callable",
                          f"one of {_KEYWORDS}, a module path pattern, or a callable Layer -> "
                          "bool")
            _check_rule(rule, "rule")
        object.__setattr__(self, "layers", layers)
        _check_rule(self.default, "default")
        _check_rule(self.sum, "sum")
        _nonneg(self.epsilon, "epsilon", "Composite")
        if self.softmax not in ("taylor", "gradient"):
            fail("Composite", "softmax", self.softmax, "is not a softmax rule",
                 "'taylor' (AttnLRP Prop. 3.1) or 'gradient'")

    @classmethod
    def of(cls, rule: Any, **kw: Any) -> Composite:
        """One rule at every dense and conv layer (Zennit's ``LayerMapComposite`` of one rule)."""
        return cls([("linear", rule)], **kw)

    def rule_for(self, layer: Layer) -> Any:
        for sel, rule in self.layers:
            if layer.matches(sel):
                return rule
        return self.default if layer.kind in ("dense", "conv") else self.sum


def _check_rule(rule: Any, name: str) -> None:
    if not isinstance(rule, _RULES):
        fail_type("Composite", name, rule, "is not an LRP rule",
                  "one of " + ", ".join(r.__name__ + "()" for r in _RULES)
                  + " from jaxattr.relevance")


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonPlusFlat``: first layer Flat, conv ZPlus, dense Epsilon."""
    return Composite([("first", Flat(stabilizer)), ("conv", ZPlus(stabilizer)),
                      ("dense", Epsilon(epsilon))], sum=Norm(stabilizer), epsilon=epsilon)


def epsilon_gamma_box(low: Any, high: Any, epsilon: float = 1e-6, gamma: float = 0.25,
                      stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonGammaBox``: first layer ZBox(low, high), conv Gamma, dense Epsilon."""
    return Composite([("first", ZBox(low, high, stabilizer)), ("conv", Gamma(gamma, stabilizer)),
                      ("dense", Epsilon(epsilon))], sum=Norm(stabilizer), epsilon=epsilon)


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonAlpha2Beta1``: conv AlphaBeta(2, 1), dense Epsilon."""
    return Composite([("conv", AlphaBeta(2.0, 1.0, stabilizer)), ("dense", Epsilon(epsilon))],
                     sum=Norm(stabilizer), epsilon=epsilon)


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Zennit's ``EpsilonPlus``: conv ZPlus, dense Epsilon."""
    return Composite([("conv", ZPlus(stabilizer)), ("dense", Epsilon(epsilon))],
                     sum=Norm(stabilizer), epsilon=epsilon)


def attn_lrp(epsilon: float = 1e-6) -> Composite:
    """AttnLRP (Achtibat et al. 2024): epsilon everywhere (dense, conv, sums, products,
    normalisation), the Taylor rule at softmax, identity at activations."""
    return Composite([], default=Epsilon(epsilon), sum=Norm(epsilon), epsilon=epsilon)


_NAMED = {"epsilon_plus_flat": epsilon_plus_flat, "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
          "epsilon_plus": epsilon_plus, "attn_lrp": attn_lrp}


def _composite(composite: Any) -> Composite:
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str) and composite in _NAMED:
        return _NAMED[composite]()
    if isinstance(composite, _RULES):
        return Composite.of(composite)
    fail_type("lrp", "composite", composite, "is not a composite",
              "a jaxattr.relevance.Composite, a rule (applied to every layer), or one of "
              + ", ".join(repr(n) for n in _NAMED)
              + " (epsilon_gamma_box needs bounds: call jaxattr.relevance.epsilon_gamma_box)")
    raise AssertionError  # unreachable


@mark_transform
def lrp(f: Callable, composite: Composite | str | Any = "epsilon_plus_flat", *,
        argnums: int | Sequence[int] = 0, has_aux: bool = False, relevance: str = "score",
        dtype: Any = None) -> Callable:
    """Layer-wise Relevance Propagation of ``f`` (rules: the module docs).

    Args:
      f: ``x -> scalar`` score of one example (e.g. one logit); batch with ``jax.vmap``.
      composite: a :class:`~jaxattr.relevance.Composite`, a rule (at every dense/conv layer), or a
        name:
        ``"epsilon_plus_flat"`` (default), ``"epsilon_plus"``, ``"epsilon_alpha2_beta1"``,
        ``"attn_lrp"``.
      argnums, has_aux, dtype: as :func:`jaxattr.guided_backprop`.
      relevance: the relevance put on the score: ``"score"`` (its value, so that the map sums
        to ``f(x)`` where the rules conserve) or ``"one"`` (1, Zennit's one-hot convention).

    Returns:
      ``g(*args, **kwargs)`` -> relevance shaped like the ``argnums`` argument(s). The map is
      backward-only (not a derivative; ``jax.jvp`` of it raises).

    Example:
      >>> import jax, jax.numpy as jnp, jaxattr as ja
      >>> w1 = jnp.array([[1.0, 2.0], [-1.0, 1.0]]); w2 = jnp.array([1.0, 1.0])
      >>> f = lambda x: w2 @ jax.nn.relu(w1 @ x)
      >>> x = jnp.array([1.0, 2.0])
      >>> r = ja.lrp(f, ja.relevance.Epsilon(0.0))(x)  # LRP-0: here gradient x input
      >>> r.tolist(), float(r.sum()), float(f(x))  # and it conserves the score
      ([0.0, 6.0], 6.0, 6.0)
    """
    from .backprop import _modified_grad

    comp = _composite(composite)
    if relevance not in ("score", "one"):
        fail("lrp", "relevance", relevance, "is not a relevance convention",
             "'score' (the score's value) or 'one'")
    check_bool(has_aux, "has_aux", fn="lrp")
    needs_last = any(sel == "last" or callable(sel) for sel, _ in comp.layers)
    options = LrpOptions(rule_for=comp.rule_for, activation="pass", needs_last=needs_last,
                         bilinear_epsilon=comp.epsilon, norm_epsilon=comp.epsilon,
                         softmax=comp.softmax)
    return _modified_grad(f, Rules(options=(options,)), argnums, has_aux, "lrp", dtype,
                          seed_with_score=relevance == "score")
