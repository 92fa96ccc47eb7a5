"""Matplotlib plots: attribution heatmaps, series-vs-Monte-Carlo, power spectra."""

from . import attribution as attribution
from . import series as series
from . import spectrum as spectrum
