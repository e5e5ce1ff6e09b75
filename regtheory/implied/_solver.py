"""Solver plumbing shared by every implied problem: status checks and the result type.

Solvers and tolerances: Clarabel (interior point) by default. For quadratic
and second-order-cone problems its feasibility and duality-gap tolerances are
tightened to 1e-12 (solutions agree with closed forms to ~1e-10); for problems
with a semidefinite cone (nuclear norms) to 1e-9, the tightest at which
Clarabel still reports ``optimal`` on our instances (1e-11 gave
``optimal_inaccurate`` on 2-D lifted kernels; measured with cvxpy 1.9.3). SCS (first order) is accepted through
``solver="SCS"`` but stops at its ``eps``/``max_iters`` and is not accurate
enough for the verification tests. Every solve checks the status; anything
other than ``optimal`` raises :class:`SolverFailedError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = [
    "CLARABEL_OPTIONS",
    "CLARABEL_SDP_OPTIONS",
    "ImpliedResult",
    "SolverFailedError",
    "solve",
]

#: Tight interior-point tolerances (Clarabel's defaults are 1e-8).
CLARABEL_OPTIONS = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
#: Tolerances for problems with a PSD cone (nuclear norms).
CLARABEL_SDP_OPTIONS = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}


class SolverFailedError(RuntimeError):
    """A cvxpy solve ended with a status other than ``optimal``."""

    def __init__(self, status: str, solver: str, hint: str = ""):
        self.status = status
        self.solver = solver
        advice = hint or (
            "try another solver (solver='CLARABEL' or 'SCS'), looser tolerances, "
            "or rescale the data"
        )
        super().__init__(f"cvxpy solver {solver} ended with status '{status}'; {advice}")


@dataclass(frozen=True)
class ImpliedResult:
    """Solution of an implied regularized problem.

    Attributes
    ----------
    M : ndarray
        The minimising end-to-end map.
    objective : float
        Objective value at ``M`` (see the solving function for its definition).
    status : str
        cvxpy status (always ``"optimal"``: anything else raises).
    solve_time : float
        Wall-clock seconds for formulation and solve.
    solver : str
        Name of the cvxpy solver used.
    """

    M: np.ndarray
    objective: float
    status: str
    solve_time: float
    solver: str


def solve(
    problem: cp.Problem, solver: str | None, options: dict | None = None, sdp: bool = False
) -> str:
    """Solve ``problem`` in place; return the solver's name; raise unless ``optimal``."""
    solver = (solver or "CLARABEL").upper()
    if solver not in cp.installed_solvers():
        raise ValueError(
            f"`solver` must be one of the installed cvxpy solvers {cp.installed_solvers()}, "
            f"got {solver!r}"
        )
    if options is None:
        if solver == "CLARABEL":
            options = CLARABEL_SDP_OPTIONS if sdp else CLARABEL_OPTIONS
        else:
            options = {}
    elif not isinstance(options, dict):
        raise TypeError(f"`solver_options` must be a dict, got {type(options).__name__}")
    try:
        with warnings.catch_warnings():
            # cvxpy warns on inaccurate solutions; we raise on any non-optimal status instead.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            problem.solve(solver=solver, **options)
    except cp.error.SolverError as exc:
        raise SolverFailedError("solver_error", solver, f"the solver raised: {exc}") from exc
    if problem.status != cp.OPTIMAL:
        raise SolverFailedError(problem.status, solver, _ADVICE.get(problem.status, ""))
    return solver


# What to try, by status. The implied problems are feasible and bounded by construction,
# so infeasible / unbounded mean the data (or a hand-built problem) are wrong.
_ADVICE = {
    cp.INFEASIBLE: "the constraints cannot be met: check the data (e.g. an end-to-end kernel "
    "the lifted operator cannot reach) or try solver='SCS' to get a certificate",
    cp.UNBOUNDED: "the objective is unbounded below: check the data for a non-PSD second "
    "moment, or the problem for a missing regularizer",
    cp.OPTIMAL_INACCURATE: "the solver stopped short of its tolerances: try solver='CLARABEL' "
    "(interior point), looser tolerances via solver_options, or rescale the data to O(1)",
    cp.INFEASIBLE_INACCURATE: "probably infeasible, but inaccurate: rescale the data or try "
    "another solver",
    cp.UNBOUNDED_INACCURATE: "probably unbounded, but inaccurate: rescale the data or try "
    "another solver",
    cp.USER_LIMIT: "the solver hit an iteration or time limit: raise max_iters in "
    "solver_options or use solver='CLARABEL'",
}
