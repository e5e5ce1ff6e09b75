"""regtheory: the regularization theory of dropout, exact and checkable.

Modules, in the one direction data flows (nothing imports a module below it):

``masks``       mask distributions (Bernoulli, channel, ...), λ = (1 − keep)/keep
``montecarlo``  generic Monte Carlo engine; :class:`Penalty` (alias ``Estimate``) is the
                result of every penalty, exact or estimated
``conv``        convolution as a matrix (§2), tap counts, conv penalties (5)/(6)
                in closed form and by Monte Carlo for every mask type
``fc``          fully connected layers: penalty (1), induced regularizer (2),
                equalization, global optimum (3), Monte Carlo penalty
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
                the ``torch`` extra; imported only on request)

``data`` (white inputs, teacher tasks) is used by the layers above ``conv``.

A refused argument raises :class:`InvalidParameterError` (a ``ValueError`` and a
``TypeError``) naming it; a cvxpy solve whose solution cannot be certified optimal raises
:class:`regtheory.implied.SolverFailedError`.

Conventions (THEORY.md): ``keep`` is the retain probability (PyTorch's ``p`` is
``1 - keep``), dropout is inverted (E[mask] = 1), λ = (1 − keep)/keep.
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    compare,
    conv,
    data,
    diagnostics,
    fc,
    glm,
    implied,
    masks,
    montecarlo,
    network,
    sweep,
    training,
)
from ._validation import InvalidParameterError
from .masks import dropout_lambda
from ._results import Penalty
from .montecarlo import Estimate

try:
    __version__ = version("regtheory")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Estimate",
    "InvalidParameterError",
    "Penalty",
    "__version__",
    "compare",
    "conv",
    "data",
    "diagnostics",
    "dropout_lambda",
    "fc",
    "glm",
    "implied",
    "masks",
    "montecarlo",
    "network",
    "sweep",
    "training",
]
