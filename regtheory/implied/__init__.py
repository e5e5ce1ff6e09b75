r"""Implied regularized problems of dropout, solved with cvxpy.

Dropout training minimises, in expectation, the plain loss plus a penalty on
the factors; minimising that penalty over all factorizations of the same
end-to-end map gives the *induced regularizer*, and the *implied problem* is
the plain loss plus it, over maps. Each is solved here with cvxpy,
independently of the closed forms in :mod:`regtheory.fc`, so each checks the
other.

* FC dropout: squared nuclear norm, :func:`solve_fc` (THEORY (2)–(3)).
* Block dropout on an FC layer: squared spectral k-support norm,
  :func:`solve_fc_block` (Pal et al., CVPR 2020).
* Conv dropout (circular, white input): squared nuclear norm of the lifted
  kernel, :func:`conv_induced_regularizer` and :func:`solve_conv` (THEORY (7));
  channel dropout as its ridge relaxation.
* The exact, non-convex objective of the factored conv net (zero padding
  included), minimised numerically: :func:`solve_conv_factored`.
* Deep linear nets with dropout at every hidden layer: their induced regularizer,
  minimised numerically over exact factorizations, :func:`deep_induced_regularizer`
  (THEORY §6).

Every solve is certified: a duality gap computed in NumPy from the solution,
independently of the solver, bounds its relative sub-optimality, and a result is
returned only when that gap is at most :data:`GAP_RTOL` (1e-6); the result (a
:class:`Solution`) says what the solver said (``status``), what was certified
(``gap``) and which rung of the ladder produced it (``solver``). When the
first solver stops short, others are tried (:mod:`regtheory.implied._solver`);
:class:`SolverFailedError` is raised only when none yields a certified solution.
"""

from ._blocks import k_support_norm_sq, solve_fc_block
from ._conv import (
    ConvRegularizerResult,
    ConvSolution,
    conv_induced_regularizer,
    lifted_operator,
    solve_conv,
)
from ._conv_factored import FactoredConvSolution, solve_conv_factored
from ._deep import DeepRegularizerResult, deep_induced_regularizer
from ._fc import fc_objective, solve_fc
from ._solver import (
    CLARABEL_OPTIONS,
    CLARABEL_SDP_OPTIONS,
    GAP_RTOL,
    Attempt,
    ImpliedResult,
    Solution,
    SolverFailedError,
)

__all__ = [
    "CLARABEL_OPTIONS",
    "CLARABEL_SDP_OPTIONS",
    "GAP_RTOL",
    "Attempt",
    "ConvRegularizerResult",
    "ConvSolution",
    "DeepRegularizerResult",
    "FactoredConvSolution",
    "ImpliedResult",
    "Solution",
    "SolverFailedError",
    "conv_induced_regularizer",
    "deep_induced_regularizer",
    "fc_objective",
    "k_support_norm_sq",
    "lifted_operator",
    "solve_conv",
    "solve_conv_factored",
    "solve_fc",
    "solve_fc_block",
]
