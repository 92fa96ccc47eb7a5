"""Slow-roll inflation: the primordial power spectrum of any potential V(phi).

Background in e-folds (diffrax), slow-roll parameters exactly by Lie derivatives along the flow,
the standard slow-roll spectrum at orders 0-3 with the correct evaluation point, general slow
roll, and the numerical Mukhanov-Sasaki reference.  float64 is enabled locally in every public
function.  ``monomial`` is a ready-made potential (one compilation for all its parameters).

References:
    Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155; Stewart 2002, arXiv:astro-ph/0110322.
"""

from .background import Background as Background
from .background import background as background
from .gsr import gsr_power_spectrum as gsr_power_spectrum
from .mukhanov_sasaki import mukhanov_sasaki as mukhanov_sasaki
from .parameters import flow_parameters as flow_parameters
from .parameters import potential_parameters as potential_parameters
from .potentials import Monomial as Monomial
from .potentials import monomial as monomial
from .spectrum import ALPHA as ALPHA
from .spectrum import evaluation_efold as evaluation_efold
from .spectrum import horizon_k as horizon_k
from .spectrum import power_spectrum as power_spectrum
from .spectrum import running as running
from .spectrum import spectral_index as spectral_index
