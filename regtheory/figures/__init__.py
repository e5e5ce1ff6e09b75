"""Figures: one function per figure returning its data, a thin plotting layer, one registry.

``REGISTRY`` maps each figure name to its :class:`FigureSpec`; :func:`render`
computes, draws and saves one (PNG, PDF and JSON data with version, seed and
environment); :func:`check` regenerates stored figures and compares them with
their JSON, field by field, by the rules each figure declares;
:func:`missing_extras` names the optional dependencies a figure needs that are not
installed. matplotlib is imported when a figure is drawn.
"""

from . import fc_figures  # noqa: F401  (registers its figures)

# isort: split
from . import conv_figures  # noqa: F401

# isort: split
from . import implied_figures  # noqa: F401

# isort: split
from . import deep_figures  # noqa: F401

# isort: split
from . import glm_figures  # noqa: F401  (imports scikit-learn only when computed)

# isort: split
from . import torch_figures  # noqa: F401  (imports torch only when computed)

# isort: split
from . import explicit_figures  # noqa: F401  (imports torch only when computed)

# isort: split
from . import completion_figures  # noqa: F401

# isort: split
from . import reproductions  # noqa: F401
from ._check import CheckReport, check
from ._registry import REGISTRY, FigureSpec, compute, missing_extras, register, render

__all__ = [
    "REGISTRY",
    "CheckReport",
    "FigureSpec",
    "check",
    "compute",
    "missing_extras",
    "register",
    "render",
]
