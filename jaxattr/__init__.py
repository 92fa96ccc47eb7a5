"""jaxattr: attribution methods as JAX function transforms.

Modified backprop (``rectgrad``, ``guided_backprop``, ``deconvnet``), noise transforms
(``smoothgrad``, ``smoothgrad_sq``, ``vargrad``), path methods (``integrated_gradients``), and the
analytic derivative tooling that verifies their theory (``jaxattr.derivatives``,
``jaxattr.theory``), plus the slow-roll power spectrum (``jaxattr.slowroll``).
"""

import importlib as _importlib

from . import relevance as relevance
from .backprop import deconvnet as deconvnet
from .backprop import guided_backprop as guided_backprop
from .backprop import rectgrad as rectgrad
from .backprop import saliency as saliency
from .backprop import times_input as times_input
from .batch import explain_dataset as explain_dataset
from .difference import deeplift as deeplift
from .difference import deeplift_shap as deeplift_shap
from .noise import smoothgrad as smoothgrad
from .noise import smoothgrad_sq as smoothgrad_sq
from .noise import vargrad as vargrad
from .path import integrated_gradients as integrated_gradients
from .relevance import lrp as lrp

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("derivatives", "theory", "slowroll", "plot", "data", "models", "metrics")


def __getattr__(name: str):
    # Heavy submodules (diffrax, matplotlib) load on first use, not on `import jaxattr`.
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
