"""The one solver ladder of the package, its certificates and its result type.

A cvxpy status is the solver's own opinion of its last iterate, reached with
floating-point arithmetic whose rounding differs from one processor to the next;
an interior-point method run at tight tolerances can call the same problem
``optimal`` on one machine and ``optimal_inaccurate`` on another. So the status
is not what decides whether a solution is returned. Every problem solved here
supplies a **certificate**: a function that reads the solution and computes, in
NumPy and independently of the solver, either an upper bound on its relative
sub-optimality (a duality gap from Fenchel's inequality, or from a dual point
scaled to feasibility; see :mod:`regtheory.implied._certificate`) or, for a
smooth objective, the norm of its gradient (a first-order condition).

:func:`solve` tries the solvers in order (a *ladder*) and returns the first
solution whose certificate holds (a relative gap at most :data:`GAP_RTOL`, or a
gradient norm at most the caller's tolerance):

1. Clarabel (interior point) at tight tolerances: :data:`CLARABEL_OPTIONS`
   (1e-12) for quadratic and second-order-cone problems, :data:`CLARABEL_SDP_OPTIONS`
   (1e-9) for problems with a semidefinite cone, the caller's own for other cones;
2. Clarabel at its default tolerances (1e-8), which it reaches with a wide margin;
3. SCS (first order), at tight ``eps`` and a bounded number of iterations.

A solution is accepted whatever the status said (``optimal`` or
``optimal_inaccurate``) when its certificate holds, and the result reports both:
``status`` is what the solver said, ``gap`` or ``gradient_norm`` what was
certified, and ``solver`` the rung that produced it (``"CLARABEL (tight)"``,
``"CLARABEL (defaults)"``, ``"SCS (tight)"``). Only when no rung yields a
certified solution does :class:`SolverFailedError` say what each rung ended
with. A caller who names a solver gets that solver only (its tight settings,
then its defaults); a caller who passes ``solver_options`` gets exactly one
solve with them.

A certificate says how good a minimiser is, not that one exists: a convex
objective without a minimiser has points of arbitrarily small gradient. Problems
that may have none establish existence before they are solved and raise
:class:`NoMinimiserError` with the direction along which the objective keeps
decreasing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cvxpy as cp
import numpy as np

from .._references import Cited
from .._results import freeze_arrays
from .._validation import InvalidParameterError

__all__ = [
    "CLARABEL_OPTIONS",
    "CLARABEL_SDP_OPTIONS",
    "GAP_RTOL",
    "Attempt",
    "Certificate",
    "ImpliedResult",
    "NoMinimiserError",
    "Rung",
    "Solution",
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
class Rung:
    """One rung of a solver ladder.

    Attributes
    ----------
    solver : str
        The solver's name (a cvxpy solver, or a name the caller's problem knows).
    options : Mapping
        Keyword arguments given to ``problem.solve`` (read-only).
    label : str
        How results name the rung, e.g. ``"CLARABEL (tight)"``.
    """

    solver: str
    options: Mapping[str, object]
    label: str


@dataclass(frozen=True)
class Certificate:
    """What a solution certifies, computed in NumPy from the solution alone.

    Attributes
    ----------
    holds : bool
        Whether the solution is good enough to return.
    gap : float or None
        Certified relative sub-optimality (None for a first-order certificate).
    gradient_norm : float or None
        Euclidean norm of the objective's gradient at the solution (None for a gap).
    """

    holds: bool
    gap: float | None = None
    gradient_norm: float | None = None

    @classmethod
    def from_gap(cls, gap: float) -> Certificate:
        """A duality-gap certificate: it holds when ``gap`` is at most :data:`GAP_RTOL`."""
        gap = float(gap)
        return cls(gap <= GAP_RTOL, gap=gap)

    @classmethod
    def from_gradient(cls, gradient_norm: float, tolerance: float) -> Certificate:
        """A first-order certificate: it holds when the gradient norm is at most ``tolerance``."""
        norm = float(gradient_norm)
        return cls(bool(norm <= tolerance), gradient_norm=norm)

    def describe(self) -> str:
        """The certified quantity, in words."""
        if self.gap is not None:
            return f"certified gap {self.gap:.1e}"
        return f"gradient norm {self.gradient_norm:.1e}"


@dataclass(frozen=True)
class Attempt:
    """One rung of the solver ladder: what was run and how it ended.

    Attributes
    ----------
    solver : str
        Solver name.
    options : Mapping
        Keyword arguments given to ``problem.solve`` (read-only).
    status : str
        The solver's status (``"solver_error"`` if it raised).
    gap : float or None
        Certified relative duality gap of its solution (None when it returned none, or
        when the certificate is a gradient norm).
    gradient_norm : float or None
        Gradient norm of its solution, for first-order certificates.
    label : str
        The rung's name in results (e.g. ``"CLARABEL (tight)"``).
    iterations : int or None
        The solver's iterations, when it reports them.
    """

    solver: str
    options: Mapping[str, object]
    status: str
    gap: float | None
    gradient_norm: float | None = None
    label: str = ""
    iterations: int | None = None

    def describe(self) -> str:
        """One line: the solver, its options, its status and what was certified."""
        if self.gap is not None:
            cert = f"certified gap {self.gap:.1e}"
        elif self.gradient_norm is not None:
            cert = f"gradient norm {self.gradient_norm:.1e}"
        else:
            cert = "no solution"
        return f"{self.solver} {dict(self.options) or '(defaults)'}: {self.status}, {cert}"


class SolverFailedError(RuntimeError):
    """No solver of the ladder returned a solution whose certificate holds.

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
            f"solver {solver} ended with status '{status}'"
            + (f" (tried: {tried})" if len(self.attempts) > 1 else "")
            + f"; {advice}"
        )


class NoMinimiserError(ValueError, SolverFailedError):
    """The objective has no minimiser: it keeps decreasing along ``direction``.

    Raised before any solve, from a certifying computation on the data (a linear
    program or the data's structure), so that no finite point is ever returned as
    optimal. A :class:`ValueError` (the data admit no solution) and, as such problems
    ended before, a :class:`regtheory.implied.SolverFailedError`.

    Attributes
    ----------
    cause : str
        Why, in words (e.g. "feature 2 separates the labels at 0").
    direction : ndarray
        A direction of the parameters along which the objective decreases without
        reaching its infimum, laid out as the problem's parameters (for a GLM the
        coefficients, then the intercept when one is fitted).
    status, solver, attempts
        ``"no_minimiser"``, the check that found it, and no attempts.
    """

    def __init__(self, cause: str, direction: np.ndarray, check: str = "recession check"):
        self.cause = cause
        self.direction = np.array(direction, dtype=float)
        self.direction.flags.writeable = False
        self.status = "no_minimiser"
        self.solver = check
        self.attempts = ()
        ValueError.__init__(self, cause)


@dataclass(frozen=True, kw_only=True)
class Solution(Cited):
    r"""What every solve returns: the objective, how it ended, and what was certified.

    Subclasses add the solution itself (``M`` of an implied problem, ``beta`` of a GLM).

    Attributes
    ----------
    objective : float
        The objective of the problem solved, at the solution, computed in NumPy.
    status : str
        What the solver said: ``"optimal"``, or ``"optimal_inaccurate"`` when it stopped
        short of its tolerances but the certificate still holds (``"closed_form"`` for a
        solution by a formula).
    gap : float or None
        Certified relative duality gap: the true minimum is at least
        ``objective * (1 - gap)``. None when the certificate is first order.
    gradient_norm : float or None
        Euclidean norm of the objective's gradient at the solution, computed in NumPy
        (first-order certificates; None when a gap is certified).
    solver : str
        The rung of the ladder that produced the solution, e.g. ``"CLARABEL (tight)"``,
        ``"SCS (tight)"``, ``"L-BFGS-B"``.
    iterations : int or None
        Iterations of the solve that produced it, as the solver reports them (the
        reweighted-ridge steps for an iterated method); None when not reported.
    attempts : tuple of Attempt
        Every rung tried, in order (the last one produced the solution).
    """

    objective: float
    status: str
    gap: float | None
    gradient_norm: float | None = None
    solver: str
    iterations: int | None = None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ImpliedResult(Solution):
    r"""Solution of an implied regularized problem (a :class:`Solution`).

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
        The rung of the ladder whose solution was accepted (e.g. ``"CLARABEL (tight)"``).
    gradient_norm, iterations, attempts
        As in :class:`Solution` (``gradient_norm`` is None: the gap certifies).
    """

    M: np.ndarray
    gap: float
    solve_time: float
    fit: float
    regularizer: float

    def __post_init__(self) -> None:
        freeze_arrays(self)


@dataclass(frozen=True)
class Solved:
    """What :func:`solve` returns: the accepted rung and every rung tried."""

    solver: str
    status: str
    gap: float | None
    attempts: tuple[Attempt, ...]
    gradient_norm: float | None = None
    iterations: int | None = None

    @property
    def certified_gap(self) -> float:
        """The certified relative gap of a solve certified by a gap (never None there)."""
        if self.gap is None:
            raise TypeError("this solve was certified by its gradient norm, not by a gap")
        return self.gap

    def fields(self) -> dict[str, Any]:
        """The :class:`Solution` fields this solve fills in (all but ``objective``)."""
        return {
            "status": self.status,
            "gap": self.gap,
            "gradient_norm": self.gradient_norm,
            "solver": self.solver,
            "iterations": self.iterations,
            "attempts": self.attempts,
        }


def _check_solver_args(solver: object, options: object) -> None:
    if solver is not None and not isinstance(solver, str):
        raise InvalidParameterError(
            f"`solver` must be a cvxpy solver name (str), got {type(solver).__name__}"
        )
    if options is not None and not isinstance(options, dict):
        raise InvalidParameterError(
            f"`solver_options` must be a dict, got {type(options).__name__}"
        )


def ladder(
    solver: str | None,
    options: dict | None,
    sdp: bool = False,
    *,
    tight: Mapping[str, float] | None = None,
) -> tuple[Rung, ...]:
    """The rungs for a caller's ``solver`` and ``solver_options`` (module docstring).

    ``tight`` replaces Clarabel's first-rung tolerances (default: :data:`CLARABEL_OPTIONS`,
    or :data:`CLARABEL_SDP_OPTIONS` when ``sdp``).
    """
    _check_solver_args(solver, options)
    if tight is None:
        tight = CLARABEL_SDP_OPTIONS if sdp else CLARABEL_OPTIONS
    tight = dict(tight)
    if options is not None:
        name = (solver or "CLARABEL").upper()
        return (Rung(name, dict(options), f"{name} (given options)"),)
    clarabel = (
        Rung("CLARABEL", tight, "CLARABEL (tight)"),
        Rung("CLARABEL", {}, "CLARABEL (defaults)"),
    )
    scs = Rung("SCS", dict(_SCS_OPTIONS), "SCS (tight)")
    if solver is None:
        return (*clarabel, scs)
    solver = solver.upper()
    if solver == "CLARABEL":
        return clarabel
    if solver == "SCS":
        return (scs,)
    return (Rung(solver, {}, f"{solver} (defaults)"),)


def check_installed(rungs: tuple[Rung, ...]) -> None:
    """Refuse a rung whose solver cvxpy does not have."""
    installed = cp.installed_solvers()
    for rung in rungs:
        if rung.solver not in installed:
            raise InvalidParameterError(
                f"`solver` must be one of the installed cvxpy solvers {installed}, "
                f"got {rung.solver!r}"
            )


def _certificate(status: str, certify: Callable[[], object] | None) -> Certificate | None:
    """The certificate of the solution a rung left in the variables (None: none)."""
    if status not in _ACCEPTED:
        return None
    if certify is None:  # hand-built problems: an 'optimal' status alone
        return Certificate(True, gap=0.0) if status == cp.OPTIMAL else None
    found = certify()
    if isinstance(found, Certificate):
        return found
    gap = float(found)  # type: ignore[arg-type]  # a relative gap
    return Certificate.from_gap(gap if math.isfinite(gap) else math.inf)


def _iterations(problem: object) -> int | None:
    stats = getattr(problem, "solver_stats", None)
    count = getattr(stats, "num_iters", None)
    return None if count is None else int(count)


def solve(
    problem: Any,
    solver: str | None,
    options: dict | None = None,
    sdp: bool = False,
    certify: Callable[[], object] | None = None,
    *,
    rungs: tuple[Rung, ...] | None = None,
) -> Solved:
    """Solve ``problem`` in place down the solver ladder; return the accepted rung.

    ``certify()`` reads the problem's variables and returns a :class:`Certificate`
    of their values, or a float: their certified relative duality gap (``None``:
    trust an ``optimal`` status alone, for hand-built problems without a
    certificate). The first rung whose status is ``optimal`` or
    ``optimal_inaccurate`` and whose certificate holds is accepted, and the
    variables hold its solution. ``rungs`` replaces the ladder built from
    ``solver`` and ``options`` (see :func:`ladder`); ``problem`` is then anything
    with ``solve(solver=..., **options)`` and ``status``.
    """
    if rungs is None:
        rungs = ladder(solver, options, sdp)
        check_installed(rungs)
    attempts: list[Attempt] = []
    for rung in rungs:
        # cvxpy keeps the solver of the previous solve, with its settings, and updates only
        # the data when warm starting: a later rung must start a solver of its own
        fresh = {"warm_start": False} if attempts else {}
        try:
            with warnings.catch_warnings():
                # cvxpy warns on inaccurate solutions; the certificate decides instead.
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=rung.solver, **fresh, **rung.options)
            status = str(problem.status)
        except cp.error.SolverError:
            status = "solver_error"
        cert = _certificate(status, certify)
        attempts.append(
            Attempt(
                rung.solver,
                MappingProxyType(dict(rung.options)),
                status,
                None if cert is None else cert.gap,
                None if cert is None else cert.gradient_norm,
                rung.label,
                _iterations(problem) if status != "solver_error" else None,
            )
        )
        if cert is not None and cert.holds:
            last = attempts[-1]
            return Solved(
                rung.label, status, cert.gap, tuple(attempts), cert.gradient_norm, last.iterations
            )
        if status in (cp.INFEASIBLE, cp.UNBOUNDED):
            break  # a definite verdict on the problem, not a question of precision
    last = attempts[-1]
    raise SolverFailedError(last.status, last.solver, _advice(attempts), tuple(attempts))


def _advice(attempts: list[Attempt]) -> str:
    """What to try next: never the solver that just failed, unless it is the only one."""
    last = attempts[-1]
    if last.status in _ACCEPTED and last.gap is None and last.gradient_norm is None:
        return (
            f"it ended {last.status} and its gap is not certified: tighten the tolerances or "
            "raise the iteration limit in `solver_options`, or rescale the data to O(1)"
        )
    if last.status in _ACCEPTED and last.gap is None:
        return (
            f"its solution has gradient norm {last.gradient_norm:.1e}, above the tolerance: "
            "rescale the data to O(1), or raise the iteration limit or tighten the tolerances "
            "in `solver_options`"
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
