"""Reproductions: published results of the dropout literature beside the package's numbers.

Each module here registers one figure that recomputes a paper's result and records,
claim by claim, the paper's number (or that it could not be read), ours, and a
verdict (:mod:`._claims`). ``REPRODUCTIONS`` names them in the order of the
documentation's table.
"""

from ._claims import NOT_READ, VERDICTS, claim, draw_claims, reproductions_table, verdict

# isort: split
from . import srivastava_ridge  # noqa: F401  (registers its figure)

# isort: split
from . import dropblock_gamma  # noqa: F401

# isort: split
from . import mianjy_equalization  # noqa: F401

# isort: split
from . import cavazza_factorization  # noqa: F401

# isort: split
from . import deep_linear_dropout  # noqa: F401

# isort: split
from . import wager_simulation  # noqa: F401

# isort: split
from . import arora_completion  # noqa: F401

# The figures of this section, in the order of the table (each module registers one).
REPRODUCTIONS: tuple[str, ...] = (
    "srivastava_ridge",
    "dropblock_gamma",
    "mianjy_equalization",
    "cavazza_factorization",
    "deep_linear_dropout",
    "wager_simulation",
    "arora_completion",
)

__all__ = [
    "NOT_READ",
    "REPRODUCTIONS",
    "VERDICTS",
    "claim",
    "draw_claims",
    "reproductions_table",
    "verdict",
]
