"""The ``regtheory`` command line.

``regtheory figures [--list] [--only NAME ...] [--out DIR] [--quick] [--seed N]
[--jobs N | --scheduler ADDRESS]`` reproduces the figures into ``figures/``, with a
progress bar on a terminal. The figures' sweeps (grids of independent Monte Carlo
and training runs) run on joblib processes, one per core unless ``--jobs`` says
otherwise (``--jobs 1``: serially in this process), or on the Dask cluster whose
scheduler is at ``--scheduler`` (the ``dask`` extra). The data are the same on
every backend (:mod:`regtheory.sweep`).

``regtheory penalty fc|conv [--keep P] [--weights FILE.npz] ...`` prints the
closed-form dropout penalty of one layer (formula (1), the block penalty, (5) or
(6)) beside a Monte Carlo estimate over real masks with its 95 % interval
(``--json`` for scripts).

``regtheory penalty torch --model FILE --data FILE.npz [--loss mse|cross_entropy]
[--diagnose] ...`` prints the dropout penalty of a saved PyTorch ``nn.Sequential`` on
data (:func:`regtheory.pytorch.dropout_penalty`), exact or by Monte Carlo, and what each
dropout module pays; it needs the ``torch`` extra and imports torch only when run.

``regtheory check [--only NAME ...] [--dir DIR] [--quick] [--jobs N] [--json]``
regenerates the stored figures with the seeds and modes their JSON records and
compares them field by field (:func:`regtheory.figures.check`); exit status 1 when
a value disagrees.

``regtheory compare [--n N] [--kernel-size K] [--channels C] [--keep P] ...
[--solver NAME]`` solves one convolution task under FC, conv elementwise, channel
and block dropout and prints what each learns (``--json`` for scripts).

``regtheory cite [--figure NAME ...] [--all]`` prints the BibTeX of the package (its
version, and the git commit when run from a git checkout) and of the papers whose results
the named figures, or every figure and function, compute (:func:`regtheory.cite`).

``--solver NAME`` (``compare`` and ``figures``) picks the cvxpy solver of every
implied problem, among ``cvxpy.installed_solvers()`` (default Clarabel).
``regtheory --version`` prints the version; ``python -m regtheory`` is the same
command.

Exit statuses (also in ``regtheory --help``):

* 0 -- success;
* 1 -- a check disagreed (reserved for a command that checks a result);
* 2 -- a user error: a refused argument (:class:`regtheory.InvalidParameterError`),
  a command line argparse rejects, a file that cannot be read or written;
* 3 -- a numerical failure: a cvxpy solve that did not end ``optimal``
  (:class:`regtheory.implied.SolverFailedError`; the line names a ``--solver`` to
  try instead), a NumPy linear-algebra failure, or a diverging computation
  (``FloatingPointError``).

Statuses 2 and 3 print one line on stderr, never a traceback. Any other exception
is a bug in regtheory and propagates with its traceback.

The arguments are parsed before anything heavy is imported, so ``regtheory --help``
answers at once; each subcommand lives in its own private module and imports what it
computes with when it runs.
"""

from ._common import EXIT_CHECK_FAILED, EXIT_NUMERICAL_FAILURE, EXIT_OK, EXIT_USER_ERROR
from ._main import build_parser, main

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_NUMERICAL_FAILURE",
    "EXIT_OK",
    "EXIT_USER_ERROR",
    "build_parser",
    "main",
]
