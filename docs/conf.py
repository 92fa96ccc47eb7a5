"""Sphinx configuration of the jaxattr documentation (built by ``python docs/build.py``).

Why Sphinx with MyST and myst-nb: the pages are Markdown (MyST), the notebooks are rendered with
their outputs by myst-nb, and the API reference is generated from the docstrings, which are
written for Sphinx (Google style read by napoleon, ``:func:``/``:class:`` cross-references), as in
JAX and optax. ``docs/build.py`` runs ``sphinx-build -W --keep-going -n``: every warning fails the
build, including a cross-reference that resolves to nothing (nitpicky) and a broken link or
missing image in a page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the jaxattr being documented is this tree's

import jaxattr  # noqa: E402

project = "jaxattr"
author = "the jaxattr developers"
copyright = "2026, the jaxattr developers"
release = version = jaxattr.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "_screenshots", "make_figures.py", "build.py", "screenshots.py"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# --- MyST -----------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # `page.md#a-heading` links, as GitHub renders them

# --- notebooks: rendered with the outputs docs/build.py put in them (never executed here) ----
nb_execution_mode = "off"
nb_execution_raise_on_error = True
nb_merge_streams = True

# --- API reference ------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields, not a second description of each member
python_use_unqualified_type_names = True
add_module_names = False

# Nitpicky: every cross-reference must resolve. Types of other libraries cannot (CI has no
# network for intersphinx inventories), so they are named here by package, not one by one.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:(class|obj|data|exc|func|mod)",
     r"(jax|jaxlib|numpy|np|jnp|flax|nn|optax|equinox|eqx|diffrax|optimistix|matplotlib|"
     r"collections|typing|typing_extensions|types|os|pathlib|enum|dataclasses|abc|"
     r"concurrent|threading|contextlib|functools|builtins|ml_dtypes|sklearn)(\..*)?"),
    (r"py:(class|obj)", r"(Array|ArrayLike|Callable|Any|PyTree|Sequence|Mapping|Iterable|"
                        r"Iterator|NDArray|PathLike|Axes|Figure|PRNGKeyArray|DTypeLike|"
                        r"Shape|Literal|Self|Optional|Union|Key|Path|Potential)(\[.*\])?"),
]

# --- HTML -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"jaxattr {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

# matplotlib never opens a window while autodoc imports the plotting module
os.environ.setdefault("MPLBACKEND", "Agg")
