"""The Laplacian family: ``Lap^k f`` and ``grad Lap^k f`` for ``k >= 0`` (``laplacian`` and
``grad_laplacian`` are ``k = 1``), by dense Hessians, folx forward Laplacians or Hutchinson.

References:
    Seo et al., WHI 2018, arXiv:1806.03000, eq. (SmoothGrad series): term ``k`` of SmoothGrad is
    ``sigma^(2k) / (2^k k!) grad Lap^k f``.
    Li et al., "Forward Laplacian", arXiv:2307.08214.
    Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1989.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from . import _ops
from ._core import EXACT_MAX_DIM, EXACT_MAX_DIM_HIGH, Options, build, check_int, register


def _wrap(g: Callable, grad: bool) -> Callable:
    return jax.grad(g) if grad else g


def _exact(F, z, k: int, grad: bool):
    return _wrap(_ops.exact_lap_power(F, k), grad)(z)


def _forward(F, z, opts: Options, k: int, grad: bool):
    if k == 1:
        return _ops.try_folx(F, z, lambda: _ops.forward_lap_chunks(F, z, opts.chunk, grad),
                             lambda: _exact(F, z, k, grad))

    def nested(G):
        for _ in range(k):
            G = _ops.folx_lap(G)
        return G

    return _ops.try_folx(F, z, lambda: _wrap(nested(F), grad)(z), lambda: _exact(F, z, k, grad))


def _sample(F, z, key, opts: Options, k: int, grad: bool):
    return _wrap(_ops.hutch_lap_power(F, k, opts.probe), grad)(z, key)


def _exact_limit(opts: Options) -> int:
    return EXACT_MAX_DIM_HIGH if (opts.k or 1) >= 2 else EXACT_MAX_DIM


def _forward_limit(opts: Options) -> int | None:
    return EXACT_MAX_DIM_HIGH if (opts.k or 1) >= 2 else None  # nested folx for k >= 2


def _register_family(quantity: str, grad: bool) -> None:
    def power(opts: Options) -> int:
        return 1 if opts.k is None else opts.k

    register(quantity, "exact", limit=_exact_limit)(
        lambda F, z, opts: _exact(F, z, power(opts), grad))
    register(quantity, "forward", limit=_forward_limit)(
        lambda F, z, opts: _forward(F, z, opts, power(opts), grad))
    register(quantity, "hutchinson")(
        lambda F, z, key, opts: _sample(F, z, key, opts, power(opts), grad))


for _quantity, _grad in (("laplacian", False), ("grad_laplacian", True),
                         ("laplacian_power", False), ("grad_laplacian_power", True)):
    _register_family(_quantity, _grad)


def laplacian(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The Laplacian ``sum_i d^2 f / dx_i^2``.

    Args:
        f: scalar function of one array argument.
        method: ``"exact"`` (trace of ``jax.hessian``, ``d <= EXACT_MAX_DIM``), ``"forward"``
            (folx forward Laplacian, coordinate chunks) or ``"hutchinson"`` (``v' H v``).
        num_probes: number of probes (``"hutchinson"``).
        probe: ``"rademacher"`` (lower variance) or ``"gaussian"``.
        chunk: coordinates per forward-Laplacian pass (``"forward"``; default keeps
            ``d * chunk <= 2**24``) or probes per pass (``"hutchinson"``; default all).

    Returns:
        ``x -> scalar``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError: unknown ``method``/``probe``, ``num_probes < 1``, ``chunk < 1``, or ``d``
            too large for ``"exact"``.
        ArgumentTypeError: non-integer options, ``f`` not callable or not scalar-valued, ``x``
            not floating, ``key`` not a PRNG key.

    Example:
        >>> import jax.numpy as jnp
        >>> lap = laplacian(lambda x: jnp.sum(x**3), method="forward")
        >>> print(float(lap(jnp.array([1.0, 2.0]))))
        18.0

    References:
        Li et al., arXiv:2307.08214 (forward Laplacian); Hutchinson 1989 (trace estimator);
        Seo et al., arXiv:1806.03000 (why Laplacians matter for SmoothGrad).
    """
    return build("laplacian", f, method=method, num_probes=num_probes, probe=probe, chunk=chunk)


def grad_laplacian(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The gradient of the Laplacian, ``d_i sum_j f_ijj``, shaped like ``x``.

    ``"exact"`` differentiates the trace of the nested ``jax.hessian``; ``"forward"`` reverses
    through the chunked folx forward Laplacian; ``"hutchinson"`` averages ``grad (v' H v)``.
    Options as in :func:`laplacian`.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError, ArgumentTypeError: as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> gl = grad_laplacian(lambda x: jnp.sum(x**3))
        >>> print(gl(jnp.array([1.0, 2.0])))
        [6. 6.]

    References:
        Seo et al., arXiv:1806.03000: the sigma^2 term of SmoothGrad is
        ``(sigma^2/2) grad Lap f``.
    """
    return build("grad_laplacian", f, method=method, num_probes=num_probes, probe=probe,
                 chunk=chunk)


def laplacian_power(
    f: Callable,
    k: int,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """The iterated Laplacian ``Lap^k f`` (``k = 0`` is ``f`` itself).

    ``"exact"`` nests ``k`` Hessian traces (``d <= EXACT_MAX_DIM_HIGH`` for ``k >= 2``);
    ``"forward"`` nests ``k`` folx forward Laplacians (chunked for ``k = 1``; ``k >= 2`` needs
    ``d <= EXACT_MAX_DIM_HIGH``); ``"hutchinson"`` averages ``D^{2k} f[v_1, v_1, ..., v_k, v_k]``
    over ``k`` independent probes (nested JVPs; any ``d``, variance grows with ``k``).

    Args:
        f: scalar function. k: the power, an integer >= 0. Other options as in
            :func:`laplacian`.

    Returns:
        ``x -> scalar``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ArgumentError: ``k < 0`` and as in :func:`laplacian`.
        ArgumentTypeError: non-integer ``k`` and as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(float(laplacian_power(lambda x: jnp.sum(x**4), 2)(jnp.ones(3))))
        72.0

    References:
        Seo et al., arXiv:1806.03000 (SmoothGrad series).
    """
    k = check_int(k, "k", fn="laplacian_power", minimum=0)
    return build("laplacian_power", f, method=method, num_probes=num_probes, probe=probe,
                 chunk=chunk, k=k)


def grad_laplacian_power(
    f: Callable,
    k: int,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``grad Lap^k f``, the k-th SmoothGrad series term up to its coefficient.

    Same methods and limits as :func:`laplacian_power`; returns ``x -> array shaped like x``
    (``(x, key) -> Estimate`` for ``"hutchinson"``).

    Raises:
        ArgumentError, ArgumentTypeError: as in :func:`laplacian_power`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(grad_laplacian_power(lambda x: jnp.sum(x**4), 1)(jnp.ones(2)))
        [24. 24.]

    References:
        Seo et al., arXiv:1806.03000 (SmoothGrad series).
    """
    k = check_int(k, "k", fn="grad_laplacian_power", minimum=0)
    return build("grad_laplacian_power", f, method=method, num_probes=num_probes, probe=probe,
                 chunk=chunk, k=k)
