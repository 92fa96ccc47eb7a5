"""Exact order statistics without a full sort: the k-th largest element of a vector.

RectGrad needs one order statistic per layer per example (ResNet layers hold ~800k units), at a
static rank ``k`` (2% of the units at q=98). Every method here is exact and they all return the
same bits.

All methods work on integer *keys*: each float is mapped to an unsigned integer with the same
order (``_sortable_keys``), so that comparisons are exact whatever the platform does with
subnormals, and the answer is mapped back.

Methods (``kth_largest(v, k, method=...)``):

* ``"bracket"`` (Floyd-Rivest): sort a deterministic sample of ~1-4k keys, take two sample keys
  ``L <= H`` around the target rank, count the keys above/at both bounds in ONE fused pass, and
  gather the few keys strictly between the bounds (a fixed-size compaction, ``cap`` slots) and sort
  those. Values equal to a bound are never gathered, so a layer that is mostly exact zeros (after
  a ReLU most of ``a * R`` is 0) costs nothing extra: 0 becomes a bound and is counted, not
  gathered. When the bracket misses (the target lies outside ``[L, H]`` or more than ``cap`` keys
  lie between) the exact radix search runs instead, under ``lax.cond``; under ``jax.vmap`` the
  batch shares one ``lax.cond`` on "did any example miss" (a ``custom_vmap`` rule), so the
  fallback costs nothing unless it is needed. Three passes over the layer (sample gather,
  count, compact), whatever its size.
* ``"radix"``: radix search on the key bits, ``digit_bits`` bits fixed per pass
  (1 = bisection: 32 fused counting passes for float32). No data-dependent branch.
* ``"histogram"``: radix select with wide digits (``digit_bits``, default 8 -> 4 passes for float32)
  counted by a scatter-add histogram per pass. No data-dependent branch.
* ``"host"`` (CPU only in spirit): numpy's vectorized sort of the integer keys on the host, in
  one ``jax.pure_callback`` per vmapped batch (about 1.3 ms for 32 x 32768 keys, 4x faster than
  the radix search on XLA:CPU, whose sort, scan and scatter are slow). A callback cannot be
  serialized by ``jax.export``; on an accelerator it would copy the layer to the host.
* ``"top_k"`` (``lax.top_k`` of ``k + 1``) and ``"sort"`` (``jnp.sort``).
* ``"auto"``: the fastest measured on this backend (see ``_auto_method`` and
  ``benchmarks/selection.py``): ``"host"`` on CPU (``"radix"`` for layers of <= 2048 units),
  ``"bracket"`` elsewhere (``"sort"`` for <= 4096 units; GPU timings still owed).

Measured (2-core CPU shared with other jobs, B=32, q=98, vmap, paired medians in ms; the spread
in ``benchmarks/selection.py``'s output): 32x32x32 units: host 9.2, radix 37, bracket 38,
histogram:11 40, sort 89, top_k 240; 16x16x64: host 3.5, radix 13, bracket 18; 256: radix 0.16,
sort 0.24, host 0.39; 56x56x256: host 990, bracket 1510, radix 2780. End to end (CIFAR CNN,
B=32): rectgrad/plain 1.21x with "auto", 1.76x with "radix".

A callback under a sharded ``jit`` gathers the layer on one device (use ``shard_map`` or
``"bracket"`` there).

Policies (identical for every method, and identical to ``np.sort(v)[::-1][k]``):

* NaN sorts above ``+inf`` (as ``np.sort`` / ``jnp.sort`` place NaN last whatever its sign bit);
  the result is NaN exactly when ``k`` is below the number of NaNs (then ``v > tau`` passes
  nothing). A NaN result is the canonical quiet NaN.
* ``-0.0 == 0.0``: both get the same key, and a zero result is always ``+0.0``. The TF rule
  compares ``v > tau``, for which the sign of a zero ``tau`` does not matter.
* Subnormals are ordered by their exact value (the keys are integers), even where XLA flushes
  subnormal floats to zero in arithmetic.
* ``bfloat16`` / ``float16`` are selected in float32 (exact) and returned in their own dtype;
  ``float64`` uses 64-bit keys (needs ``jax_enable_x64``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["METHODS", "kth_largest", "nearest_rank"]

#: Values accepted by ``kth_largest(..., method=)`` (and so by ``rectgrad(select=)``).
METHODS = ("auto", "host", "bracket", "radix", "histogram", "top_k", "sort")


def nearest_rank(n: int, q: float) -> int:
    """Index ``k`` into the descending sort for percentile ``q`` of ``n`` values, TF 'nearest'.

    ``tf.contrib.distributions.percentile(v, q, interpolation='nearest')`` takes
    ``sort_desc(v)[round_half_even((n - 1) * (1 - q / 100))]`` (the index in float64); with
    distinct values exactly ``k`` elements are strictly greater than the result.

    >>> nearest_rank(101, 98.0), nearest_rank(25, 98.0), nearest_rank(26, 98.0)
    (2, 0, 1)
    """
    return int(np.round((n - 1) * (1.0 - q / 100.0)))


# ---------------------------------------------------------------------------------------------
# Keys: unsigned integers in the floats' order.


def _key_dtypes(dtype) -> tuple:
    if jnp.dtype(dtype) == jnp.float64:
        return jnp.float64, jnp.uint64, 64
    return jnp.float32, jnp.uint32, 32


def _sortable_keys(v: jax.Array) -> tuple[jax.Array, int]:
    """Unsigned integer keys with the floats' order; -0.0 -> key of +0.0, NaN -> the largest key."""
    fdtype, udtype, nbits = _key_dtypes(v.dtype)
    v = v.astype(fdtype)
    bits = lax.bitcast_convert_type(v, udtype)
    sign = jnp.asarray(1 << (nbits - 1), udtype)
    bits = jnp.where(bits == sign, jnp.zeros((), udtype), bits)  # -0.0 -> +0.0, no float math
    keys = jnp.where(bits & sign != 0, ~bits, bits | sign)
    keys = jnp.where(jnp.isnan(v), jnp.asarray(np.iinfo(udtype).max, udtype), keys)
    return keys, nbits


def _keys_to_float(key: jax.Array, dtype) -> jax.Array:
    fdtype, udtype, nbits = _key_dtypes(dtype)
    sign = jnp.asarray(1 << (nbits - 1), udtype)
    bits = jnp.where(key & sign != 0, key & ~sign, ~key)
    qnan = np.array(np.nan, fdtype).view(np.dtype(udtype))  # the canonical quiet NaN's bits
    bits = jnp.where(key == jnp.asarray(np.iinfo(udtype).max, udtype), jnp.asarray(qnan), bits)
    return lax.bitcast_convert_type(bits, fdtype).astype(dtype)


def nbits_of(v: jax.Array) -> int:
    return _key_dtypes(v.dtype)[2]


# ---------------------------------------------------------------------------------------------
# Exact selections on a 1-D key vector (unbatched; vmapped by the callers).


def _radix_keys(keys: jax.Array, k: int, nbits: int, digit_bits: int) -> jax.Array:
    """The (k+1)-th largest key: largest K with #(keys >= K) >= k + 1, ``digit_bits`` per pass."""
    udtype = keys.dtype
    need = k + 1
    digits = jnp.arange(1, 2**digit_bits, dtype=udtype)

    def one_pass(p, prefix):
        shift = (nbits - (p + 1) * digit_bits).astype(udtype)
        cands = prefix | (digits << shift)
        counts = jnp.sum(keys[None, :] >= cands[:, None], axis=1, dtype=jnp.int32)
        digit = jnp.sum(counts >= need, dtype=udtype)
        return prefix | (digit << shift)

    # A rolled loop: one fused counting reduction per pass, and a small program to compile.
    # The carry starts from the data (keys[0] * 0) so that under vmap it is batched, and
    # sharded, like the keys from the first iteration (an unbatched start trips sharding checks).
    return lax.fori_loop(0, nbits // digit_bits, one_pass, keys[0] & jnp.zeros((), udtype))


def _histogram_keys(keys: jax.Array, k: int, nbits: int, digit_bits: int) -> jax.Array:
    """Radix select with ``digit_bits``-wide digits, one scatter-add histogram per pass."""
    udtype = keys.dtype
    prefix = keys[0] & jnp.zeros((), udtype)
    rank = jnp.asarray(k, jnp.int32)  # rank still to skip among keys matching the prefix
    hi = nbits
    while hi > 0:
        lo = max(hi - digit_bits, 0)
        width = hi - lo
        shift = jnp.asarray(lo, udtype)
        digit = ((keys >> shift) & jnp.asarray(2**width - 1, udtype)).astype(jnp.int32)
        if hi == nbits:
            match = None
        else:
            match = (keys >> jnp.asarray(hi, udtype)) == (prefix >> jnp.asarray(hi, udtype))
        ones = jnp.ones(keys.shape, jnp.int32) if match is None else match.astype(jnp.int32)
        hist = jnp.zeros(2**width, jnp.int32).at[digit].add(ones)
        above = jnp.cumsum(hist[::-1])[::-1]  # above[d] = #(matching keys with digit >= d)
        d = jnp.sum(above > rank, dtype=jnp.int32) - 1  # the largest d with above[d] > rank
        over = jnp.where(d + 1 < above.shape[0], above[jnp.minimum(d + 1, above.shape[0] - 1)], 0)
        rank = rank - over
        prefix = prefix | (d.astype(udtype) << shift)
        hi = lo
    return prefix


@functools.lru_cache(maxsize=256)
def _bracket_plan(n: int, k: int) -> tuple[np.ndarray, int, int, int]:
    """Static sample indices, the sample ranks of the two bounds, and the gather capacity."""
    s = int(min(n, max(256, 2 ** round(math.log2(max(n, 1) ** 0.5 * 6)))))
    s = min(s, 4096)
    # A low-discrepancy walk i * g mod n with g ~ n / golden ratio, coprime to n: it visits every
    # channel and row of a conv map evenly (a plain stride n // s can hit one channel only).
    g = max(1, round(n * 0.6180339887498949))
    while math.gcd(g, n) != 1:
        g += 1
    idx = (np.arange(s, dtype=np.int64) * g) % n
    p = (k + 0.5) / n  # fraction above the target
    r = p * s
    d = 5.0 * math.sqrt(s * p * (1 - p)) + 2.0
    r_hi = math.floor(r - d)  # descending sample rank of the upper bound H (<0: +inf)
    r_lo = math.ceil(r + d)  # descending sample rank of the lower bound L (>=s: -inf)
    expected = (min(r_lo, s) - max(r_hi, -1)) * n / s
    cap = int(min(n, 2 ** math.ceil(math.log2(max(64.0, 1.5 * expected)))))
    return idx.astype(np.int32), r_hi, r_lo, cap


def _bracket_keys(keys: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(candidate answer, missed) from a sample bracket; exact whenever ``missed`` is False."""
    n = keys.shape[0]
    udtype = keys.dtype
    idx, r_hi, r_lo, cap = _bracket_plan(n, k)
    s = idx.shape[0]
    sample = jnp.sort(keys[idx])  # ascending; descending rank r is sample[s - 1 - r]
    top = jnp.asarray(np.iinfo(udtype).max, udtype)
    bottom = jnp.zeros((), udtype)
    hi = top if r_hi < 0 else sample[s - 1 - r_hi]
    lo = bottom if r_lo >= s else sample[s - 1 - r_lo]
    # One pass: four counts (XLA fuses them into one multi-output reduction).
    i32 = jnp.int32
    gt_hi = jnp.sum(keys > hi, dtype=i32)
    ge_hi = jnp.sum(keys >= hi, dtype=i32)
    gt_lo = jnp.sum(keys > lo, dtype=i32)
    ge_lo = jnp.sum(keys >= lo, dtype=i32)
    inside = gt_lo - ge_hi  # keys strictly between the bounds
    # Gather the keys strictly inside (lo, hi) into cap slots (stable compaction by prefix sum).
    mask = (keys > lo) & (keys < hi)
    pos = jnp.cumsum(mask, dtype=i32) - 1
    slot = jnp.where(mask & (pos < cap), pos, cap)
    cands = jnp.zeros(cap, udtype).at[slot].set(keys, mode="drop", unique_indices=False)
    cands = jnp.sort(cands)  # ascending; empty slots (key 0) sort first
    j = jnp.clip(k - ge_hi, 0, cap - 1)  # descending rank among the inside keys
    mid = cands[cap - 1 - j]
    ans = jnp.where(
        (gt_hi <= k) & (k < ge_hi), hi, jnp.where((gt_lo <= k) & (k < ge_lo), lo, mid)
    )
    missed = (k < gt_hi) | (k >= ge_lo) | ((ge_hi <= k) & (k < gt_lo) & (inside > cap))
    return ans, missed


def _bracket_with_fallback(k: int, nbits: int):
    """``keys -> kth key`` with one ``lax.cond`` per batch (custom_vmap) for the radix fallback."""

    def exact(keys):
        return _radix_keys(keys, k, nbits, 1)

    @custom_vmap
    def select(keys):
        ans, missed = _bracket_keys(keys, k)
        return lax.cond(missed, exact, lambda _: ans, keys)

    @select.def_vmap
    def _select_batched(axis_size, in_batched, keys):
        (batched,) = in_batched
        if not batched:
            return select(keys), False
        ans, missed = jax.vmap(functools.partial(_bracket_keys, k=k))(keys)
        out = lax.cond(
            jnp.any(missed),
            lambda: jnp.where(missed, jax.vmap(exact)(keys), ans),
            lambda: ans,
        )
        return out, True

    return select


def _host_sort_kth(keys, *, k: int):
    keys = np.asarray(keys)
    return np.array(np.sort(keys, axis=-1)[..., keys.shape[-1] - 1 - k], copy=True)


def _host_keys(keys: jax.Array, k: int) -> jax.Array:
    """The (k+1)-th largest key by numpy's sort on the host: one callback per (vmapped) batch.

    Integer keys, not floats: numpy's vectorized sort of unsigned ints runs at full speed on
    XLA's callback thread (~1.3 ms for 32 x 32768), its float sort there was measured 20x slower.
    """
    out = jax.ShapeDtypeStruct((), keys.dtype)
    return jax.pure_callback(
        functools.partial(_host_sort_kth, k=k), out, keys, vmap_method="expand_dims"
    )


# ---------------------------------------------------------------------------------------------
# Public entry point.


def _auto_method(n: int, k: int, backend: str | None = None) -> str:
    """The fastest exact method measured for this size and backend (``benchmarks/selection.py``).

    CPU (2 cores, B=32, paired medians): ``"host"`` 4x faster than ``"radix"`` and ``"bracket"``
    from ~16k units up (XLA:CPU's sort, scan and scatter are slow, numpy's integer sort is
    vectorized); tiny layers: ``"radix"`` (no callback overhead). Other backends: ``"bracket"``
    (three passes over the layer, no host round trip); tiny layers one ``"sort"`` kernel.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return "radix" if n <= 2048 else "host"
    return "sort" if n <= 4096 else "bracket"


def kth_largest(
    v: jax.Array, k: int, *, method: str = "auto", digit_bits: int | None = None
) -> jax.Array:
    """Exact ``np.sort(v.ravel())[::-1][k]`` for a static ``k`` in ``[0, v.size)``.

    Every method returns the same bits (NaN largest, zeros as ``+0.0``; see the module docstring).

    Args:
      v: floating-point array (any shape; treated as flat).
      k: static rank from the top, 0-based.
      method: one of ``METHODS``: ``"auto"`` (default: the fastest measured on this backend,
        ``"host"`` on CPU from 2049 units, ``"bracket"`` on accelerators), ``"host"`` (numpy
        sort in a callback), ``"bracket"`` (sample bracket + radix fallback), ``"radix"`` (bit
        bisection), ``"histogram"`` (wide-digit radix select), ``"top_k"`` or ``"sort"``.
      digit_bits: bits fixed per pass: ``"radix"`` (default 1, must divide the key width) and
        ``"histogram"`` (default 8).

    Returns:
      A scalar of ``v``'s dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> float(kth_largest(jnp.array([3.0, -1.0, 7.0, 0.5]), 1))
      3.0
      >>> float(kth_largest(jnp.array([3.0, jnp.nan, 7.0]), 0, method="bracket"))
      nan
    """
    v = jnp.ravel(v)
    n = v.shape[0]
    if not 0 <= k < n:
        raise ValueError(f"k={k} must be in [0, {n})")
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    if method == "auto":
        method = _auto_method(n, k)
    keys, nbits = _sortable_keys(v)
    if method == "host":
        key = _host_keys(keys, k)
    elif method == "sort":
        key = jnp.sort(keys)[n - 1 - k]
    elif method == "top_k":
        key = lax.top_k(keys, k + 1)[0][k]
    elif method == "radix":
        bits = 1 if digit_bits is None else digit_bits
        if nbits % bits:
            raise ValueError(f"digit_bits={bits} must divide the key width {nbits}")
        key = _radix_keys(keys, k, nbits, bits)
    elif method == "histogram":
        bits = 8 if digit_bits is None else digit_bits
        if not 1 <= bits <= 16:
            raise ValueError(f"digit_bits={bits} must be in [1, 16] for 'histogram'")
        key = _histogram_keys(keys, k, nbits, bits)
    else:  # bracket
        key = _bracket_with_fallback(k, nbits)(keys)
    return _keys_to_float(key, v.dtype)
