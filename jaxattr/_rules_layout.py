"""The layout rule set of the engine: convolutions in XLA:CPU's canonical layout (same values).

Registered with the walker (:func:`jaxattr._jaxpr.register`) for ``conv_general_dilated``: with
``Rules(canonical_conv=True)`` a convolution in any other layout is computed as transpose,
canonical convolution, transpose. It changes no value and no derivative; it is what
:func:`cpu_loop_body` applies to every loop body of jaxattr that evaluates a user's model.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ._compat import bind as _bind
from ._jaxpr import Rules, _Interpreter, _Val, register, rewrite

__all__ = ["canonical_convs", "cpu_loop_body"]


@register("conv_general_dilated")
def _canonical_layout(interp: _Interpreter, eqn, invals, ctx, next_) -> list[_Val]:
    if not interp.rules.canonical_conv or _is_canonical_conv(eqn):
        return next_()
    interp.stats.sites += 1
    return [_Val(_canonical_conv(eqn, [v.value for v in invals]))]


def _canonical_specs(nd: int) -> lax.ConvDimensionNumbers:
    """XLA:CPU's fast layout: input and output (batch, spatial..., feature), kernel (spatial...,
    in-feature, out-feature): NHWC / HWIO in two dimensions."""
    io = (0, nd - 1, *range(1, nd - 1))
    return lax.ConvDimensionNumbers(lhs_spec=io, rhs_spec=(nd - 1, nd - 2, *range(nd - 2)),
                                    out_spec=io)


def _is_canonical_conv(eqn) -> bool:
    dn = eqn.params["dimension_numbers"]
    return dn == _canonical_specs(len(dn.lhs_spec))


def _canonical_conv(eqn, invals: list) -> jax.Array:
    """The same convolution computed in the canonical layout, between transposes.

    Every logical dimension keeps its role and the spatial dimensions keep their order, so the
    window parameters stay valid and the result is the same (the transposes are exact).
    """
    dn = eqn.params["dimension_numbers"]
    lhs, rhs = invals
    lhs = jnp.transpose(lhs, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))
    rhs = jnp.transpose(rhs, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))
    out = _bind(eqn.replace(params={**eqn.params,
                                    "dimension_numbers": _canonical_specs(len(dn.lhs_spec))}),
                [lhs, rhs])[0]
    nd = len(dn.out_spec)
    position = {dn.out_spec[0]: 0, dn.out_spec[1]: nd - 1}  # original axis -> canonical axis
    position.update({d: 1 + i for i, d in enumerate(dn.out_spec[2:])})
    return jnp.transpose(out, [position[d] for d in range(nd)])


def canonical_convs(fun: Callable) -> Callable:
    """``fun`` with every convolution computed in XLA:CPU's canonical layout (same values).

    XLA:CPU canonicalises convolution layouts (so that they run on its fast Eigen/XNNPACK
    kernels) only in a program's entry computation. Inside a loop body (``lax.fori_loop``,
    ``lax.scan``, ``lax.map``) a convolution in another layout runs on a generic emitter, 10 to
    20 times slower. The input gradient of every NHWC/HWIO convolution is one (JAX transposes the
    kernel's feature dimensions), so a chunked SmoothGrad over a CNN ran ~3x slower than the
    same passes at top level. Applied to a loop body, this restores the fast kernels; the
    transposes it adds are exact. Nothing else is changed: a primitive it does not know is bound
    as traced.
    """
    return rewrite(fun, Rules(canonical_conv=True), name="canonical_convs")


def cpu_loop_body(fun: Callable) -> Callable:
    """``canonical_convs(fun)`` on the CPU backend, ``fun`` itself elsewhere: wrap the body of
    every ``lax.fori_loop``/``lax.scan``/``lax.map`` that may evaluate a user's model."""
    return canonical_convs(fun) if jax.default_backend() == "cpu" else fun
