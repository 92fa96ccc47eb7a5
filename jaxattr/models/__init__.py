"""A small, documented model zoo: the networks that jaxattr explains in its demo, notebooks,
tests and benchmarks, their training loop, and the score function the attribution transforms take.

==================  ====================  =======================================================
name                module                purpose
==================  ====================  =======================================================
``CifarCNN``        ``linen``             the RectGrad paper's CIFAR-10 CNN (Kim et al.,
                                          arXiv:1902.04893), Flax linen; demo and notebooks
``DigitsCNN``       ``linen``             the same at half width, for 8x8 digits
``NNXCNN``          ``nnx``               the CifarCNN architecture in Flax NNX (engine tests)
``EqxMLP``          ``eqx``               a ReLU MLP in Equinox (engine tests)
``init_params``     ``training``          random variables of a linen model (fast on CPU)
``train``           ``training``          pure optax Adam loop on softmax cross-entropy
``accuracy``        ``training``          test accuracy of a linen classifier
``score_fn``        ``score``             max-logit (or one class's logit) score of ONE example
==================  ====================  =======================================================

Every ReLU is ``jax.nn.relu`` (``flax.linen.relu``, ``nnx.relu``, Equinox's MLP activation), the
primitive pattern that the modified-backprop rules of ``jaxattr.backprop`` replace. ``NNXCNN``
and ``EqxMLP`` load NNX / Equinox only when first used. Invalid arguments raise
:class:`jaxattr.errors.ArgumentError` (``ArgumentTypeError`` for a wrong type) with a message that
starts with the function's or model's name.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .linen import CifarCNN as CifarCNN
from .linen import DigitsCNN as DigitsCNN
from .score import score_fn as score_fn
from .training import accuracy as accuracy
from .training import init_params as init_params
from .training import train as train

if _TYPE_CHECKING:  # imported on first use at run time (__getattr__ below)
    from .eqx import EqxMLP as EqxMLP
    from .nnx import NNXCNN as NNXCNN

__all__ = [
    "CifarCNN",
    "DigitsCNN",
    "NNXCNN",
    "EqxMLP",
    "init_params",
    "train",
    "accuracy",
    "score_fn",
]

_LAZY = {"NNXCNN": ".nnx", "EqxMLP": ".eqx"}


def __getattr__(name: str):
    # NNX and Equinox models serve the engine's tests: import those frameworks on first use only.
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
