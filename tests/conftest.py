"""Test configuration: float64 available everywhere (tests that check float32 ask for it
explicitly), rank promotion raises, a fixed PRNG key fixture, and session-scoped data and trained
models so that each is built once per test session, whichever files use it.

XLA:CPU compiles the suite's programs with LLVM at optimisation level 0. The programs are small,
so compiling them is most of the suite's time, and level 0 halves it (the whole suite: 8.5 -> 6
minutes on 2 cores). The programs are the same (every JAX and XLA HLO pass runs as usual); only
the machine code is less optimised. Notebook kernels and worker processes the tests start inherit
the flag. ``JAXATTR_TEST_FULL_OPT=1`` runs the suite at XLA's default level, as users run; CI's
floor run (.ci/floor: the engine, rule-set and transform tests) does, and so do the benchmarks,
the demo and .ci/installed's smoke tests.
"""

import os

if os.environ.get("JAXATTR_TEST_FULL_OPT") != "1":  # before the first XLA compile
    _flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits, split with seed 0 (:func:`jaxattr.data.load_digits`)."""
    from jaxattr.data import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def trained_digits_cnn(digits):
    """``(DigitsCNN(), params)`` after 150 Adam steps (lr 3e-3, key 0): >= 90% test accuracy
    (asserted in tests/test_models.py). Trained once per session (~6 s on 2 cores)."""
    from jaxattr.models import DigitsCNN, train

    model = DigitsCNN()
    return model, train(model, digits.train, key=jax.random.key(0), steps=150, lr=3e-3)


# Tests that take 10-50 s each run first, so that none of them is left alone at the end of a
# worker's queue (pytest-xdist's worksteal hands the fast ones at the end to the idle worker).
_SLOW = ("test_notebooks.py::test_notebook_executes", "test_cli.py::test_demo_writes",
         "test_multihost.py::", "test_demo.py::", "test_canonical_conv.py::test_loops_over",
         "test_theory.py::", "test_lrp.py::test_resnet", "test_slowroll_spectrum.py::")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(s in item.nodeid for s in _SLOW))
