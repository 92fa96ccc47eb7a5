"""Ready-made inflaton potentials as equinox Modules (units M_p = 1).

Their parameters are float64 arrays (pytree leaves), so every instance of one class shares one
compilation of :func:`~jaxattr.slowroll.background` and the spectra, whatever the parameter
values; a new ``lambda`` would compile everything again.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_real

__all__ = ["Monomial", "monomial"]


class Monomial(eqx.Module):
    """``V(phi) = v0 |phi|^p`` (chaotic inflation; p = 2 is m^2 phi^2 / 2 with v0 = m^2 / 2).

    Attributes:
        v0: amplitude, a float64 array.
        p: power, a float64 array.
    """

    v0: jax.Array | np.ndarray
    p: jax.Array | np.ndarray

    def __call__(self, phi):
        return self.v0 * jnp.abs(phi) ** self.p


def monomial(p: float = 2.0, v0: float = 0.5) -> Monomial:
    """``V = v0 |phi|^p`` with float64 parameters (default m^2 phi^2 / 2, m = 1).

    Example:
        >>> v = monomial(2.0)
        >>> print(float(v(np.float64(4.0))))
        8.0

    References:
        Linde 1983, Phys. Lett. B 129, 177.
    """
    p = check_real(p, "p", fn="monomial", lo=0, lo_open=True)
    v0 = check_real(v0, "v0", fn="monomial", lo=0, lo_open=True)
    return Monomial(np.asarray(v0, np.float64), np.asarray(p, np.float64))
