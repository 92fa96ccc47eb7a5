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

One idea per module: the series (``_series``), closed forms (``_closed_forms``),
statistics (``_statistics``) and kink detection (``_smoothness``).

References:
    Seo, Choe, Koo, Jeon, Kim, Jeon, "Noise-adding Methods of Saliency Map as Series of Higher
    Order Partial Derivative", WHI 2018, arXiv:1806.03000.
    Smilkov et al., "SmoothGrad", arXiv:1706.03825.
    Adebayo et al., "Sanity checks for saliency maps", arXiv:1810.03292.
"""

from ._closed_forms import ClosedForm as ClosedForm
from ._closed_forms import exponential as exponential
from ._closed_forms import plane_wave as plane_wave
from ._closed_forms import quadratic as quadratic
from ._closed_forms import ridge_cubic as ridge_cubic
from ._closed_forms import sine_network as sine_network
from ._series import smoothgrad_series as smoothgrad_series
from ._series import vargrad_covariance_series as vargrad_covariance_series
from ._series import vargrad_series as vargrad_series
from ._smoothness import NonSmoothWarning as NonSmoothWarning
from ._statistics import Comparison as Comparison
from ._statistics import compare as compare
from ._statistics import samples_for_mean as samples_for_mean
from ._statistics import samples_for_variance as samples_for_variance

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
