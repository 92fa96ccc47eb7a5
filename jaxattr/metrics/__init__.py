"""Scores of ONE attribution map: smoothness, localisation, sparsity and deletion faithfulness.

Every function takes a single map (an image's ``(H, W)`` or ``(H, W, C)`` attribution) and is a
pure JAX function: batch with ``jax.vmap`` and compile with ``jax.jit``. Maps whose L1 norm is zero
give ``nan`` rather than an error, so a batch with one all-zero map still jits and vmaps; shape and
option mistakes raise :class:`jaxattr.errors.ArgumentError` at trace time.

These are the quantities of the RectGrad paper's experiments (Kim et al. 2019, arXiv:1902.04893):
total variation of the maps, the share of attribution outside the object or inside a pasted patch,
plus the Gini sparsity index (Hurley & Rickard 2009, arXiv:0811.4706) and a deletion curve
(Petsiuk et al. 2018, RISE, arXiv:1806.07421), which measures faithfulness without retraining.

With a ground truth (the object and patch masks of :func:`jaxattr.data.make_shapes`):
:func:`energy_in_mask` (the energy pointing game; on a distractor or spurious patch's mask, the
mass on that patch) and :func:`pointing_game` (does the map's peak fall on the object). Sanity
check of a method against the model (Adebayo et al. 2018, arXiv:1810.03292):
:func:`cascading_randomization` re-initialises a model's layers from the top and returns the
:func:`rank_correlation` of the maps with the trained model's maps, layer by layer.

:func:`remove_and_retrain` is ROAR/KAR (Hooker et al. 2019, arXiv:1806.10758): retrain on images
whose most (ROAR) or least (KAR) attributed pixels are replaced by the mean, and report test
accuracy. It trains once per method and fraction, so on CPU it fits minutes only for small models
and data (8x8 digits: about 1.5 s per training); :func:`deletion_curve` is the retraining-free
stand-in.

Submodules: ``_maps``, ``_ground_truth``, ``_randomization``, ``_retrain`` (helpers: ``_common``).
"""

from ._ground_truth import energy_in_mask as energy_in_mask
from ._ground_truth import pointing_game as pointing_game
from ._maps import DeletionCurve as DeletionCurve
from ._maps import deletion_curve as deletion_curve
from ._maps import gini as gini
from ._maps import mass_in_region as mass_in_region
from ._maps import total_variation as total_variation
from ._randomization import CascadingRandomization as CascadingRandomization
from ._randomization import cascading_randomization as cascading_randomization
from ._randomization import rank_correlation as rank_correlation
from ._retrain import RetrainCurve as RetrainCurve
from ._retrain import remove_and_retrain as remove_and_retrain

__all__ = [
    "CascadingRandomization",
    "DeletionCurve",
    "RetrainCurve",
    "cascading_randomization",
    "deletion_curve",
    "energy_in_mask",
    "gini",
    "mass_in_region",
    "pointing_game",
    "rank_correlation",
    "remove_and_retrain",
    "total_variation",
]
