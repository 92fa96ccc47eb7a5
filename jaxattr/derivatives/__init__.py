"""Analytic derivative tooling: Laplacians, their gradients and powers, Hessian row norms, and the
sigma^4 contractions of the VarGrad series, for any scalar JAX function ``f: x -> scalar``.

Every builder takes ``f`` and returns a function of ``x`` (any shape; derivatives are taken with
respect to all ``d = x.size`` entries). Seven quantities, three methods, one registry of
(quantity x method) implementations (``_core``), grouped by family: the Laplacian family
(``_laplacian``), Hessian row norms (``_hessian``) and the sigma^4 contractions
(``_contractions``).

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

Invalid options raise :class:`jaxattr.errors.ArgumentError` (or ``ArgumentTypeError``) with a
message that starts with the public function's name.

References:
    Seo, Choe, Koo, Jeon, Kim, Jeon, "Noise-adding Methods of Saliency Map as Series of Higher
    Order Partial Derivative", WHI 2018, arXiv:1806.03000.
    Li, Ye, Jiang et al., "A computational framework for neural network-based
    variational Monte Carlo with Forward Laplacian", arXiv:2307.08214.
    Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1989.
"""

from ._contractions import hessian_laplacian_contraction as hessian_laplacian_contraction
from ._contractions import third_derivative_row_sqnorms as third_derivative_row_sqnorms
from ._core import EXACT_MAX_DIM as EXACT_MAX_DIM
from ._core import EXACT_MAX_DIM_HIGH as EXACT_MAX_DIM_HIGH
from ._core import METHODS as METHODS
from ._core import PROBES as PROBES
from ._core import Estimate as Estimate
from ._hessian import hessian_row_sqnorms as hessian_row_sqnorms
from ._laplacian import grad_laplacian as grad_laplacian
from ._laplacian import grad_laplacian_power as grad_laplacian_power
from ._laplacian import laplacian as laplacian
from ._laplacian import laplacian_power as laplacian_power
from ._ops import FolxFallbackWarning as FolxFallbackWarning

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
