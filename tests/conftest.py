"""Test configuration: float64 available everywhere (tests that check float32 ask for it
explicitly), rank promotion raises, and a fixed PRNG key fixture."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
