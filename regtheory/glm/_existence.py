r"""Does the dropout problem of a GLM have a minimiser? Directions of recession (THEORY §8).

The objectives solved by :func:`regtheory.glm.solve_dropout` are convex sums
:math:`F(\vartheta) = \sum_k w_k A(a_k\cdot\vartheta) - g\cdot\vartheta` over
parameters :math:`\vartheta = (\beta, b)`, one term per sample and mask. Along a
direction :math:`\delta` the slope of F tends to its recession function

.. math:: F_\infty(\delta) = \sum_k w_k A_\infty(a_k\cdot\delta) - g\cdot\delta,

with :math:`A_\infty(s) = s_+` (logistic), :math:`0` for :math:`s \le 0` and
:math:`+\infty` otherwise (Poisson), :math:`0` at :math:`s = 0` and :math:`+\infty`
otherwise (Gaussian). When :math:`F_\infty(\delta) \le 0` and F is not constant along
δ (some :math:`a_k\cdot\delta \ne 0` or :math:`g\cdot\delta \ne 0`), F decreases
strictly along δ from every point, so no point is a minimiser; when no such δ
exists, every direction of recession is one of constancy and the minimum is
attained (Rockafellar, Convex Analysis, Thm. 27.1). Three computations decide it:

* the data's structure, for the exact dropout objective at keep < 1 (every mask has
  positive probability; THEORY §8 proves the conditions): logistic, no minimiser iff
  the labels are constant (with an intercept) or one feature separates them at 0
  (:math:`(2y_i - 1)x_{ij}` of one sign, not all 0); Poisson, iff every count is 0
  (with an intercept) or one feature is 0 on every positive count and of one sign
  (not all 0) on the zero counts; Gaussian, never;
* a linear program at keep = 1 (the plain GLM) and for a sample average of few
  terms: it maximises a measure of non-constancy over the directions of recession in
  the box :math:`\|\delta\|_\infty \le 1`, and a positive optimum comes with the
  direction, whose recession function is then recomputed in NumPy;
* for a sample average, after the solve, a dual point: the fitted means at the
  solution, corrected to meet :math:`\sum_k w_k\mu_k a_k = g` exactly, strictly inside
  the range of :math:`A'` prove that the minimum is attained (:func:`dual_point_exists`);
  only when they do not is the linear program asked (or, for too many terms, the
  solve refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse

from ..implied import SolverFailedError
from ..implied._solver import NoMinimiserError
from ._design import Design
from ._families import mean_function, variance_function

#: Relative size (to the largest the linear program's objective can take in the box)
#: above which a direction counts as one of recession and not of rounding.
RECESSION_RTOL = 1e-8
_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class Recession:
    """A direction of (β, b) along which the objective decreases, and why."""

    direction: np.ndarray
    cause: str
    how: str = "structure of the data"


def _fmt(direction: np.ndarray, intercept: bool) -> str:
    names = [f"β_{j}" for j in range(len(direction) - intercept)] + (["b"] if intercept else [])
    parts = [f"{v:+.3g} {n}" for v, n in zip(direction, names) if v != 0.0]
    return "(" + ", ".join(parts) + ")"


def _unit(size: int, index: int, sign: float) -> np.ndarray:
    direction = np.zeros(size)
    direction[index] = sign
    return direction


def logistic_structure(X: np.ndarray, y: np.ndarray, intercept: bool) -> Recession | None:
    """Recession of the exact logistic dropout objective at keep < 1.

    Constant labels, or one feature that separates the labels at 0 (the other features
    cannot help or spoil it).
    """
    d = X.shape[1]
    sign = 2.0 * y - 1.0
    if intercept and np.all(sign == sign[0]):
        label = int(y[0])
        return Recession(
            _unit(d + 1, d, sign[0]),
            f"every label is {label}, so the intercept runs to {'+' if label else '-'}∞ "
            "and the mean loss falls toward 0",
        )
    signed = sign[:, None] * X
    for j in range(d):
        col = signed[:, j]
        if not np.any(col != 0.0):
            continue
        for s in (1.0, -1.0):
            if np.all(s * col >= 0.0):
                up, down = ("≥", "≤") if s > 0 else ("≤", "≥")
                return Recession(
                    _unit(d + intercept, j, s),
                    f"feature {j} separates the labels at 0 (x_i{j} {up} 0 wherever y_i = 1 "
                    f"and {down} 0 wherever y_i = 0): as β_{j} → {'+' if s > 0 else '-'}∞ "
                    f"every term that keeps feature {j} decreases and every term that drops "
                    "it stays put, so dropout does not stop the separation",
                )
    return None


def poisson_structure(X: np.ndarray, y: np.ndarray, intercept: bool) -> Recession | None:
    """Recession of the exact Poisson dropout objective at keep < 1.

    Every count 0, or one feature that vanishes on every positive count and has one sign
    on the zero counts.
    """
    d = X.shape[1]
    positive = y > 0.0
    if intercept and not positive.any():
        return Recession(
            _unit(d + 1, d, -1.0),
            "every count is 0, so the intercept runs to -∞ (every fitted mean e^b falls to 0)",
        )
    for j in range(d):
        col = X[:, j]
        zero = col[~positive]
        if np.any(col[positive] != 0.0) or not np.any(zero != 0.0):
            continue
        for s in (1.0, -1.0):
            if np.all(s * zero <= 0.0):
                return Recession(
                    _unit(d + intercept, j, s),
                    f"feature {j} is 0 on every sample with a positive count and "
                    f"{'≤' if s > 0 else '≥'} 0 on the samples with count 0: as β_{j} → "
                    f"{'+' if s > 0 else '-'}∞ the fitted means of those zero counts fall to "
                    "0 and no other term moves",
                )
    return None


def _recession_value(A: np.ndarray, w: np.ndarray, g: np.ndarray, family: str, delta):
    """F_∞(δ) and the size Σ w|a·δ| + |g·δ| of what moves along δ, in NumPy."""
    s = A @ delta
    moved = float(w @ np.abs(s) + abs(g @ delta))
    if family == "logistic":
        return float(w @ np.clip(s, 0.0, None) - g @ delta), moved
    tol = RECESSION_RTOL * (float(w @ np.abs(A).sum(axis=1)) + float(np.abs(g).sum()))
    if family == "poisson":
        return (-float(g @ delta) if s.max(initial=0.0) <= tol else np.inf), moved
    return (-float(g @ delta) if np.abs(s).max(initial=0.0) <= tol else np.inf), moved


def _with_intercept(design: Design, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """The rows a_k and the linear term g in (β, b) (in β alone without intercept)."""
    if not intercept:
        return design.rows, design.linear
    ones = np.ones((design.rows.shape[0], 1))
    return np.hstack([design.rows, ones]), np.append(design.linear, design.y_mean)


def lp_recession(design: Design, family: str, intercept: bool) -> np.ndarray | None:
    r"""A direction of recession along which the design's objective is not constant, or None.

    Maximises :math:`g\cdot\delta + \sum_k w_k(t_k - a_k\cdot\delta)` over
    :math:`t_k \ge a_k\cdot\delta,\ t_k \ge 0,\ \sum_k w_k t_k \le g\cdot\delta`
    (logistic; the constraints say :math:`F_\infty(\delta) \le 0`), or
    :math:`g\cdot\delta - \sum_k w_k a_k\cdot\delta` over :math:`a_k\cdot\delta \le 0,\
    g\cdot\delta \ge 0` (Poisson), or :math:`g\cdot\delta` over :math:`a_k\cdot\delta = 0`
    (Gaussian), all in the box :math:`\|\delta\|_\infty \le 1`. The optimum is 0
    exactly when every direction of recession is one of constancy.
    """
    A, g = _with_intercept(design, intercept)
    w = design.weights
    K, p = A.shape
    scale = float(w @ np.abs(A).sum(axis=1)) + float(np.abs(g).sum())
    if scale == 0.0:
        return None
    As = sparse.csr_matrix(A)
    box = [(-1.0, 1.0)] * p
    if family == "logistic":
        c = -np.concatenate([g - A.T @ w, w])
        A_ub = sparse.vstack(
            [sparse.hstack([As, -sparse.eye(K)]), sparse.csr_matrix(np.append(-g, w)[None])]
        )
        problem = {"A_ub": A_ub, "b_ub": np.zeros(K + 1), "bounds": box + [(0.0, None)] * K}
    elif family == "poisson":
        c = -(g - A.T @ w)
        A_ub = sparse.vstack([As, sparse.csr_matrix(-g[None])])
        problem = {"A_ub": A_ub, "b_ub": np.zeros(K + 1), "bounds": box}
    else:
        c = -g
        problem = {"A_eq": As, "b_eq": np.zeros(K), "bounds": box}
    result = optimize.linprog(c, method="highs", options=_LP_OPTIONS, **problem)
    if result.status != 0:
        raise SolverFailedError(
            f"linprog_status_{result.status}",
            "HiGHS (recession check)",
            f"the linear program that looks for directions without a minimiser ended with "
            f"'{result.message}': rescale the features to O(1)",
        )
    if -result.fun <= RECESSION_RTOL * scale:
        return None
    delta = result.x[:p] / np.max(np.abs(result.x[:p]))
    slope, moved = _recession_value(A, w, g, family, delta)
    if slope > RECESSION_RTOL * scale or moved <= RECESSION_RTOL * scale:
        return None  # rounding, not a direction: leave the verdict to the solve
    return delta


def dual_point_exists(
    design: Design, family: str, intercept: bool, beta: np.ndarray, b: float
) -> bool:
    r"""Whether a dual point built from a solution proves that the minimum is attained.

    If :math:`\sum_k w_k\mu_k a_k = g` for some :math:`\mu_k` in the interior of the
    range of :math:`A'` ((0, 1) logistic, (0, ∞) Poisson, any real Gaussian), then
    :math:`F_\infty(\delta) = \sum_k w_k (A_\infty(s_k) - \mu_k s_k) > 0` for every δ
    that moves some :math:`s_k = a_k\cdot\delta` (and :math:`g\cdot\delta = 0` when none
    moves): every direction of recession is one of constancy. The fitted means
    :math:`A'(u_k)`, :math:`u_k = a_k\cdot\hat\vartheta`, miss the equation by the gradient
    r at the solution; they are corrected along a Newton step,
    :math:`\mu_k = A'(u_k) + A''(u_k)\,a_k\cdot\Delta`, :math:`H\Delta = -r` with the
    Hessian H, which meets the equation exactly and moves each mean in proportion to
    its distance from the ends of the range; the point counts when the corrected means
    stay inside the range and meet the equation to rounding.
    """
    A, g = _with_intercept(design, intercept)
    w = design.weights
    u = A @ np.append(beta, [b] if intercept else [])
    mu, curvature = mean_function(u, family), variance_function(u, family)
    residual = (w * mu) @ A - g
    hessian = A.T @ ((w * curvature)[:, None] * A)
    s = A @ np.linalg.lstsq(hessian, -residual, rcond=None)[0]
    scale = float((w @ np.abs(A)).max(initial=0.0)) + float(np.abs(g).max(initial=0.0))
    if np.abs((w * (mu + curvature * s)) @ A - g).max(initial=0.0) > 1e-9 * max(scale, 1e-300):
        return False
    # In relative terms, as the means themselves may round to 0 or 1: logistic
    # μ(1 + (1 − μ)s) > 0 and (1 − μ)(1 − μs) > 0; Poisson μ(1 + s) > 0.
    if family == "logistic":
        return bool(np.all(((1.0 - mu) * s > -1.0) & (mu * s < 1.0)))
    if family == "poisson":
        return bool(np.all(s > -1.0))
    return True


def find_recession(
    X: np.ndarray,
    y: np.ndarray,
    keep: float,
    family: str,
    method: str,
    intercept: bool,
    design: Design | None = None,
) -> Recession | None:
    """The direction of recession of the problem ``method`` solves, if it has one."""
    if method == "saa" and keep < 1.0:
        # a sample average approximates the dropout objective: where that has no
        # minimiser, a minimiser of the sampled terms is an artefact of the draws. Whether
        # the sampled terms have one is decided after the solve (confirm_minimiser).
        exact = find_recession(X, y, keep, family, "exact", intercept)
        if exact is None:
            return None
        return Recession(
            exact.direction, f"the dropout objective it approximates has none: {exact.cause}"
        )
    if keep < 1.0:
        if method == "quadratic":
            # each reweighted-ridge step penalizes every coefficient that reaches the score;
            # only the unpenalized intercept can run away
            found = {"logistic": logistic_structure, "poisson": poisson_structure}.get(family)
            rec = found(X[:, :0], y, intercept) if found and intercept else None
            if rec is None:
                return None
            return Recession(np.append(np.zeros(X.shape[1]), rec.direction), rec.cause)
        found = {"logistic": logistic_structure, "poisson": poisson_structure}.get(family)
        return found(X, y, intercept) if found else None
    n = X.shape[0]  # keep = 1: the plain GLM, whatever the method
    delta = lp_recession(
        Design(X, np.full(n, 1.0 / n), y @ X / n, float(np.mean(y)), None), family, intercept
    )
    if delta is None:
        return None
    return Recession(
        delta,
        _lp_cause(family, "") + " (a linear program found it; keep = 1 is the plain GLM)",
        "linear program",
    )


def _lp_cause(family: str, where: str) -> str:
    return {
        "logistic": "the (masked copies of the) samples are separable or quasi-separable by the "
        "hyperplane of this direction",
        "poisson": "this direction lowers the scores of samples with count 0 and leaves those "
        "of every positive count unchanged",
        "gaussian": "the linear term grows along this direction, which no squared term sees",
    }[family] + where


#: The most entries (terms × parameters) of a sample average whose existence question is
#: handed to the linear program (HiGHS needs seconds for a few thousand terms).
MAX_LP_ENTRIES = 1 << 15


def confirm_minimiser(
    design: Design, family: str, intercept: bool, beta: np.ndarray | None, b: float
) -> None:
    """Establish after a sample-average solve that its minimum is attained.

    ``beta`` None: the solve failed. Else raise :class:`NoMinimiserError` with a
    direction, or (the question too big for the linear program) :class:`SolverFailedError`.
    """
    if beta is not None and dual_point_exists(design, family, intercept, beta, b):
        return
    terms = design.rows.shape[0]
    if terms * (design.rows.shape[1] + intercept) <= MAX_LP_ENTRIES:
        delta = lp_recession(design, family, intercept)
        if delta is not None:
            raise NoMinimiserError(
                f"the sample average of the dropout objective of the {family} family has no "
                f"minimiser: {_lp_cause(family, '')}, on the {terms} sampled terms (a linear "
                "program found it); more draws (n_masks) make such directions rarer. It keeps "
                f"decreasing along the direction {_fmt(delta, intercept)} of "
                f"{'(β, b)' if intercept else 'β'} (error.direction)",
                delta,
                "linear program",
            )
        return
    if beta is not None:
        raise SolverFailedError(
            "minimiser_not_certified",
            "dual point",
            f"no point of the dual with every fitted mean inside the range of the {family} "
            f"family matches the solution, so the {terms} sampled terms may have no "
            "minimiser (their masked copies of the samples may be separable), and they are "
            "too many for the linear program that would decide: use more draws (n_masks) or "
            "method='exact'",
        )


def check_minimiser(
    X: np.ndarray,
    y: np.ndarray,
    keep: float,
    family: str,
    method: str,
    intercept: bool,
    design: Design | None = None,
) -> None:
    """Raise :class:`NoMinimiserError` when the problem ``method`` solves has no minimiser."""
    rec = find_recession(X, y, keep, family, method, intercept, design)
    if rec is None:
        return
    objective = {
        "exact": "dropout objective",
        "saa": "sample average of the dropout objective",
        "quadratic": "quadratic (adaptive L2) objective",
    }[method]
    raise NoMinimiserError(
        f"the {objective} of the {family} family has no minimiser: {rec.cause}. It keeps "
        f"decreasing along the direction {_fmt(rec.direction, intercept)} of "
        f"{'(β, b)' if intercept else 'β'} (error.direction), so every finite point a solver "
        "returns is arbitrary",
        rec.direction,
        rec.how,
    )
