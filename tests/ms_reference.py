"""An independent Mukhanov-Sasaki reference for the slow-roll tests: numpy/scipy only.

Shares no code with ``jaxattr.slowroll``: its own background ODE, horizon crossing, initial
state and mode equation, written from the equations (units M_p = 1, N = ln a, a = 1 at N = 0):

* background: phi_NN = -(3 - phi_N^2/2)(phi_N + V'/V), H^2 = V/(3 - phi_N^2/2), started on the
  attractor phi_N = -V'/V, stopped at eps1 = phi_N^2/2 = 1 (scipy DOP853, dense output);
* horizon crossing: ln(aH) = N + ln H = ln k solved by ``brentq`` (ln aH rises as 1 - eps1);
* mode: R_NN + (3 - eps1 + 2 phi_NN/phi_N) R_N + (k/aH)^2 R = 0 integrated with the background
  from k/aH = ``start`` to k/aH = ``stop`` (or the end of inflation); P = k^3 |R|^2 / (2 pi^2);
* start: the adiabatic (WKB) vacuum v = (2w)^(-1/2) e^{-i int w d tau}, w^2 = k^2 - z''/z,
  v = z R, z = a phi_N, with z''/z from phi_NNN (V'' needed).  Its error is O((aH/k)^4),
  where the de Sitter vacuum (1 - i/(k eta)) e^{-ik eta} would leave O(eps1 (aH/k)^2).
  Measured against the exact power-law spectrum (eps = 0.04 and 0.005, k/aH = 1e3 .. 1e-7):
  |error| < 2e-11 at rtol = 1e-12, 7e-10 at rtol = 1e-10 (0.3 s a mode).

Real and imaginary parts are integrated separately, rescaled by |v| at the start so that the
absolute tolerance never underflows.

References: Mukhanov 1988; Sasaki 1986; Choe, Gong, Stewart 2004, arXiv:hep-ph/0405155.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq


class Reference:
    """A solved background for V with derivatives ``dv``, ``d2v`` (plain Python floats)."""

    def __init__(self, v, dv, d2v, phi0, *, n_max=1000.0, rtol=1e-12):
        self.v, self.dv, self.d2v, self.rtol = v, dv, d2v, rtol

        def end(n, s):
            return 0.5 * s[1] ** 2 - 1.0

        end.terminal = True
        self.sol = solve_ivp(self._bg_rhs, (0.0, n_max), [phi0, -dv(phi0) / v(phi0)],
                             method="DOP853", rtol=rtol, atol=1e-14, dense_output=True,
                             events=end)
        assert self.sol.success, self.sol.message
        self.n_end = float(self.sol.t[-1])
        self.ended = len(self.sol.t_events[0]) > 0

    def _phi_nn(self, phi, p):
        return -(3.0 - 0.5 * p * p) * (p + self.dv(phi) / self.v(phi))

    def _bg_rhs(self, n, s):
        return [s[1], self._phi_nn(s[0], s[1])]

    def log_ah(self, n):
        phi, p = self.sol.sol(n)
        return n + 0.5 * math.log(self.v(phi) / (3.0 - 0.5 * p * p))

    def crossing(self, log_k):
        """The e-fold where aH = k."""
        return brentq(lambda n: self.log_ah(n) - log_k, 0.0, self.n_end, xtol=1e-14, rtol=1e-15)

    def k_at(self, n):
        """k = aH of the mode crossing at e-fold n."""
        return math.exp(self.log_ah(n))

    def _z_ratios(self, phi, p):
        """z_N/z and z_NN/z for z = a phi_N."""
        u = self.dv(phi) / self.v(phi)
        u_phi = self.d2v(phi) / self.v(phi) - u * u
        pnn = self._phi_nn(phi, p)
        pnnn = p * pnn * (p + u) - (3.0 - 0.5 * p * p) * (pnn + u_phi * p)
        return 1.0 + pnn / p, 1.0 + 2.0 * pnn / p + pnnn / p

    def log_power(self, k, *, start=1e3, stop=1e-7):
        """ln P(k) of one mode."""
        log_k = math.log(k)
        n0 = self.crossing(log_k - math.log(start))
        if log_k - math.log(stop) < self.log_ah(self.n_end):
            n1 = self.crossing(log_k - math.log(stop))
        else:
            n1 = self.n_end
        phi, p = self.sol.sol(n0)
        eps1 = 0.5 * p * p
        ah = math.exp(self.log_ah(n0))
        zn, znn = self._z_ratios(phi, p)
        zpp = ah**2 * (znn + (1.0 - eps1) * zn)  # z''/z in conformal time
        w = math.sqrt(k * k - zpp)
        # d(z''/z)/d tau with z''/z ~ tau^-2 and -1/tau = aH (1 - eps1) + O(eps^2): this term
        # is O((aH/k)^3) of w, so its own O(eps^2) error is far below 1e-12
        dw = -(2.0 * zpp * ah * (1.0 - eps1)) / (2.0 * w)
        v0 = 1.0 / math.sqrt(2.0 * w)
        dv_tau = (-1j * w - dw / (2.0 * w)) * v0
        # R = v / z; r = R z(n0) / |v0| so that |r| = 1 at the start
        r = v0 / abs(v0)
        r_n = (dv_tau / ah - v0 * zn) / abs(v0)
        log_scale = 2.0 * math.log(abs(v0)) - 2.0 * (n0 + math.log(abs(p)))

        def rhs(n, s):
            phi, p, rr, rr_n, ri, ri_n = s
            pnn = self._phi_nn(phi, p)
            h2 = self.v(phi) / (3.0 - 0.5 * p * p)
            kah2 = math.exp(2.0 * (log_k - n) - math.log(h2))
            fric = 3.0 - 0.5 * p * p + 2.0 * pnn / p
            return [p, pnn, rr_n, -fric * rr_n - kah2 * rr, ri_n, -fric * ri_n - kah2 * ri]

        s0 = [phi, p, r.real, r_n.real, r.imag, r_n.imag]
        sol = solve_ivp(rhs, (n0, n1), s0, method="DOP853", rtol=self.rtol, atol=1e-15)
        assert sol.success, sol.message
        s1 = sol.y[:, -1]
        return (3.0 * log_k + log_scale + math.log(s1[2] ** 2 + s1[4] ** 2)
                - math.log(2.0 * math.pi**2))

    def log_powers(self, ks, **kw):
        return np.array([self.log_power(float(k), **kw) for k in np.ravel(ks)])


def quadratic(phi0=17.0, **kw):
    """V = phi^2/2 (m = 1)."""
    return Reference(lambda x: 0.5 * x * x, lambda x: x, lambda x: 1.0, phi0, **kw)


def power_law(eps, phi0=1.0, n_max=25.0, **kw):
    """V = exp(-sqrt(2 eps) phi): eps1 = eps exactly on the attractor, no end."""
    lam = math.sqrt(2.0 * eps)
    return Reference(lambda x: math.exp(-lam * x), lambda x: -lam * math.exp(-lam * x),
                     lambda x: lam * lam * math.exp(-lam * x), phi0, n_max=n_max, **kw)
