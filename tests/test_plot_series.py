"""jaxattr.plot.series: the plotted data are the data given (points, error bars, series, slopes)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxattr.plot.series import error_vs_sigma, series_vs_mc  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_series_vs_mc_plots_estimates_bars_and_series():
    """Mutations caught: bars of 1 SE instead of z SE, series and Monte Carlo swapped, a 2-D
    input not flattened in C order, the title or labels dropped."""
    mc = np.array([[1.0, 2.0], [-0.5, 0.25]])
    se = np.array([[0.1, 0.2], [0.05, 0.0]])
    series = np.array([[1.05, 1.9], [-0.4, 0.3]])
    _, ax = plt.subplots()
    out = series_vs_mc(mc, se, series, z=3.0, ax=ax, labels=("MC", "theory"), title="t")
    assert out is ax and ax.get_title() == "t"
    (bars,) = ax.containers
    data_line, _, (barcol,) = bars
    np.testing.assert_array_equal(data_line.get_xydata(), np.c_[np.arange(4), mc.ravel()])
    segments = np.array(barcol.get_segments())  # (4, 2, 2): [[x, y - z se], [x, y + z se]]
    np.testing.assert_allclose(segments[:, 0, 1], mc.ravel() - 3.0 * se.ravel())
    np.testing.assert_allclose(segments[:, 1, 1], mc.ravel() + 3.0 * se.ravel())
    np.testing.assert_array_equal(segments[:, :, 0], np.repeat(np.arange(4), 2).reshape(4, 2))
    series_line = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(series_line) == 1
    np.testing.assert_array_equal(series_line[0].get_xydata(), np.c_[np.arange(4), series.ravel()])
    assert ax.get_legend_handles_labels()[1] == ["theory", "MC (±3 SE)"]


def test_series_vs_mc_broadcasts_a_scalar_stderr():
    ax = series_vs_mc([1.0, 2.0, 3.0], 0.5, [1.0, 2.0, 3.0])  # default z = 5
    segments = np.array(ax.containers[0][2][0].get_segments())
    np.testing.assert_allclose(segments[:, 1, 1] - segments[:, 0, 1], 2 * 5 * 0.5)


def test_error_vs_sigma_plots_log_log_curves_with_exact_slopes():
    """errors = c sigma^p have log-log slope exactly p: the legend shows it. Mutations caught:
    slope of log(e) on sigma (not log sigma), curves not on log axes, data altered."""
    sig = np.array([0.05, 0.1, 0.2, 0.4])
    errors = {"K=0": 3 * sig**2, "K=1": 0.5 * sig**4.5}
    ax = error_vs_sigma(sig, errors)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_legend_handles_labels()[1] == ["K=0 (slope 2.00)", "K=1 (slope 4.50)"]
    for line, e in zip(ax.lines, errors.values(), strict=True):
        np.testing.assert_allclose(line.get_xydata(), np.c_[sig, e], rtol=1e-15)
    plain = error_vs_sigma(sig, {"K=0": errors["K=0"]}, fit=False)
    assert plain.get_legend_handles_labels()[1] == ["K=0"]
