"""The dropout problem of a GLM, solved down the package's one solver ladder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any, Literal

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from .._grammar import RngLike, as_rng, transition_to_rng
from .._references import cites
from .._results import freeze_arrays
from .._validation import (
    check_array,
    check_choice,
    check_int,
    check_keep,
)
from ..implied import Solution, SolverFailedError
from ..implied._solver import Certificate, NoMinimiserError, Rung, check_installed, ladder, solve
from ._design import Design, exact_design, plain_design, saa_design
from ._existence import check_minimiser, confirm_minimiser, find_recession
from ._families import FAMILIES, Family, check_labels, cumulant, cvx_cumulant, variance_function

__all__ = [
    "CLARABEL_GLM_OPTIONS",
    "FIXED_POINT_TOL",
    "GRADIENT_TOL",
    "LBFGS_GTOL",
    "MAX_FIXED_POINT_STEPS",
    "GLMSolution",
    "NoMinimiserError",
    "solve_dropout",
]

#: Relative change of (β, b) between two reweighted-ridge steps at which the quadratic
#: method stops; well above the accuracy of each step's solve, so reachable.
FIXED_POINT_TOL = 1e-7
#: Reweighted-ridge steps after which the quadratic method gives up.
MAX_FIXED_POINT_STEPS = 200
LBFGS = "L-BFGS-B"
#: Gradient norm at which the L-BFGS path accepts a solution: on 57,000 SAA terms the
#: rounding of the objective stops L-BFGS-B near 1e-8, so 1e-8 itself is not always reached.
LBFGS_GTOL = 1e-7
#: Gradient norm at which a cvxpy rung's solution is accepted (the first-order certificate
#: of the smooth GLM objectives). Clarabel's interior point stops on its own duality gap,
#: not on the gradient: at its tight tolerances below it reaches 1e-9 to 1e-6 on the
#: problems of the tests (Poisson the largest), so a tolerance of 1e-5 accepts those
#: solutions and refuses the ones of Clarabel's defaults that stop an order above.
GRADIENT_TOL = 1e-5
#: Clarabel's first-rung tolerances for the exponential-cone problems here: at 1e-12 (the
#: implied problems' setting) it ends 'optimal_inaccurate' on the larger exact problems
#: after twice the iterations.
CLARABEL_GLM_OPTIONS = MappingProxyType(
    {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
)
# What a status means here, where the recession check has run before the solve.
_HINTS = {
    cp.UNBOUNDED: "the solver calls the objective unbounded below although no direction "
    "without a minimiser was found in the data: rescale the features to O(1)",
    cp.INFEASIBLE: "the solver calls an unconstrained problem infeasible: rescale the "
    "features to O(1)",
}


@dataclass(frozen=True, kw_only=True)
class GLMSolution(Solution):
    r"""A solution of the dropout problem of a GLM (:func:`solve_dropout`).

    A :class:`regtheory.implied.Solution` with the coefficients.

    Attributes
    ----------
    beta : array (d,)
        Coefficients (read-only).
    intercept : float
        The intercept b (0 when not fitted).
    objective : float
        The objective of the problem solved at the solution: the expected dropout
        objective :math:`L + R` (``"exact"``), its sample average over the fixed masks
        (``"saa"``), or :math:`L + R_q` with the curvature at the solution
        (``"quadratic"``).
    objective_stderr : float or None
        ``"saa"`` only: the sampling standard error of ``objective`` -- the standard
        deviation over the mask draws of the per-draw objective at the solution,
        divided by √n_masks.
    status : str
        What the solver said (``"optimal"``, ``"optimal_inaccurate"`` when the gradient
        certificate still holds; the closed form: ``"closed_form"``).
    gap : None
        The certificate is first order: see ``gradient_norm``.
    gradient_norm : float
        Euclidean norm of the gradient of the solved objective in (β, b), computed in
        NumPy from the solution: at most :data:`GRADIENT_TOL` (cvxpy rungs) or
        :data:`LBFGS_GTOL` (``solver="L-BFGS-B"``), whatever the status said.
    solver : str
        The rung of the ladder that produced the solution (``"CLARABEL (tight)"``,
        ``"CLARABEL (defaults)"``, ``"SCS (tight)"``, ``"L-BFGS-B"``, or ``"closed form"``
        for the quadratic method on the Gaussian family).
    iterations : int or None
        The reweighted-ridge steps of ``"quadratic"``; else the iterations of the
        accepted solve, as its solver reports them.
    attempts : tuple of Attempt
        The rungs tried for the last solve.
    solve_time : float
        Wall-clock seconds, formulation included.
    method, family : str
        What was solved.
    keep : float
        Retain probability θ.
    n_terms : int
        Terms (samples × masks) of the solved objective.
    """

    beta: np.ndarray
    intercept: float
    objective_stderr: float | None
    solve_time: float
    method: str
    family: str
    keep: float
    n_terms: int

    def __post_init__(self) -> None:
        freeze_arrays(self)


def _saa_stderr(design: Design, beta: np.ndarray, b: float, family: str) -> float:
    assert design.draw is not None
    terms = design.weights * cumulant(design.rows @ beta + b, family)
    per_draw = np.bincount(design.draw, weights=terms) * (design.draw.max() + 1)
    return float(np.std(per_draw, ddof=1) / np.sqrt(per_draw.size))


def _gradient(design: Design, family, intercept, ridge, beta, b) -> np.ndarray:
    grad = design.gradient(beta, b, family, intercept)
    grad[: len(beta)] += 2.0 * ridge * beta
    return grad


class _LBFGSProblem:
    """Scipy's L-BFGS-B on a design's objective plus a ridge, as a rung of the ladder.

    It has ``solve`` and ``status`` as a cvxpy problem has them.
    """

    def __init__(self, design: Design, family: str, intercept: bool, ridge: np.ndarray):
        self.design, self.family, self.intercept, self.ridge = design, family, intercept, ridge
        d = design.rows.shape[1]
        self.theta = np.zeros(d + intercept)
        self.status: str | None = None
        self.solver_stats: SimpleNamespace | None = None

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        d = self.design.rows.shape[1]
        return theta[:d], float(theta[d]) if self.intercept else 0.0

    def fun(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, b = self.split(theta)
        value = self.design.objective(beta, b, self.family) + float(self.ridge @ beta**2)
        return value, _gradient(self.design, self.family, self.intercept, self.ridge, beta, b)

    def solve(self, solver: str, warm_start: bool = True, **options: object) -> None:
        settings = {"maxiter": 20_000, "maxcor": 30, "gtol": LBFGS_GTOL / 10, "ftol": 0.0}
        result = optimize.minimize(
            self.fun, self.theta, jac=True, method=LBFGS, options={**settings, **options}
        )
        self.theta = result.x  # the next solve starts here (warm start)
        self.status = cp.OPTIMAL if result.success else cp.OPTIMAL_INACCURATE
        self.solver_stats = SimpleNamespace(num_iters=int(result.nit))


class _Step:
    """min design.objective + Σ_j c_j β_j² over (β, b), down the ladder; c can change."""

    def __init__(
        self, design: Design, family: str, intercept: bool, rungs: tuple[Rung, ...], ridge: bool
    ):
        self.design, self.family, self.intercept, self.rungs = design, family, intercept, rungs
        d = design.rows.shape[1]
        self.ridge = np.zeros(d)
        self.problem: Any
        if rungs[0].solver == LBFGS:
            self.problem = _LBFGSProblem(design, family, intercept, self.ridge)
            self.tolerance = LBFGS_GTOL
            return
        self.tolerance = GRADIENT_TOL
        self.beta = cp.Variable(d)
        self.b = cp.Variable() if intercept else cp.Constant(0.0)
        self.c = cp.Parameter(d, nonneg=True)
        z = design.rows @ self.beta + self.b
        expected = design.weights @ cvx_cumulant(z, family)
        objective = expected - design.linear @ self.beta - design.y_mean * self.b
        if ridge:
            objective = objective + self.c @ cp.square(self.beta)
        self.problem = cp.Problem(cp.Minimize(objective))

    def values(self) -> tuple[np.ndarray, float]:
        if isinstance(self.problem, _LBFGSProblem):
            return self.problem.split(self.problem.theta)
        if self.beta.value is None:
            raise SolverFailedError("no_solution", "cvxpy", "the solver returned no values")
        b = float(np.asarray(self.b.value, dtype=float)) if self.intercept else 0.0
        return np.asarray(self.beta.value, dtype=float), b

    def certify(self) -> Certificate:
        beta, b = self.values()
        grad = _gradient(self.design, self.family, self.intercept, self.ridge, beta, b)
        return Certificate.from_gradient(float(np.linalg.norm(grad)), self.tolerance)

    def run(self, ridge: np.ndarray | None = None):
        if ridge is not None:
            self.ridge[:] = ridge  # shared with the L-BFGS problem
            if not isinstance(self.problem, _LBFGSProblem):
                self.c.value = ridge
        solved = solve(self.problem, None, certify=self.certify, rungs=self.rungs)
        return (*self.values(), solved)


def _rungs(solver: object, solver_options: object) -> tuple[Rung, ...]:
    if isinstance(solver, str) and solver.upper() == LBFGS:
        ladder(None, solver_options)  # type: ignore[arg-type]  # checks `solver_options`
        return (Rung(LBFGS, dict(solver_options or {}), LBFGS),)  # type: ignore[call-overload]
    rungs = ladder(solver, solver_options, tight=CLARABEL_GLM_OPTIONS)  # type: ignore[arg-type]
    check_installed(rungs)
    return rungs


# ----------------------------------------------------------------------------- quadratic


def _ridge_weights(X, beta, b, keep, family) -> np.ndarray:
    """c_j of the reweighted ridge Σ_j c_j β_j²: ½ λ mean_i A''(x_i·β + b) x_ij²."""
    lam = (1.0 - keep) / keep
    return 0.5 * lam * (variance_function(X @ beta + b, family) @ (X * X)) / X.shape[0]


def _ridge_closed_form(X, y, c, intercept) -> tuple[np.ndarray, float]:
    """Gaussian family: minimise mean ½(x·β + b)² − y(x·β + b) + Σ c_j β_j²."""
    n, d = X.shape
    Z = np.hstack([X, np.ones((n, 1))]) if intercept else X
    A = Z.T @ Z / n
    A[np.arange(d), np.arange(d)] += 2.0 * c
    theta = np.linalg.solve(A, Z.T @ y / n)
    return theta[:d], float(theta[d]) if intercept else 0.0


def _not_fixed(change: float, X, y, keep, family, intercept) -> SolverFailedError:
    rec = find_recession(X, y, keep, family, "exact", intercept) if keep < 1.0 else None
    if rec is None:
        advice = (
            "method='exact' or 'saa' minimise the dropout objective itself, which has a "
            "minimiser for these data"
        )
    else:
        advice = f"the dropout objective itself has no minimiser either: {rec.cause}"
    return SolverFailedError(
        "fixed_point_not_reached",
        "reweighted ridge",
        f"the reweighted ridge steps of the quadratic method moved (β, b) by {change:.1e} "
        f"(relative) after {MAX_FIXED_POINT_STEPS} steps, above {FIXED_POINT_TOL:.0e}: the "
        f"adaptive-L2 weights oscillate at this keep; try a keep closer to 1, or {advice}",
    )


def _quadratic(X, y, keep, family, intercept, rungs) -> dict:
    d = X.shape[1]
    design = plain_design(X, y)
    if family == "gaussian":
        c = _ridge_weights(X, np.zeros(d), 0.0, keep, family)
        beta, b = _ridge_closed_form(X, y, c, intercept)
        grad = _gradient(design, family, intercept, c, beta, b)
        solved = {"status": "closed_form", "solver": "closed form", "iterations": 1}
        return _fields(design, family, beta, b, c, grad, solved, None)
    step_problem = _Step(design, family, intercept, rungs, ridge=True)
    theta = np.zeros(d + intercept)
    for step in range(1, MAX_FIXED_POINT_STEPS + 1):
        c = _ridge_weights(X, theta[:d], float(theta[d]) if intercept else 0.0, keep, family)
        beta, b, solved = step_problem.run(c)
        new = np.append(beta, b) if intercept else beta
        change = np.max(np.abs(new - theta))
        theta = new
        if change <= FIXED_POINT_TOL * (1.0 + np.max(np.abs(theta))):
            c = _ridge_weights(X, beta, b, keep, family)  # the curvature held at the solution
            grad = _gradient(design, family, intercept, c, beta, b)
            fields = {**solved.fields(), "iterations": step}
            return _fields(design, family, beta, b, c, grad, fields, None)
    raise _not_fixed(change, X, y, keep, family, intercept)


def _fields(design, family, beta, b, ridge, grad, solved: dict, stderr) -> dict:
    return {
        **solved,
        "beta": beta,
        "intercept": b,
        "objective": design.objective(beta, b, family) + float(ridge @ beta**2),
        "gap": None,
        "gradient_norm": float(np.linalg.norm(grad)),
        "objective_stderr": stderr,
        "n_terms": len(design.weights),
    }


def _convex(design: Design, family, intercept, rungs) -> dict:
    beta, b, solved = _Step(design, family, intercept, rungs, ridge=False).run()
    stderr = None if design.draw is None else _saa_stderr(design, beta, b, family)
    ridge = np.zeros(len(beta))
    grad = _gradient(design, family, intercept, ridge, beta, b)
    return _fields(design, family, beta, b, ridge, grad, solved.fields(), stderr)


def _solve_method(X, y, keep, family, method, intercept, rungs, design) -> dict:
    check_minimiser(X, y, keep, family, method, intercept, design)
    if method == "quadratic":
        return _quadratic(X, y, keep, family, intercept, rungs)
    if method == "exact" or keep == 1.0:  # existence settled before the solve
        return _convex(design, family, intercept, rungs)
    try:
        fields = _convex(design, family, intercept, rungs)
    except SolverFailedError:
        confirm_minimiser(design, family, intercept, None, 0.0)  # a direction, if any
        raise
    confirm_minimiser(design, family, intercept, fields["beta"], fields["intercept"])
    return fields


@cites("wager2013dropout")
@transition_to_rng
def solve_dropout(
    X: ArrayLike,
    y: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    method: Literal["exact", "saa", "quadratic"] = "exact",
    intercept: bool = True,
    n_masks: int = 100,
    rng: RngLike = 0,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> GLMSolution:
    r"""Minimise the dropout objective of a GLM: exactly, by sampling, or to second order.

    .. math:: \min_{\beta, b}\ \frac1n \sum_i \mathbb E_r A(\tilde x_i\cdot\beta + b)
              - y_i (x_i\cdot\beta + b)

    * ``"exact"``: the expectation as the sum over all :math:`2^d` masks weighted by
      their probabilities, :math:`n 2^d` terms (at most :data:`MAX_EXACT_TERMS`);
    * ``"saa"``: the sample average over ``n_masks`` fixed draws, each a fresh mask for
      every sample (:math:`n \cdot` ``n_masks`` terms, any d), with the sampling standard
      error of the objective at the solution;
    * ``"quadratic"``: Wager et al.'s adaptive L2, :math:`L + \sum_j c_j\beta_j^2` with
      :math:`c_j = \tfrac12\lambda\frac1n\sum_i A''(x_i\cdot\hat\beta + \hat b) x_{ij}^2`
      at the previous solution (from β = 0), re-solved until (β, b) moves by at most
      :data:`FIXED_POINT_TOL` relative to 1 + max|(β, b)|; closed form for the Gaussian family.

    Each problem is convex but need not have a minimiser (THEORY §8): without one,
    :class:`NoMinimiserError` is raised, never a finite point. A rung of
    the solver ladder is accepted when the gradient at its solution, computed in NumPy,
    has norm at most :data:`GRADIENT_TOL`. The intercept is neither dropped nor penalized.

    Parameters
    ----------
    X : array (n, d)
        Inputs, one sample per row (standardise them: the problem is not scale-free).
    y : array (n,)
        Responses: real (gaussian), 0/1 labels (logistic), counts (poisson).
    keep : float
        Retain probability θ in (0, 1].
    family : {"gaussian", "logistic", "poisson"}
    method : {"exact", "saa", "quadratic"}
    intercept : bool
        Fit an intercept b (default) or fix b = 0.
    n_masks : int
        Mask draws of ``"saa"`` (at least 2).
    rng : int, numpy.random.Generator or None
        Source of the ``"saa"`` masks (``seed=`` is a deprecated alias).
    solver : str, optional
        cvxpy solver name. By default the ladder: Clarabel at tolerances 1e-10, then at
        its defaults, then SCS, until one solution certifies. ``"L-BFGS-B"``: scipy on
        the same objective, accepted at gradient norm :data:`LBFGS_GTOL`; far faster
        than Clarabel for many terms.
    solver_options : dict, optional
        Options for the one solve with ``solver`` (Clarabel when no solver is named).

    Returns
    -------
    GLMSolution
        The solution, its objective, and the rung and gradient norm that certify it.

    Raises
    ------
    NoMinimiserError
        If the problem has no minimiser (a ``ValueError`` naming the cause, with the
        ``direction`` along which the objective keeps decreasing).
    regtheory.implied.SolverFailedError
        If no rung's solution certifies, the reweighted ridge finds no fixed point in
        :data:`MAX_FIXED_POINT_STEPS` steps, or a large sample average's does not
        certify that its minimum is attained.

    References
    ----------
    S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS 2013.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 3))
    >>> y = (X @ [1.0, -1.0, 0.5] + rng.standard_normal(40) > 0).astype(float)
    >>> sol = solve_dropout(X, y, 0.8)
    >>> sol.status, sol.solver, sol.n_terms, bool(sol.gradient_norm <= GRADIENT_TOL)
    ('optimal', 'CLARABEL (tight)', 320, True)

    """
    start = time.perf_counter()
    X = check_array(X, "X", ndim=2)
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    y = check_labels(y, X, str(family))
    check_choice(method, "method", ("exact", "saa", "quadratic"))
    n_masks = check_int(n_masks, "n_masks", minimum=2)
    problem = (X, y, keep, str(family), str(method), bool(intercept))
    design = _DESIGNS[str(method)](X, y, keep, n_masks, as_rng(rng))
    fields = _solve_method(*problem, _rungs(solver, solver_options), design)
    elapsed = time.perf_counter() - start
    return GLMSolution(
        **fields, solve_time=elapsed, method=str(method), family=str(family), keep=keep
    )


_MakeDesign = Callable[[np.ndarray, np.ndarray, float, int, np.random.Generator], "Design | None"]
_DESIGNS: dict[str, _MakeDesign] = {
    "exact": lambda X, y, keep, n_masks, rng: exact_design(X, y, keep),
    "saa": lambda X, y, keep, n_masks, rng: saa_design(X, y, keep, n_masks, rng),
    "quadratic": lambda X, y, keep, n_masks, rng: None,
}
