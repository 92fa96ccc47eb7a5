"""jaxattr: attribution methods as JAX function transforms.

Modified backprop (``rectgrad``, ``guided_backprop``, ``deconvnet``), noise transforms
(``smoothgrad``, ``smoothgrad_sq``, ``vargrad``), path methods (``integrated_gradients``), and the
analytic derivative tooling that verifies their theory (``jaxattr.derivatives``,
``jaxattr.theory``), plus the slow-roll power spectrum (``jaxattr.slowroll``).
"""

import importlib as _importlib

from . import layer as layer
from . import relevance as relevance
from .backprop import deconvnet as deconvnet
from .backprop import guided_backprop as guided_backprop
from .backprop import rectgrad as rectgrad
from .backprop import saliency as saliency
from .backprop import times_input as times_input
from .batch import explain_dataset as explain_dataset
from .difference import deeplift as deeplift
from .difference import deeplift_shap as deeplift_shap
from .layer import grad_cam as grad_cam
from .layer import grad_cam_pp as grad_cam_pp
from .layer import guided_grad_cam as guided_grad_cam
from .layer import layer_conductance as layer_conductance
from .layer import layer_gradient as layer_gradient
from .layer import layer_gradient_x_activation as layer_gradient_x_activation
from .layer import layer_integrated_gradients as layer_integrated_gradients
from .layer import neuron_gradient as neuron_gradient
from .layer import neuron_integrated_gradients as neuron_integrated_gradients
from .layer import token_attribution as token_attribution
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
