"""Analytic derivative tooling: Laplacians, their gradients and powers, Hessian row norms, and the
sigma^4 contractions of the VarGrad series, for any scalar JAX function ``f: x -> scalar``.

Every builder takes ``f`` and returns a function of ``x`` (any shape; derivatives are taken with
respect to all ``d = x.size`` entries). Three methods:

* ``method="exact"``: dense Hessians / third-derivative tensors (``jax.hessian``). Small ``d`` only:
  ``d <= EXACT_MAX_DIM`` (2048) for second- and third-order quantities, ``d <= EXACT_MAX_DIM_HIGH``
  (256) for fourth-order ones (``laplacian_power`` with ``k >= 2``, the sigma^4 contractions).
* ``method="forward"``: the forward Laplacian of folx (Li et al. 2023, arXiv:2307.08214), applied
  to chunks of coordinates so that no ``d x d`` matrix is formed (memory ``O(d * chunk)``).
  ``hessian_row_sqnorms`` has no folx operator: ``"forward"`` streams exact Hessian-vector
  products over the coordinate basis in chunks instead (``d`` HVPs, no ``d x d`` matrix). The
  sigma^4 contractions and ``laplacian_power`` with ``k >= 2`` have no chunked forward form:
  they use nested folx / exact tensors with the ``EXACT_MAX_DIM_HIGH`` limit. Where folx lacks
  a rule for a primitive of ``f``, a ``FolxFallbackWarning`` names it and the exact method is
  used.
* ``method="hutchinson"``: Monte Carlo over Rademacher or Gaussian probes using only HVPs and
  nested JVPs; any ``d``. The returned function takes ``(x, key)`` and returns an
  :class:`Estimate` ``(value, stderr)``; probe ``i`` is drawn from ``fold_in(key, i)``.

References:
    Seo, Choe, Koo, Jeon, Kim, Jeon, "Noise-adding Methods of Saliency Map as Series of Higher
    Order Partial Derivative", WHI 2018, arXiv:1806.03000.
    Li, Ye, Chen, Wang, Xu, He, Ren, "A computational framework for neural network-based
    variational Monte Carlo with Forward Laplacian", arXiv:2307.08214.
    Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1989.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import check_int


def _check_int(name: str, value, minimum: int) -> int:
    return check_int(value, name, fn="jaxattr.derivatives", minimum=minimum)


__all__ = [
    "EXACT_MAX_DIM",
    "EXACT_MAX_DIM_HIGH",
    "Estimate",
    "FolxFallbackWarning",
    "grad_laplacian",
    "grad_laplacian_power",
    "hessian_laplacian_contraction",
    "hessian_row_sqnorms",
    "laplacian",
    "laplacian_power",
    "third_derivative_row_sqnorms",
]

EXACT_MAX_DIM = 2048
"""Largest ``d`` for ``method="exact"`` on second/third-order quantities (a ``d x d`` Hessian)."""
EXACT_MAX_DIM_HIGH = 256
"""Largest ``d`` for fourth-order quantities (``d x d x d`` tensors or nested Hessians)."""

METHODS = ("exact", "forward", "hutchinson")
PROBES = ("rademacher", "gaussian")
_CHUNK_BUDGET = 2**24  # entries of a d x chunk tangent block in the chunked methods


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (sample std, ddof=1, over sqrt(probes))."""

    value: jax.Array
    stderr: jax.Array


class FolxFallbackWarning(UserWarning):
    """folx has no forward-Laplacian rule for a primitive of ``f``; the exact method was used."""


# ----------------------------------------------------------------------------------- validation
def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    return method


def _check_options(method, num_probes, probe, chunk) -> None:
    _check_method(method)
    _check_int("num_probes", num_probes, 1)
    if probe not in PROBES:
        raise ValueError(f"probe={probe!r} must be one of {PROBES}")
    if chunk is not None:
        _check_int("chunk", chunk, 1)


def _flatten(f: Callable, x: jax.Array, *, limit: int | None = None, what: str = ""):
    """Check ``x`` and ``f(x)``; return ``(F, z)`` with ``F(z) = f(z.reshape(x.shape))``."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    out = jax.eval_shape(f, x)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise TypeError(f"f must return a scalar, got {shape}")
    if limit is not None and x.size > limit:
        raise ValueError(
            f"method='exact' for {what} is limited to d <= {limit} (got d={x.size}); "
            "use method='forward' or method='hutchinson' for large inputs"
        )
    shape = x.shape
    return (lambda z: f(z.reshape(shape))), x.reshape(-1)


def _hvp(F: Callable, z: jax.Array, v: jax.Array) -> jax.Array:
    return jax.jvp(jax.grad(F), (z,), (v,))[1]


def _d2(F: Callable, v: jax.Array) -> Callable:
    """z -> second directional derivative v' H_F(z) v (nested JVPs, no Hessian)."""

    def first(z):
        return jax.jvp(F, (z,), (v,))[1]

    return lambda z: jax.jvp(first, (z,), (v,))[1]


# ----------------------------------------------------------------------------------------- exact
def _exact_lap(F: Callable) -> Callable:
    return lambda z: jnp.trace(jax.hessian(F)(z))


def _exact_lap_power(F: Callable, k: int) -> Callable:
    for _ in range(k):
        F = _exact_lap(F)
    return F


# --------------------------------------------------------------------------------------- forward
def _auto_chunk(d: int, chunk: int | None) -> int:
    if chunk is not None:
        return min(chunk, d)
    return d if d * d <= _CHUNK_BUDGET else max(1, _CHUNK_BUDGET // d)


def _chunk_ids(d: int, c: int) -> jax.Array:
    n = -(-d // c)
    ids = jnp.arange(n * c)
    return jnp.where(ids < d, ids, -1).reshape(n, c)  # -1 -> one_hot row of zeros


def _folx_lap(F: Callable) -> Callable:
    import folx

    def lap(z):
        # folx broadcasts internally by rank promotion; allow it inside folx only
        with jax.numpy_rank_promotion("allow"):
            return folx.forward_laplacian(F)(z).laplacian

    return lap


def _try_folx(F: Callable, z: jax.Array, build: Callable, fallback: Callable) -> Callable:
    """Return ``build`` if folx can trace ``F``, else warn and return ``fallback``."""
    try:
        jax.eval_shape(_folx_lap(F), z)
    except (NotImplementedError, KeyError, TypeError, ValueError, AssertionError) as err:
        warnings.warn(
            f"folx has no forward-Laplacian rule for part of f ({type(err).__name__}: {err}); "
            "falling back to method='exact'",
            FolxFallbackWarning,
            stacklevel=3,
        )
        return fallback
    return build


def _forward_lap_chunks(F: Callable, z: jax.Array, chunk: int | None, grad: bool):
    """Sum over coordinate chunks C of the folx Laplacian of y -> F(z + P_C y) at y = 0."""
    d = z.size
    c = _auto_chunk(d, chunk)
    if c >= d:
        lap = _folx_lap(F)
        return jax.grad(lap)(z) if grad else lap(z)

    def one(ids):
        def lap_c(zz):
            P = jax.nn.one_hot(ids, d, dtype=zz.dtype).T  # (d, c) embedding of the chunk
            return _folx_lap(lambda y: F(zz + P @ y))(jnp.zeros(c, zz.dtype))

        return jax.grad(lap_c)(z) if grad else lap_c(z)

    def body(acc, ids):
        return acc + one(ids), None

    init = jnp.zeros_like(z) if grad else jnp.zeros((), z.dtype)
    return lax.scan(body, init, _chunk_ids(d, c))[0]


def _streamed_row_sqnorms(F: Callable, z: jax.Array, chunk: int | None) -> jax.Array:
    """sum_j H_ij^2 from Hessian columns H e_j, chunk by chunk (no d x d matrix)."""
    d = z.size
    c = _auto_chunk(d, chunk)

    def body(acc, ids):
        V = jax.nn.one_hot(ids, d, dtype=z.dtype)  # (c, d)
        HV = jax.vmap(lambda v: _hvp(F, z, v))(V)
        return acc + jnp.sum(HV**2, axis=0), None

    return lax.scan(body, jnp.zeros_like(z), _chunk_ids(d, c))[0]


# ------------------------------------------------------------------------------------ hutchinson
def _probe(key: jax.Array, z: jax.Array, probe: str) -> jax.Array:
    if probe == "rademacher":
        return jax.random.rademacher(key, z.shape, dtype=z.dtype)
    return jax.random.normal(key, z.shape, dtype=z.dtype)


def _mc(sample: Callable, key: jax.Array, num_probes: int, chunk: int | None) -> Estimate:
    """Mean and standard error of ``sample(fold_in(key, i))`` over ``i < num_probes``."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_probes))
    if chunk is None:
        s = jax.vmap(sample)(keys)
    else:
        s = lax.map(sample, keys, batch_size=min(chunk, num_probes))
    mean = jnp.mean(s, axis=0)
    if num_probes == 1:
        return Estimate(mean, jnp.full_like(mean, jnp.inf))
    sd = jnp.sqrt(jnp.sum((s - mean[None]) ** 2, axis=0) / (num_probes - 1))
    return Estimate(mean, sd / math.sqrt(num_probes))


def _hutch_lap_power(F: Callable, k: int, probe: str) -> Callable:
    """(z, key) -> one unbiased sample of Lap^k F(z): D^{2k} F[v1, v1, ..., vk, vk]."""

    def sample_fn(z, key):
        G = F
        for i in range(k):
            G = _d2(G, _probe(jax.random.fold_in(key, i), z, probe))
        return G(z)

    return sample_fn


# ------------------------------------------------------------------------------------ public API
def _build(f, method, num_probes, probe, chunk, exact, forward, sample, *, name, high=False):
    """Shared wrapper: validate at build time, flatten at call time, reshape the result."""
    _check_options(method, num_probes, probe, chunk)
    limit = EXACT_MAX_DIM_HIGH if high else EXACT_MAX_DIM

    if method == "hutchinson":

        def estimate(x: jax.Array, key: jax.Array) -> Estimate:
            F, z = _flatten(f, x)
            est = _mc(lambda k: sample(F, z, k), key, num_probes, chunk)
            return Estimate(*(jnp.reshape(a, jnp.shape(x) if a.ndim else ()) for a in est))

        return estimate

    def value(x: jax.Array) -> jax.Array:
        exact_limit = limit if method == "exact" or forward is None else None
        F, z = _flatten(f, x, limit=exact_limit, what=name)
        fn = exact if method == "exact" or forward is None else forward
        out = fn(F, z)
        return out.reshape(jnp.shape(x)) if out.ndim else out

    return value


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
        ValueError: unknown ``method``/``probe``, ``num_probes < 1``, or ``d`` too large for
            ``"exact"``. TypeError: ``f`` not scalar-valued.

    Example:
        >>> import jax.numpy as jnp
        >>> lap = laplacian(lambda x: jnp.sum(x**3), method="forward")
        >>> print(float(lap(jnp.array([1.0, 2.0]))))
        18.0

    References:
        arXiv:2307.08214 (forward Laplacian); arXiv:1806.03000 (why Laplacians matter here).
    """

    def forward(F, z):
        return _try_folx(F, z, lambda: _forward_lap_chunks(F, z, chunk, False),
                         lambda: _exact_lap(F)(z))()

    def sample(F, z, key):
        return _hutch_lap_power(F, 1, probe)(z, key)

    return _build(f, method, num_probes, probe, chunk, lambda F, z: _exact_lap(F)(z), forward,
                  sample, name="laplacian")


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
        ValueError, TypeError: as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> gl = grad_laplacian(lambda x: jnp.sum(x**3))
        >>> print(gl(jnp.array([1.0, 2.0])))
        [6. 6.]

    References:
        arXiv:1806.03000 (the sigma^2 term of SmoothGrad is (sigma^2/2) grad Laplacian f).
    """

    def exact(F, z):
        return jax.grad(_exact_lap(F))(z)

    def forward(F, z):
        return _try_folx(F, z, lambda: _forward_lap_chunks(F, z, chunk, True),
                         lambda: exact(F, z))()

    def sample(F, z, key):
        return jax.grad(_hutch_lap_power(F, 1, probe))(z, key)

    return _build(f, method, num_probes, probe, chunk, exact, forward, sample,
                  name="grad_laplacian")


def _power_builder(f, k, method, num_probes, probe, chunk, grad):
    k = _check_int("k", k, 0)

    def wrap(g):
        return jax.grad(g) if grad else g

    def exact(F, z):
        return wrap(_exact_lap_power(F, k))(z)

    def forward(F, z):
        if k == 1:
            return _try_folx(F, z, lambda: _forward_lap_chunks(F, z, chunk, grad),
                             lambda: exact(F, z))()
        if z.size > EXACT_MAX_DIM_HIGH and k >= 2:
            raise ValueError(
                f"method='forward' for laplacian_power with k={k} >= 2 is limited to "
                f"d <= {EXACT_MAX_DIM_HIGH} (got d={z.size}); use method='hutchinson'"
            )

        def nested(Fz):
            G = Fz
            for _ in range(k):
                G = _folx_lap(G)
            return G

        return _try_folx(F, z, lambda: wrap(nested(F))(z), lambda: exact(F, z))()

    def sample(F, z, key):
        return wrap(_hutch_lap_power(F, k, probe))(z, key)

    return _build(f, method, num_probes, probe, chunk, exact, forward, sample,
                  name=f"laplacian_power(k={k})", high=k >= 2)


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
        ValueError: ``k < 0`` and as in :func:`laplacian`. TypeError: non-integer ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(float(laplacian_power(lambda x: jnp.sum(x**4), 2)(jnp.ones(3))))
        72.0

    References:
        arXiv:1806.03000.
    """
    return _power_builder(f, k, method, num_probes, probe, chunk, grad=False)


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
        ValueError, TypeError: as in :func:`laplacian_power`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(grad_laplacian_power(lambda x: jnp.sum(x**4), 1)(jnp.ones(2)))
        [24. 24.]

    References:
        arXiv:1806.03000.
    """
    return _power_builder(f, k, method, num_probes, probe, chunk, grad=True)


def hessian_row_sqnorms(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_j H_ij^2`` for every ``i`` (the leading VarGrad term over ``sigma^2``).

    ``"exact"``: rows of ``jax.hessian``. ``"forward"``: folx has no operator for this, so the
    Hessian columns ``H e_j`` are streamed through HVPs ``chunk`` at a time (exact, ``d`` HVPs,
    no ``d x d`` matrix). ``"hutchinson"``: ``E[(H v)_i^2]``.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ValueError, TypeError: as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> rn = hessian_row_sqnorms(lambda x: x[0] * x[1] + x[0] ** 2)
        >>> print(rn(jnp.zeros(2)))
        [5. 1.]

    References:
        arXiv:1806.03000 (VarGrad = sigma^2 sum_j H_ij^2 + O(sigma^4)).
    """

    def exact(F, z):
        return jnp.sum(jax.hessian(F)(z) ** 2, axis=1)

    def forward(F, z):
        return _streamed_row_sqnorms(F, z, chunk)

    def sample(F, z, key):
        return _hvp(F, z, _probe(key, z, probe)) ** 2

    return _build(f, method, num_probes, probe, chunk, exact, forward, sample,
                  name="hessian_row_sqnorms")


def hessian_laplacian_contraction(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_jk f_ij f_ijkk = sum_j H_ij L_ij`` with ``L`` the Hessian of ``Lap f``.

    One of the two sigma^4 contractions of the VarGrad series. ``"exact"`` and ``"forward"``
    (no folx form: exact fallback) need ``d <= EXACT_MAX_DIM_HIGH``. ``"hutchinson"``:
    ``E[(H v)_i * d_i D^3 f[v, w, w]]`` with independent probes ``v, w``.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ValueError, TypeError: as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> c = hessian_laplacian_contraction(lambda x: x[0] ** 4)
        >>> print(c(jnp.array([1.0, 0.0])))
        [288.   0.]

    References:
        arXiv:1806.03000.
    """

    def exact(F, z):
        return jnp.sum(jax.hessian(F)(z) * jax.hessian(_exact_lap(F))(z), axis=1)

    def sample(F, z, key):
        kv, kw = jax.random.split(key)
        v, w = _probe(kv, z, probe), _probe(kw, z, probe)

        def d3(y):  # D^3 F[v, w, w](y) = d/dt w' H(y + t v) w
            return jax.jvp(_d2(F, w), (y,), (v,))[1]

        return _hvp(F, z, v) * jax.grad(d3)(z)

    return _build(f, method, num_probes, probe, chunk, exact, None, sample,
                  name="hessian_laplacian_contraction", high=True)


def third_derivative_row_sqnorms(
    f: Callable,
    *,
    method: str = "exact",
    num_probes: int = 64,
    probe: str = "rademacher",
    chunk: int | None = None,
) -> Callable:
    """``sum_jk f_ijk^2`` for every ``i`` (the VarGrad series uses half of it at sigma^4).

    ``"exact"`` and ``"forward"`` (exact fallback) form ``d x d x d`` and need
    ``d <= EXACT_MAX_DIM_HIGH``. ``"hutchinson"``: ``E[(d_i v' H w)^2]``, independent ``v, w``.

    Returns:
        ``x -> array shaped like x``; for ``"hutchinson"`` ``(x, key) -> Estimate``.

    Raises:
        ValueError, TypeError: as in :func:`laplacian`.

    Example:
        >>> import jax.numpy as jnp
        >>> t = third_derivative_row_sqnorms(lambda x: x[0] ** 2 * x[1])
        >>> print(t(jnp.zeros(2)))
        [8. 4.]

    References:
        arXiv:1806.03000.
    """

    def exact(F, z):
        return jnp.sum(jax.jacfwd(jax.hessian(F))(z) ** 2, axis=(1, 2))

    def sample(F, z, key):
        kv, kw = jax.random.split(key)
        v, w = _probe(kv, z, probe), _probe(kw, z, probe)
        return jax.grad(lambda y: jnp.vdot(w, _hvp(F, y, v)))(z) ** 2

    return _build(f, method, num_probes, probe, chunk, exact, None, sample,
                  name="third_derivative_row_sqnorms", high=True)
