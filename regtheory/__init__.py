"""regtheory: the regularization theory of dropout, exact and checkable.

Modules, in the one direction data flows (nothing imports a module below it):

``masks``       mask distributions (Bernoulli, channel, ...), λ = (1 − keep)/keep
``layers``      the one description of a network: typed nodes joined in a graph
``montecarlo``  generic Monte Carlo engine; :class:`Penalty` (alias ``Estimate``) is the
                result of every penalty, exact or estimated
``conv``        convolution as a matrix (§2), tap counts, conv penalties (5)/(6)
                in closed form and by Monte Carlo for every mask type
``fc``          fully connected layers: penalty (1), induced regularizer (2),
                equalization, global optimum (3), Monte Carlo penalty
``completion``  matrix factorization on observed entries: the dropout penalty, its
                product form, the weighted trace norm it induces and the convex
                problem it implies (cvxpy, or a certified proximal solver at scale)
``network``     sequential nets: the exact penalty at any depth (moment propagation),
                split over the dropout layers, and its Monte Carlo estimate
``diagnostics`` what dropout does to a trained network: per-unit costs of its
                Linear-Dropout-Linear blocks, equalization gaps, starved kernel taps
``implied``     the implied regularized problems, solved with cvxpy, and the induced
                regularizer of deep linear nets
``glm``         dropout on the inputs of a generalized linear model: the exact penalty,
                its quadratic and Gaussian approximations, the convex dropout problem
``training``    networks trained with real sampled dropout masks (NumPy)
``compare``     one task under FC, conv, channel and block dropout
``sweep``       grids of independent tasks: serial, joblib or Dask, same bits
``figures``     one function per figure and the registry the CLI uses
``cli``         the ``regtheory`` command
``pytorch``     a user's PyTorch model as the package's layers, and its penalty (needs
                the ``torch`` extra)

``data`` (white inputs, teacher tasks) is used by the layers above ``conv``.

:func:`cite` gives the BibTeX of the package and of the papers behind a figure, a result
or a function (``regtheory cite`` on the command line).

A refused argument raises :class:`InvalidParameterError` (a ``ValueError`` and a
``TypeError``) naming it; finite inputs whose penalty leaves float64 raise
:class:`NumericalOverflowError` (also an ``OverflowError``) instead of returning inf or
NaN; a cvxpy solve whose solution cannot be certified optimal raises
:class:`regtheory.implied.SolverFailedError`.

Submodules load on first use (``regtheory.fc``, ``from regtheory import glm``), so
``import regtheory`` is quick and loads neither cvxpy, SciPy's statistics, matplotlib
nor torch; each comes in with the first module that needs it.

Conventions (THEORY.md): ``keep`` is the retain probability (PyTorch's ``p`` is
``1 - keep``), dropout is inverted (E[mask] = 1), λ = (1 − keep)/keep.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public submodules, imported on first attribute access (``regtheory.fc``) as SciPy
# does: cvxpy, matplotlib and torch then load only with the module that uses them.
_SUBMODULES = (
    "compare",
    "completion",
    "conv",
    "data",
    "diagnostics",
    "fc",
    "glm",
    "implied",
    "layers",
    "masks",
    "montecarlo",
    "network",
    "sweep",
    "training",
)
# Loaded on access too, but left out of ``from regtheory import *``: the figures need
# matplotlib, pytorch needs the torch extra, cli is the command line.
_OTHER_SUBMODULES = ("cli", "figures", "pytorch")

# The names re-exported here, each with the module that defines it. A new top-level
# name is one line in this table and its entry in ``__all__``.
_NAMES = {
    "Estimate": "montecarlo",
    "InvalidParameterError": "_validation",
    "NumericalOverflowError": "_overflow",
    "Penalty": "_results",
    "cite": "_cite",
    "dropout_lambda": "masks",
}

__all__ = [
    "Estimate",
    "InvalidParameterError",
    "NumericalOverflowError",
    "Penalty",
    "__version__",
    "cite",
    "compare",
    "completion",
    "conv",
    "data",
    "diagnostics",
    "dropout_lambda",
    "fc",
    "glm",
    "implied",
    "layers",
    "masks",
    "montecarlo",
    "network",
    "sweep",
    "training",
]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from . import (
        compare,
        completion,
        conv,
        data,
        diagnostics,
        fc,
        glm,
        implied,
        layers,
        masks,
        montecarlo,
        network,
        sweep,
        training,
    )
    from ._cite import cite
    from ._overflow import NumericalOverflowError
    from ._results import Penalty
    from ._validation import InvalidParameterError
    from .masks import dropout_lambda
    from .montecarlo import Estimate

    __version__: str


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("regtheory")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES or name in _OTHER_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_OTHER_SUBMODULES})
