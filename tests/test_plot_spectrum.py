"""jaxattr.plot.spectrum draws what it is given: line data, styles, labels and axes scales.

Mutations caught (each fails one assert below): plotting ln P - ln P_ref without abs (negative
y on a log axis), dropping the 1e-16 floor (an exact spectrum vanishes from the log plot), the
reference drawn solid or unlabelled, k and P swapped, linear axes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxattr.plot import spectrum as sp  # noqa: E402

K = np.array([1e-3, 1e-2, 1e-1, 1.0])
REF = np.array([2.0e-9, 2.1e-9, 2.2e-9, 2.3e-9])
SPECTRA = {"order 0": REF * np.exp([1e-2, -2e-2, 3e-2, -4e-2]), "exact": REF.copy()}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_power_spectra_draws_each_spectrum_and_the_dashed_reference():
    ax = sp.power_spectra(K, SPECTRA, REF)
    lines = _lines(ax)
    assert list(lines) == ["order 0", "exact", "Mukhanov-Sasaki"]
    for label, p in SPECTRA.items():
        np.testing.assert_array_equal(lines[label].get_xdata(), K)
        np.testing.assert_array_equal(lines[label].get_ydata(), p)
    ref = lines["Mukhanov-Sasaki"]
    np.testing.assert_array_equal(ref.get_ydata(), REF)
    assert ref.get_linestyle() == "--" and matplotlib.colors.to_hex(ref.get_color()) == "#000000"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("k", "P(k)")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)


def test_power_spectra_without_reference_and_on_a_given_axes():
    fig, ax = plt.subplots()
    out = sp.power_spectra(K, {"a": REF}, ax=ax)
    assert out is ax and list(_lines(ax)) == ["a"]


def test_spectrum_errors_plots_abs_log_error_with_a_floor():
    fig, ax = plt.subplots()
    out = sp.spectrum_errors(K, SPECTRA, REF, ax=ax)
    assert out is ax
    lines = _lines(ax)
    assert list(lines) == ["order 0", "exact"]  # no reference line on an error plot
    np.testing.assert_allclose(lines["order 0"].get_ydata(), [1e-2, 2e-2, 3e-2, 4e-2],
                               rtol=1e-9)
    # an exact spectrum stays visible on the log axis at the floor
    np.testing.assert_array_equal(lines["exact"].get_ydata(), np.full(4, 1e-16))
    np.testing.assert_array_equal(lines["exact"].get_xdata(), K)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_ylabel() == "|ln P - ln P_MS|"
