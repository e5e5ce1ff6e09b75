"""Sphinx configuration of regtheory's documentation site.

Build (from the repository root, after ``pip install -e ".[docs,torch,vision]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The notebooks under ``notebooks/`` are executed by myst-nb at build time and cached under
``docs/_build/.jupyter_cache``; MathJax is copied into the site from the
``django-static-mathjax`` wheel, so the pages load no script from the network.
"""

import os
import sys
from importlib.util import find_spec
from pathlib import Path

import regtheory

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "regtheory"
author = "regtheory developers"
copyright = "2026, regtheory developers"
release = regtheory.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
    "regtheory_docs",
    "api_pages",
]

root_doc = "index"
# figures.md is the gallery, included in the landing page
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "figures.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- the notebooks: stored without outputs, executed at build time -------------------------
# Sphinx reads sources only under docs/: docs/notebooks is a symlink to ../notebooks, and
# the glob in notebooks.md picks up every notebook there, new ones included.
# The kernels inherit this process's environment: an MPLBACKEND=Agg set for headless runs
# (CI sets it) would keep matplotlib from drawing inline, and the pages would show no figures.
os.environ.pop("MPLBACKEND", None)
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- MyST -------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "substitution"]
myst_substitutions = {"release": release}
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- API pages ---------------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
add_module_names = False

intersphinx_mapping: dict = {}  # offline: no inventories are fetched

# -- offline MathJax 3 (the es5 build shipped in the django-static-mathjax wheel) -------
_mathjax = find_spec("mathjax")
if _mathjax is None or _mathjax.origin is None:
    raise RuntimeError(
        'MathJax is missing: install the docs extra, pip install -e ".[docs,torch,vision]"'
    )
# regtheory_docs copies tex-chtml.js, its fonts and TeX extensions into _static/mathjax/
regtheory_mathjax_es5 = str(Path(_mathjax.origin).parent / "static" / "mathjax" / "es5")
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"tags": "ams"}}

# -- HTML --------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"regtheory {release}"
html_static_path: list[str] = []  # regtheory_docs adds the staged MathJax
html_extra_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False

# Every cross-reference must resolve (-W makes a broken one an error), except names the
# docstrings mention on purpose that are not part of the public API: private modules and
# their helpers, module constants left out of __all__, and torch's own classes (no
# inventory is fetched: the build is offline).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:mod", r"regtheory(\.\w+)*\._\w+"),
    (r"py:class", r"FigureCheck|Module"),
    (r"py:data", r"FC_TRAINING|CONV_TRAINING|CONNECT_TIMEOUT"),
]
