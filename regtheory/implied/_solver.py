"""Solver plumbing shared by every implied problem: a fallback ladder and certified results.

A cvxpy status is the solver's own opinion of its last iterate, reached with
floating-point arithmetic whose rounding differs from one processor to the next;
an interior-point method run at tight tolerances can call the same problem
``optimal`` on one machine and ``optimal_inaccurate`` on another. So the status
is not what decides whether a solution is returned. Every implied problem
supplies a **certificate**: a function that reads the solution and computes, in
NumPy and independently of the solver, an upper bound on its relative
sub-optimality (a duality gap from Fenchel's inequality, or from a dual point
scaled to feasibility; see :mod:`regtheory.implied._certificate`).

:func:`solve` tries the solvers in order (a *ladder*) and returns the first
solution whose certified relative gap is at most :data:`GAP_RTOL`:

1. Clarabel (interior point) at tight tolerances: :data:`CLARABEL_OPTIONS`
   (1e-12) for quadratic and second-order-cone problems, :data:`CLARABEL_SDP_OPTIONS`
   (1e-9) for problems with a semidefinite cone;
2. Clarabel at its default tolerances (1e-8), which it reaches with a wide margin;
3. SCS (first order), at tight ``eps`` and a bounded number of iterations.

A solution is accepted whatever the status said (``optimal`` or
``optimal_inaccurate``) when its certificate holds, and the result reports both:
``status`` is what the solver said, ``gap`` what was certified. Only when no
rung yields a certified solution does :class:`SolverFailedError` say what each
rung ended with. A caller who names a solver gets that solver only (its tight
settings, then its defaults); a caller who passes ``solver_options`` gets
exactly one solve with them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cvxpy as cp
import numpy as np

from .._results import freeze_arrays
from .._validation import InvalidParameterError

__all__ = [
    "CLARABEL_OPTIONS",
    "CLARABEL_SDP_OPTIONS",
    "GAP_RTOL",
    "Attempt",
    "ImpliedResult",
    "SolverFailedError",
    "solve",
]

#: Tight interior-point tolerances for QPs and SOCPs (Clarabel's defaults are 1e-8).
CLARABEL_OPTIONS: Mapping[str, float] = MappingProxyType(
    {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
)
#: Tolerances for problems with a PSD cone (nuclear norms). Measured on 150 random
#: instances of each implied problem (cvxpy 1.9.3, Clarabel 0.11.1): none ends
#: inaccurate at 1e-10, up to 27 % do at 1e-11, so 1e-9 keeps a factor 10–100 from the edge.
CLARABEL_SDP_OPTIONS: Mapping[str, float] = MappingProxyType(
    {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}
)
#: The relative duality gap a solution must certify to be returned.
GAP_RTOL = 1e-6

_SCS_OPTIONS: Mapping[str, float] = MappingProxyType(
    {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 50_000}
)
_ACCEPTED = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


@dataclass(frozen=True)
class Attempt:
    """One rung of the solver ladder: what was run and how it ended.

    Attributes
    ----------
    solver : str
        cvxpy solver name.
    options : Mapping
        Keyword arguments given to ``problem.solve`` (read-only).
    status : str
        The solver's status (``"solver_error"`` if it raised).
    gap : float or None
        Certified relative duality gap of its solution (None when it returned none).
    """

    solver: str
    options: Mapping[str, object]
    status: str
    gap: float | None

    def describe(self) -> str:
        """One line: the solver, its options, its status and the certified gap."""
        gap = "no solution" if self.gap is None else f"certified gap {self.gap:.1e}"
        return f"{self.solver} {dict(self.options) or '(defaults)'}: {self.status}, {gap}"


class SolverFailedError(RuntimeError):
    """No solver of the ladder returned a solution with a certified duality gap.

    Attributes
    ----------
    status : str
        Status of the last attempt.
    solver : str
        Solver of the last attempt.
    attempts : tuple of Attempt
        Every rung tried, in order.
    """

    def __init__(self, status: str, solver: str, hint: str = "", attempts: tuple = ()):
        self.status = status
        self.solver = solver
        self.attempts = tuple(attempts)
        tried = "; ".join(a.describe() for a in self.attempts)
        advice = hint or "rescale the data to O(1) or pass another `solver`"
        super().__init__(
            f"cvxpy solver {solver} ended with status '{status}'"
            + (f" (tried: {tried})" if len(self.attempts) > 1 else "")
            + f"; {advice}"
        )


@dataclass(frozen=True)
class ImpliedResult:
    r"""Solution of an implied regularized problem.

    Attributes
    ----------
    M : ndarray
        The minimising end-to-end map.
    objective : float
        ``fit + regularizer`` at ``M``: the objective of the problem solved.
    fit : float
        The data term at ``M``. The FC problems are posed on the moments
        T = E[y xᵀ] and C = E[x xᵀ], which do not determine E‖y‖², so their fit is
        :math:`\|(M - TC^{-1})C^{1/2}\|_F^2
        = \mathbb E\|y - Mx\|^2 - \mathbb E\|y - TC^{-1}x\|^2`, the expected squared
        error above that of the least-squares map.
    regularizer : float
        The induced regularizer of the problem at ``M``.
    status : str
        What the solver said: ``"optimal"``, or ``"optimal_inaccurate"`` when it
        stopped short of its tolerances but the certificate below still holds.
    gap : float
        Certified relative duality gap, computed in NumPy from ``M``: the true
        minimum is at least ``objective * (1 - gap)``. At most :data:`GAP_RTOL`.
    solve_time : float
        Wall-clock seconds for formulation and solve.
    solver : str
        Name of the cvxpy solver whose solution was accepted.
    """

    M: np.ndarray
    objective: float
    status: str
    gap: float
    solve_time: float
    solver: str
    fit: float
    regularizer: float

    def __post_init__(self) -> None:
        freeze_arrays(self)


@dataclass(frozen=True)
class Solved:
    """What :func:`solve` returns: the accepted rung and every rung tried."""

    solver: str
    status: str
    gap: float
    attempts: tuple[Attempt, ...]


def _ladder(solver: str | None, options: dict | None, sdp: bool) -> list[tuple[str, dict]]:
    tight = dict(CLARABEL_SDP_OPTIONS if sdp else CLARABEL_OPTIONS)
    if solver is not None and not isinstance(solver, str):
        raise InvalidParameterError(
            f"`solver` must be a cvxpy solver name (str), got {type(solver).__name__}"
        )
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidParameterError(
                f"`solver_options` must be a dict, got {type(options).__name__}"
            )
        return [((solver or "CLARABEL").upper(), dict(options))]
    if solver is None:
        return [("CLARABEL", tight), ("CLARABEL", {}), ("SCS", dict(_SCS_OPTIONS))]
    solver = solver.upper()
    if solver == "CLARABEL":
        return [(solver, tight), (solver, {})]
    if solver == "SCS":
        return [(solver, dict(_SCS_OPTIONS))]
    return [(solver, {})]


def solve(
    problem: cp.Problem,
    solver: str | None,
    options: dict | None = None,
    sdp: bool = False,
    certify: Callable[[], float] | None = None,
) -> Solved:
    """Solve ``problem`` in place down the solver ladder; return the accepted rung.

    ``certify()`` reads the problem's variables and returns the certified relative
    duality gap of their values (``None``: trust an ``optimal`` status alone, for
    hand-built problems without a certificate). The first rung whose status is
    ``optimal`` or ``optimal_inaccurate`` and whose gap is at most
    :data:`GAP_RTOL` is accepted, and the variables hold its solution.
    """
    ladder = _ladder(solver, options, sdp)
    installed = cp.installed_solvers()
    for name, _ in ladder:
        if name not in installed:
            raise InvalidParameterError(
                f"`solver` must be one of the installed cvxpy solvers {installed}, got {name!r}"
            )
    attempts = []
    for name, opts in ladder:
        try:
            with warnings.catch_warnings():
                # cvxpy warns on inaccurate solutions; the certificate decides instead.
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=name, **opts)
            status = problem.status
        except cp.error.SolverError:
            status = "solver_error"
        gap = None
        if status in _ACCEPTED:
            if certify is not None:
                gap = float(certify())
            elif status == cp.OPTIMAL:
                gap = 0.0
        attempts.append(Attempt(name, MappingProxyType(opts), status, gap))
        if gap is not None and gap <= GAP_RTOL:
            return Solved(name, status, gap, tuple(attempts))
        if status in (cp.INFEASIBLE, cp.UNBOUNDED):
            break  # a definite verdict on the problem, not a question of precision
    last = attempts[-1]
    raise SolverFailedError(last.status, last.solver, _advice(attempts), tuple(attempts))


def _advice(attempts: list[Attempt]) -> str:
    """What to try next: never the solver that just failed, unless it is the only one."""
    last = attempts[-1]
    if last.status in _ACCEPTED and last.gap is None:  # inaccurate, and nothing certifies it
        return (
            f"it ended {last.status} and its gap is not certified: tighten the tolerances or "
            "raise the iteration limit in `solver_options`, or rescale the data to O(1)"
        )
    if last.status in _ACCEPTED:
        return (
            f"its solution certifies a relative gap of {last.gap:.1e}, above {GAP_RTOL:.0e}: "
            "rescale the data to O(1), or raise the iteration limit or tighten the tolerances "
            "in `solver_options`"
        )
    hint = _ADVICE.get(last.status, "")
    tried = {a.solver for a in attempts}
    others = [s for s in cp.installed_solvers() if s not in tried and s in _CONIC]
    if others and last.status not in (cp.INFEASIBLE, cp.UNBOUNDED):
        hint += ("; " if hint else "") + f"another solver may help (solver='{others[0]}')"
    return hint or "rescale the data to O(1)"


# Solvers that accept every cone the implied problems use (PSD, exponential-free).
_CONIC = ("CLARABEL", "SCS", "MOSEK", "CVXOPT", "COPT")

# What a status means for the implied problems, which are feasible and bounded by
# construction: infeasible / unbounded mean the data (or a hand-built problem) are wrong.
_ADVICE: Mapping[str, str] = MappingProxyType(
    {
        cp.INFEASIBLE: "the constraints cannot be met: check the data (e.g. an end-to-end kernel "
        "the lifted operator cannot reach)",
        cp.UNBOUNDED: "the objective is unbounded below: check the data for a non-PSD second "
        "moment, or the problem for a missing regularizer",
        cp.OPTIMAL_INACCURATE: "the solver stopped short of its tolerances: rescale the data to "
        "O(1) or loosen its tolerances via solver_options",
        cp.INFEASIBLE_INACCURATE: "probably infeasible, but inaccurate: rescale the data",
        cp.UNBOUNDED_INACCURATE: "probably unbounded, but inaccurate: rescale the data",
        cp.USER_LIMIT: "the solver hit an iteration or time limit: raise its iteration limit "
        "in solver_options",
        "solver_error": "the solver raised an error",
    }
)


def as_array(value) -> np.ndarray:
    """A cvxpy value as a float array (cvxpy leaves ``None`` when a solve returned nothing)."""
    if value is None:
        raise SolverFailedError("no_solution", "cvxpy", "the solver returned no values")
    return np.asarray(value, dtype=float)
