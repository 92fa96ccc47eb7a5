"""The WHI 2018 theory of noise-adding methods as executable series, closed-form references, and
the statistics to compare Monte Carlo against them.

With ``eps ~ N(0, sigma^2 I)`` and ``t = sigma^2 / 2`` (heat semigroup):

* SmoothGrad_i = sum_k sigma^(2k) / (2^k k!) d_i Lap^k f(x): beyond the gradient it adds odd
  higher derivatives (third, fifth, ...), it does not smooth the gradient.
* VarGrad_i = sigma^2 sum_j f_ij^2 + sigma^4 [sum_jk f_ij f_ijkk + 1/2 sum_jk f_ijk^2] + O(sigma^6):
  no term involves the gradient, so VarGrad(f + a.x + b) = VarGrad(f).

The series converge for polynomials, sines and exponentials, are asymptotic (error
O(sigma^(2K+2))) for tanh/softplus networks, and are zero almost everywhere for ReLU networks,
whose true SmoothGrad/VarGrad are not analytic in sigma: the builders warn
(:class:`NonSmoothWarning`) when ``f`` contains such kinks.

References:
    Seo, Choe, Koo, Jeon, Kim, Jeon, "Noise-adding Methods of Saliency Map as Series of Higher
    Order Partial Derivative", WHI 2018, arXiv:1806.03000.
    Smilkov et al., "SmoothGrad", arXiv:1706.03825.
    Adebayo et al., "Sanity checks for saliency maps", arXiv:1810.03292.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import derivatives as _d
from .derivatives import Estimate

__all__ = [
    "ClosedForm",
    "Comparison",
    "NonSmoothWarning",
    "compare",
    "exponential",
    "plane_wave",
    "quadratic",
    "ridge_cubic",
    "samples_for_mean",
    "samples_for_variance",
    "sine_network",
    "smoothgrad_series",
    "vargrad_covariance_series",
    "vargrad_series",
]


class NonSmoothWarning(UserWarning):
    """``f`` has kinks (ReLU, abs, max...): its Taylor data, hence the series, is zero a.e."""


# ----------------------------------------------------------------------------------- validation
def _check_sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or np.ndim(sigma) != 0:
        raise TypeError(f"sigma={sigma!r} must be a real scalar")
    try:
        value = float(sigma)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"sigma={sigma!r} must be a concrete real scalar") from err
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"sigma={sigma} must be > 0 and finite")
    return value


_KINK_PRIMITIVES = {"max", "min", "abs", "sign", "clamp", "floor", "ceil", "round"}
_KINK_NAMES = {"relu", "relu6", "hard_tanh", "hard_sigmoid", "hard_silu", "hard_swish"}


def _kinks(jaxpr, names_only: bool = False) -> set[str]:
    """Non-smooth operations in a jaxpr. Inside a custom_jvp function (its own derivative rule
    decides smoothness, e.g. logaddexp uses max and abs) only named kinks (relu...) count."""
    found: set[str] = set()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        fn_name = str(eqn.params.get("name", ""))
        if fn_name in _KINK_NAMES:
            found.add(fn_name)
            continue
        if name in _KINK_PRIMITIVES and not names_only:
            found.add(name)
        inner_names_only = names_only or name.startswith("custom_jvp")
        for p in eqn.params.values():
            for sub in p if isinstance(p, tuple | list) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= _kinks(inner, inner_names_only)
    return found


def _warn_if_kinked(f: Callable, x: jax.Array) -> None:
    found = _kinks(jax.make_jaxpr(f)(x).jaxpr)
    if found:
        warnings.warn(
            f"f contains non-smooth operations {sorted(found)}: its second and higher "
            "derivatives vanish almost everywhere, so the series is zero a.e. while the true "
            "(Monte Carlo) SmoothGrad correction and VarGrad are not",
            NonSmoothWarning,
            stacklevel=3,
        )


def _combine(terms: list, coefs: list[float], stochastic: bool):
    if not stochastic:
        return sum(c * t for c, t in zip(coefs, terms, strict=True))
    value = sum(c * t.value for c, t in zip(coefs, terms, strict=True))
    var = sum((c * t.stderr) ** 2 for c, t in zip(coefs, terms, strict=True))
    return Estimate(value, jnp.sqrt(var))


# --------------------------------------------------------------------------------------- series
def smoothgrad_series(
    f: Callable,
    sigma: float,
    *,
    order: int = 1,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The SmoothGrad series ``sum_{k=0}^{order} sigma^(2k) / (2^k k!) grad Lap^k f``.

    Its error against the true SmoothGrad (``E grad f(x + eps)``, absolute ``sigma``) is
    ``O(sigma^(2 order + 2))``; it is exact for polynomials of degree ``<= 2 order + 2``.

    Args:
        f: scalar function of one array ``x``.
        sigma: absolute noise standard deviation, > 0.
        order: number of correction terms ``K >= 0`` (``0`` is the plain gradient).
        method: ``"exact"``, ``"forward"`` or ``"hutchinson"`` (see :mod:`jaxattr.derivatives`;
            ``order >= 2`` needs ``d <= EXACT_MAX_DIM_HIGH`` except with ``"hutchinson"``).
        num_probes, probe, chunk: options of the Hutchinson / chunked forward methods.

    Returns:
        ``x -> array shaped like x``; with ``"hutchinson"`` ``(x, key) -> Estimate`` (the
        gradient term is exact, term ``k`` uses ``fold_in(key, k)``).

    Raises:
        ValueError: ``sigma <= 0``, ``order < 0``, unknown ``method``, ``num_probes < 1``.
        TypeError: non-integer ``order``, ``f`` not scalar.

    Warns:
        NonSmoothWarning: when ``f`` contains ReLU/abs/max kinks (the series is zero a.e.).

    Example:
        >>> import jax.numpy as jnp
        >>> sg = smoothgrad_series(lambda x: jnp.sum(x**3), 0.5, order=1)
        >>> print(sg(jnp.array([1.0, 0.0])))  # 3 x^2 + 3 sigma^2
        [3.75 0.75]

    References:
        arXiv:1806.03000 (the series), arXiv:1706.03825 (SmoothGrad).
    """
    sigma = _check_sigma(sigma)
    order = _d._check_int("order", order, 0)
    _d._check_options(method, num_probes, probe, chunk)
    coefs = [sigma ** (2 * k) / (2**k * math.factorial(k)) for k in range(order + 1)]
    opts = dict(method=method, num_probes=num_probes, probe=probe, chunk=chunk)
    builders = [_d.grad_laplacian_power(f, k, **opts) for k in range(1, order + 1)]
    grad = jax.grad(f)

    if method == "hutchinson":

        def series_mc(x: jax.Array, key: jax.Array) -> Estimate:
            _d._flatten(f, x)
            _warn_if_kinked(f, x)
            g = grad(x)
            terms = [Estimate(g, jnp.zeros_like(g))]
            terms += [b(x, jax.random.fold_in(key, k)) for k, b in enumerate(builders, 1)]
            return _combine(terms, coefs, True)

        return series_mc

    def series(x: jax.Array) -> jax.Array:
        _d._flatten(f, x)
        _warn_if_kinked(f, x)
        return _combine([grad(x)] + [b(x) for b in builders], coefs, False)

    return series


def vargrad_series(
    f: Callable,
    sigma: float,
    *,
    order: int = 2,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The VarGrad series (population variance of ``grad f(x + eps)``) to ``sigma^(2 order)``.

    ``order=1``: ``sigma^2 sum_j f_ij^2``; ``order=2`` adds
    ``sigma^4 [sum_jk f_ij f_ijkk + 1/2 sum_jk f_ijk^2]``; ``order=0`` is zero.

    Args:
        f: scalar function. sigma: absolute noise std, > 0. order: 0, 1 or 2.
        method, num_probes, probe, chunk: as in :func:`smoothgrad_series` (``order=2`` needs
            ``d <= EXACT_MAX_DIM_HIGH`` except with ``"hutchinson"``).

    Returns:
        ``x -> array shaped like x``; with ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ValueError: ``sigma <= 0``, ``order`` not in 0..2, unknown ``method``,
            ``num_probes < 1``. TypeError: non-integer ``order``, ``f`` not scalar.

    Warns:
        NonSmoothWarning: when ``f`` contains ReLU/abs/max kinks.

    Example:
        >>> import jax.numpy as jnp
        >>> vg = vargrad_series(lambda x: jnp.sum(x**3), 0.5, order=2)
        >>> print(vg(jnp.array([1.0, 0.0])))  # 36 s^2 x^2 + 18 s^4
        [10.125  1.125]

    References:
        arXiv:1806.03000 (the series), arXiv:1810.03292 (VarGrad).
    """
    sigma = _check_sigma(sigma)
    order = _d._check_int("order", order, 0)
    if order > 2:
        raise ValueError(f"order={order} is not implemented: vargrad_series supports 0, 1, 2")
    _d._check_options(method, num_probes, probe, chunk)
    opts = dict(method=method, num_probes=num_probes, probe=probe, chunk=chunk)
    builders, coefs = [], []
    if order >= 1:
        builders.append(_d.hessian_row_sqnorms(f, **opts))
        coefs.append(sigma**2)
    if order >= 2:
        builders += [_d.hessian_laplacian_contraction(f, **opts),
                     _d.third_derivative_row_sqnorms(f, **opts)]
        coefs += [sigma**4, sigma**4 / 2]

    if method == "hutchinson":

        def series_mc(x: jax.Array, key: jax.Array) -> Estimate:
            _warn_if_kinked(f, x)
            if not builders:
                return Estimate(jnp.zeros_like(x), jnp.zeros_like(x))
            terms = [b(x, jax.random.fold_in(key, i)) for i, b in enumerate(builders)]
            return _combine(terms, coefs, True)

        return series_mc

    def series(x: jax.Array) -> jax.Array:
        _warn_if_kinked(f, x)
        if not builders:
            _d._flatten(f, x)
            return jnp.zeros_like(x)
        return _combine([b(x) for b in builders], coefs, False)

    return series


def vargrad_covariance_series(f: Callable, sigma: float, *, order: int = 2) -> Callable:
    """The covariance of ``grad f(x + eps)`` to ``sigma^(2 order)``, exactly (small ``d``).

    ``C = sigma^2 H^2 + (sigma^4 / 2) [sum_k T_k T_k + H L + L H]`` with ``T_k = d_k H`` and
    ``L`` the Hessian of ``Lap f``. Its diagonal is :func:`vargrad_series`.

    Args:
        f: scalar function. sigma: absolute noise std, > 0. order: 1 or 2.

    Returns:
        ``x -> array of shape x.shape + x.shape``.

    Raises:
        ValueError: ``sigma <= 0``, ``order`` not 1 or 2, ``d`` above ``EXACT_MAX_DIM``
            (``order=1``) or ``EXACT_MAX_DIM_HIGH`` (``order=2``).

    Example:
        >>> import jax.numpy as jnp
        >>> cov = vargrad_covariance_series(lambda x: x[0] * x[1], 0.5, order=1)
        >>> print(cov(jnp.zeros(2)))
        [[0.25 0.  ]
         [0.   0.25]]

    References:
        arXiv:1806.03000.
    """
    sigma = _check_sigma(sigma)
    order = _d._check_int("order", order, 1)
    if order > 2:
        raise ValueError(f"order={order} is not implemented: vargrad_covariance_series "
                         "supports 1, 2")
    limit = _d.EXACT_MAX_DIM if order == 1 else _d.EXACT_MAX_DIM_HIGH

    def cov(x: jax.Array) -> jax.Array:
        _warn_if_kinked(f, x)
        F, z = _d._flatten(f, x, limit=limit, what="vargrad_covariance_series")
        H = jax.hessian(F)(z)
        C = sigma**2 * H @ H
        if order == 2:
            T = jax.jacfwd(jax.hessian(F))(z)
            L = jax.hessian(_d._exact_lap(F))(z)
            C = C + sigma**4 / 2 * (jnp.einsum("kil,klj->ij", T, T) + H @ L + L @ H)
        return C.reshape(jnp.shape(x) * 2)

    return cov


# --------------------------------------------------------------------------------- closed forms
class ClosedForm(NamedTuple):
    """A reference function with its exact SmoothGrad, VarGrad and gradient covariance.

    ``smoothgrad(x, sigma)``, ``vargrad(x, sigma)`` (population variance) and
    ``covariance(x, sigma)`` (``(d, d)``) are for absolute ``sigma`` and 1-D ``x``.
    """

    f: Callable
    smoothgrad: Callable
    vargrad: Callable
    covariance: Callable


def quadratic(A: Any, b: Any) -> ClosedForm:
    """``f = x'Ax/2 + b'x`` (``A`` symmetric): SG = Ax + b, Cov = sigma^2 A^2 (exact series).

    Example:
        >>> import jax.numpy as jnp
        >>> q = quadratic(jnp.eye(2), jnp.zeros(2))
        >>> print(q.vargrad(jnp.ones(2), 0.5))
        [0.25 0.25]
    """
    A, b = jnp.asarray(A), jnp.asarray(b)
    return ClosedForm(
        f=lambda x: 0.5 * x @ A @ x + b @ x,
        smoothgrad=lambda x, sigma: A @ x + b,
        vargrad=lambda x, sigma: sigma**2 * jnp.sum(A**2, axis=1),
        covariance=lambda x, sigma: sigma**2 * A @ A,
    )


def plane_wave(w: Any, b: float = 0.0) -> ClosedForm:
    """``f = sin(u)``, ``u = w.x + b``, ``s^2 = sigma^2 |w|^2``: SG = w cos(u) e^(-s^2/2),
    Var_i = (w_i^2/2)(1 - e^(-s^2))(1 - e^(-s^2) cos 2u).

    Example:
        >>> import jax.numpy as jnp
        >>> print(plane_wave(jnp.array([1.0, 0.0])).smoothgrad(jnp.zeros(2), 1e-9))
        [1. 0.]
    """
    w = jnp.asarray(w)

    def cov_scalar(x, sigma):
        u, s2 = w @ x + b, sigma**2 * (w @ w)
        return 0.5 * (1 - jnp.exp(-s2)) * (1 - jnp.exp(-s2) * jnp.cos(2 * u))

    return ClosedForm(
        f=lambda x: jnp.sin(w @ x + b),
        smoothgrad=lambda x, sigma: w * jnp.cos(w @ x + b) * jnp.exp(-(sigma**2) * (w @ w) / 2),
        vargrad=lambda x, sigma: w**2 * cov_scalar(x, sigma),
        covariance=lambda x, sigma: jnp.outer(w, w) * cov_scalar(x, sigma),
    )


def exponential(w: Any) -> ClosedForm:
    """``f = exp(w.x)``: SG = w e^(w.x + s^2/2), Var_i = w_i^2 e^(2 w.x) e^(s^2) (e^(s^2) - 1).

    Example:
        >>> import jax.numpy as jnp
        >>> print(exponential(jnp.array([1.0])).smoothgrad(jnp.zeros(1), 0.0))
        [1.]
    """
    w = jnp.asarray(w)

    def scal(x, sigma):
        s2 = sigma**2 * (w @ w)
        return jnp.exp(2 * (w @ x)) * jnp.exp(s2) * jnp.expm1(s2)

    return ClosedForm(
        f=lambda x: jnp.exp(w @ x),
        smoothgrad=lambda x, sigma: w * jnp.exp(w @ x + sigma**2 * (w @ w) / 2),
        vargrad=lambda x, sigma: w**2 * scal(x, sigma),
        covariance=lambda x, sigma: jnp.outer(w, w) * scal(x, sigma),
    )


def ridge_cubic(a: Any) -> ClosedForm:
    """``f = (a.x)^3``, ``v = a.x``, ``s^2 = sigma^2 |a|^2``: SG = 3a(v^2 + s^2),
    Var_i = a_i^2 (36 s^2 v^2 + 18 s^4) (the order-1 SG and order-2 VarGrad series are exact).

    Example:
        >>> import jax.numpy as jnp
        >>> print(ridge_cubic(jnp.array([1.0])).vargrad(jnp.zeros(1), 1.0))
        [18.]
    """
    a = jnp.asarray(a)

    def scal(x, sigma):
        v, s2 = a @ x, sigma**2 * (a @ a)
        return 36 * s2 * v**2 + 18 * s2**2

    return ClosedForm(
        f=lambda x: (a @ x) ** 3,
        smoothgrad=lambda x, sigma: 3 * a * ((a @ x) ** 2 + sigma**2 * (a @ a)),
        vargrad=lambda x, sigma: a**2 * scal(x, sigma),
        covariance=lambda x, sigma: jnp.outer(a, a) * scal(x, sigma),
    )


def sine_network(c: Any, W: Any, b: Any) -> ClosedForm:
    """``f = sum_m c_m sin(u_m)``, ``u_m = w_m.x + b_m`` (``W`` rows ``w_m``).

    With ``r_mn = sigma^2 w_m.w_n`` (so ``s_m^2 = r_mm``), ``E cos(u + g) = cos(u) e^(-var/2)``
    for Gaussian ``g`` and ``cos A cos B = (cos(A - B) + cos(A + B)) / 2`` give

    * SG = sum_m c_m w_m cos(u_m) e^(-s_m^2/2);
    * Cov(cos(u_m + g_m), cos(u_n + g_n)) = (1/2) e^(-(s_m^2 + s_n^2)/2)
      [cos(u_m - u_n)(e^(r_mn) - 1) + cos(u_m + u_n)(e^(-r_mn) - 1)] =: K_mn;
    * gradient covariance C = W' diag(c) K diag(c) W, VarGrad = diag(C).

    One unit reduces to :func:`plane_wave`.

    Example:
        >>> import jax.numpy as jnp
        >>> net = sine_network(jnp.ones(1), jnp.eye(1), jnp.zeros(1))
        >>> print(net.smoothgrad(jnp.zeros(1), 1e-9))
        [1.]
    """
    c, W, b = jnp.asarray(c), jnp.asarray(W), jnp.asarray(b)

    def K(x, sigma):
        u = W @ x + b
        r = sigma**2 * W @ W.T
        s2 = jnp.diag(r)
        damp = 0.5 * jnp.exp(-(s2[:, None] + s2[None, :]) / 2)
        return damp * (jnp.cos(u[:, None] - u[None, :]) * jnp.expm1(r)
                       + jnp.cos(u[:, None] + u[None, :]) * jnp.expm1(-r))

    def cov(x, sigma):
        cw = c[:, None] * W
        return cw.T @ K(x, sigma) @ cw

    def sg(x, sigma):
        s2 = sigma**2 * jnp.sum(W**2, axis=1)
        return (c * jnp.cos(W @ x + b) * jnp.exp(-s2 / 2)) @ W

    return ClosedForm(
        f=lambda x: c @ jnp.sin(W @ x + b),
        smoothgrad=sg,
        vargrad=lambda x, sigma: jnp.diag(cov(x, sigma)),
        covariance=cov,
    )


# ----------------------------------------------------------------------------------- statistics
class Comparison(NamedTuple):
    """``passed`` iff ``|estimate - reference| <= z * stderr + bias_bound`` everywhere.

    ``excess`` is the largest ``|estimate - reference| - (z * stderr + bias_bound)`` (<= 0 when
    passed); ``zscore`` the largest ``|estimate - reference| / stderr``.
    """

    passed: bool
    excess: float
    zscore: float


def compare(
    estimate: Any, stderr: Any, reference: Any, *, bias_bound: Any = 0.0, z: float = 5.0
) -> Comparison:
    """Decide whether a Monte Carlo estimate agrees with a (possibly truncated) reference.

    Args:
        estimate: the estimate (array). stderr: its standard error (broadcastable, >= 0).
        reference: the value to compare with. bias_bound: a bound on the reference's own error
            (e.g. twice the first neglected series term), >= 0. z: standard errors allowed (> 0);
            choose it from the number of assertions (z = 5: 6e-7 false failures per element).

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: ``z <= 0``, negative ``stderr`` or ``bias_bound``.

    Example:
        >>> compare(1.02, 0.01, 1.0, z=5.0).passed
        True
        >>> compare(1.2, 0.01, 1.0, bias_bound=0.05, z=5.0).passed
        False
    """
    if not z > 0:
        raise ValueError(f"z={z} must be > 0")
    est, se, ref = (np.asarray(a, dtype=np.float64) for a in (estimate, stderr, reference))
    bias = np.asarray(bias_bound, dtype=np.float64)
    if np.any(se < 0):
        raise ValueError(f"stderr must be >= 0, got min {se.min()}")
    if np.any(bias < 0):
        raise ValueError(f"bias_bound must be >= 0, got min {bias.min()}")
    err = np.abs(est - ref)
    excess = err - (z * se + bias)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(se > 0, err / np.where(se > 0, se, 1.0), np.where(err > 0, np.inf, 0.0))
    return Comparison(bool(np.all(excess <= 0)), float(np.max(excess)), float(np.max(zs)))


def samples_for_variance(rel_err: float, *, z: float = 5.0, kurtosis: float = 3.0) -> int:
    """Samples needed to confirm a variance to relative error ``rel_err`` at ``z`` SEs:
    ``n = 1 + z^2 (kurtosis - 1) / rel_err^2`` (relative SE of the ddof=1 variance ~
    ``sqrt((kurtosis - 1) / n)``; Gaussian samples: kurtosis 3).

    Example:
        >>> samples_for_variance(0.1, z=4.0)
        3201
    """
    if not rel_err > 0 or not z > 0 or not kurtosis >= 1:
        raise ValueError(f"need rel_err={rel_err} > 0, z={z} > 0, kurtosis={kurtosis} >= 1")
    return math.ceil(1 + z**2 * (kurtosis - 1) / rel_err**2 - 1e-9)


def samples_for_mean(sd: float, effect: float, *, rel_err: float = 0.1, z: float = 5.0) -> int:
    """Samples needed so that ``z`` standard errors of a mean of samples with standard deviation
    ``sd`` are ``rel_err * |effect|``: ``n = (z sd / (rel_err |effect|))^2``.

    Example:
        >>> samples_for_mean(1.0, 1.0, rel_err=0.5, z=5.0)
        100
    """
    if not sd >= 0 or effect == 0 or not rel_err > 0 or not z > 0:
        raise ValueError(f"need sd={sd} >= 0, effect={effect} != 0, rel_err={rel_err} > 0, "
                         f"z={z} > 0")
    return max(2, math.ceil((z * sd / (rel_err * abs(effect))) ** 2 - 1e-9))
