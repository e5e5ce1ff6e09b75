r"""Dropout on the inputs of a generalized linear model, exactly (THEORY.md §8).

A generalized linear model with canonical link has the negative log-likelihood (up to
terms free of the parameters), averaged over the samples,

.. math:: L(\beta, b) = \frac1n \sum_{i=1}^n A(x_i\cdot\beta + b) - y_i (x_i\cdot\beta + b),

with the cumulant function :math:`A(z) = z^2/2` (``"gaussian"``, squared loss),
:math:`\log(1 + e^z)` (``"logistic"``, labels in {0, 1}) or :math:`e^z` (``"poisson"``,
counts). Inverted dropout on the inputs replaces :math:`x_i` by
:math:`\tilde x_i = x_i \circ r_i/\theta`, :math:`r_{ij}` i.i.d. Bernoulli(θ) (θ =
``keep``), and leaves the intercept b alone. As :math:`\mathbb E\tilde x_i = x_i` and the
labels enter linearly, the expected dropout objective is the plain one plus a penalty
that does not see the labels (Wager, Wang & Liang [1]):

.. math:: \mathbb E_r L_r(\beta, b) = L(\beta, b) + R(\beta, b), \qquad
          R(\beta, b) = \frac1n \sum_i \mathbb E_r A(\tilde x_i\cdot\beta + b)
                        - A(x_i\cdot\beta + b) \;\ge 0 .

:math:`R` is an expectation of convex functions minus a function that the data fix, and
:math:`L + R` is an expectation of convex functions of :math:`(\beta, b)`: the dropout
problem is convex, and :func:`solve_dropout` solves it with cvxpy.

* :func:`dropout_penalty` -- R exactly, by enumerating the :math:`2^{d'}` masks of the
  :math:`d' \le 16` features that reach the score (a nonzero :math:`\beta_j` and a nonzero
  column), or by Monte Carlo over real masks with an honest interval at any d;
* :func:`quadratic_penalty` -- Wager et al.'s second-order approximation, the "adaptive
  L2" :math:`\tfrac12\lambda\frac1n\sum_i A''(x_i\cdot\beta + b)\sum_j x_{ij}^2\beta_j^2`,
  λ = (1 − θ)/θ: exact for the Gaussian family; otherwise second order in the
  contributions :math:`x_{ij}\beta_j`, not in λ (its relative error does not vanish as
  keep → 1);
* :func:`gaussian_penalty` -- the "fast dropout" approximation of Wang & Manning [2]:
  :math:`\tilde x_i\cdot\beta` replaced by a normal of the same mean and variance,
  integrated by Gauss–Hermite quadrature;
* :func:`solve_dropout` -- the dropout problem (exact, a sample average over fixed masks,
  or the quadratic approximation by reweighted ridge to a fixed point);
* :func:`dropout_sgd` -- stochastic gradient descent with real masks, which lands on the
  solution of :func:`solve_dropout`.

Budgets. The exact penalty enumerates at most :data:`MAX_EXACT_FEATURES` = 16 features
(65,536 masks; with 569 samples about 2.5 s). The exact problem has one cvxpy term per
sample and mask, :math:`n 2^d`; more than :data:`MAX_EXACT_TERMS` are refused (use
``method="saa"``).

References
----------
[1] S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS 2013.
[2] S. Wang, C. Manning, Fast dropout training, ICML 2013.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from . import _sgd
from ._overflow import finite_result
from ._results import freeze_arrays
from ._validation import (
    InvalidParameterError,
    SeedLike,
    as_generator,
    check_array,
    check_choice,
    check_int,
    check_keep,
    check_n_masks,
    check_real,
)
from .implied import SolverFailedError
from .montecarlo import Estimate, estimate, min_draws

__all__ = [
    "FAMILIES",
    "FIXED_POINT_TOL",
    "LBFGS_GTOL",
    "MAX_EXACT_FEATURES",
    "MAX_EXACT_TERMS",
    "MAX_FIXED_POINT_STEPS",
    "GLMSolution",
    "GLMTrainingResult",
    "dropout_penalty",
    "dropout_sgd",
    "gaussian_penalty",
    "quadratic_penalty",
    "solve_dropout",
]

Family = Literal["gaussian", "logistic", "poisson"]
#: The exponential families: cumulant z²/2, log(1 + e^z), e^z.
FAMILIES = ("gaussian", "logistic", "poisson")
#: The most features whose masks :func:`dropout_penalty` enumerates (2^16 masks).
MAX_EXACT_FEATURES = 16
#: The most terms (samples × masks) of the exact problem given to cvxpy. Measured
#: (Clarabel 0.11, tolerances 1e-10, a shared 2-core machine): logistic, 2^14 terms in
#: 5-10 s, 2^15 in 8-20 s (d = 11 on 16 samples: 9.6 s; d = 9 on 64 samples: 8.0 s).
MAX_EXACT_TERMS = 1 << 15
#: Relative change of (β, b) between two reweighted-ridge steps at which the quadratic
#: method stops; well above the solver's accuracy (1e-12 tolerances), so reachable.
FIXED_POINT_TOL = 1e-7
#: Reweighted-ridge steps after which the quadratic method gives up.
MAX_FIXED_POINT_STEPS = 200
_CHUNK = 1 << 22  # scores computed at once (32 MB of float64)
_RECORDED_TERMS = 1 << 20  # dropout_sgd records the exact objective up to n·2^d of these


_SCORES = (
    "a cumulant of the scores z = x·β + b left float64 (e^z does at z ≈ 709.8, "
    "z²/2 at |z| ≈ 1.9e154); the penalty of the rescaled problem is not a simple "
    "multiple of this one"
)


# ----------------------------------------------------------------------------- the families


def cumulant(z: np.ndarray, family: str) -> np.ndarray:
    """A(z) of the family, stable for large |z|."""
    if family == "gaussian":
        return 0.5 * z * z
    if family == "logistic":
        return np.logaddexp(0.0, z)
    return np.exp(z)


def mean_function(z: np.ndarray, family: str) -> np.ndarray:
    """A'(z): the mean of the response at score z."""
    if family == "gaussian":
        return z
    if family == "logistic":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid without overflow
    return np.exp(z)


def variance_function(z: np.ndarray, family: str) -> np.ndarray:
    """A''(z): the variance of the response at score z."""
    if family == "gaussian":
        return np.ones_like(z)
    if family == "logistic":
        s = mean_function(z, family)
        return s * (1.0 - s)
    return np.exp(z)


def _cvx_cumulant(z: cp.Expression, family: str) -> cp.Expression:
    if family == "gaussian":
        return 0.5 * cp.square(z)
    if family == "logistic":
        return cp.logistic(z)
    return cp.exp(z)


# ----------------------------------------------------------------------------- checks


def _check_model(
    beta: object, X: object, keep: object, family: object, offset: object
) -> tuple[np.ndarray, np.ndarray, float, str, float]:
    beta = check_array(beta, "beta", ndim=1)
    X = check_array(X, "X", ndim=2)
    if X.shape[1] != beta.shape[0]:
        raise InvalidParameterError(
            f"`beta` must have one entry per feature (column of `X`, {X.shape[1]}), "
            f"got shape {beta.shape}"
        )
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    offset = check_real(offset, "offset")
    return beta, X, keep, str(family), offset


def _check_labels(y: object, X: np.ndarray, family: str) -> np.ndarray:
    y = check_array(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise InvalidParameterError(
            f"`y` must have one label per sample (row of `X`, {X.shape[0]}), got shape {y.shape}"
        )
    if family == "logistic" and not np.all((y == 0.0) | (y == 1.0)):
        raise InvalidParameterError("`y` must hold labels 0 and 1 for the logistic family")
    if family == "poisson" and np.any(y < 0.0):
        raise InvalidParameterError("`y` must hold non-negative counts for the poisson family")
    return y


# ----------------------------------------------------------------------------- penalties


def mask_matrix(d: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows ``start..stop`` of the (2^d, d) 0/1 matrix of every mask (row k: bits of k)."""
    rows = np.arange(start, 1 << d if stop is None else stop, dtype=np.int64)
    return ((rows[:, None] >> np.arange(d)) & 1).astype(np.float64)


def mask_probabilities(masks: np.ndarray, keep: float) -> np.ndarray:
    """P(r = m) = θ^{|m|} (1 − θ)^{d − |m|} of each row m of ``masks``."""
    kept = masks.sum(axis=1)
    return keep**kept * (1.0 - keep) ** (masks.shape[1] - kept)


def _exact_expected_cumulant(
    contrib: np.ndarray, keep: float, offset: float, family: str
) -> np.ndarray:
    """E_r A(Σ_j c_ij r_j/θ + b) for each row i of ``contrib`` (n, d'), by enumeration."""
    n, d = contrib.shape
    total = np.zeros(n)
    chunk = max(1, _CHUNK // max(n, 1))
    for start in range(0, 1 << d, chunk):
        masks = mask_matrix(d, start, min(start + chunk, 1 << d))
        scores = contrib @ masks.T / keep + offset  # (n, masks)
        total += cumulant(scores, family) @ mask_probabilities(masks, keep)
    return total


def _exact_penalty(beta, X, keep, offset, family) -> float:
    contrib = X * beta
    # only features with a nonzero contribution somewhere move the score
    active = np.flatnonzero(np.any(contrib != 0.0, axis=0))
    if active.size > MAX_EXACT_FEATURES:
        raise InvalidParameterError(
            f"`method`='exact' enumerates 2^d masks of the d features that reach the score, "
            f"at most d = {MAX_EXACT_FEATURES}; here d = {active.size}: use "
            "method='monte_carlo'"
        )
    if family == "poisson":
        return _poisson_penalty(contrib[:, active], X @ beta + offset, keep)
    plain = cumulant(X @ beta + offset, family)
    expected = _exact_expected_cumulant(contrib[:, active], keep, offset, family)
    return float(np.mean(expected - plain))


def _poisson_penalty(contrib: np.ndarray, scores: np.ndarray, keep: float) -> float:
    r"""R for A = exp, in logs, so that it is finite wherever R is.

    The masks are independent, so :math:`\mathbb E_r e^{\tilde x_i\cdot\beta + b} = e^{z_i}
    e^{G_i}` with :math:`G_i = \sum_j \log(1 - \theta + \theta e^{c_{ij}/\theta}) - c_{ij}
    \ge 0` (:math:`c_{ij} = x_{ij}\beta_j`, :math:`z_i` the score), and
    :math:`R = \frac1n \sum_i e^{z_i + \log(e^{G_i} - 1)}` is summed as a log-sum-exp:
    e^z alone overflows at z ≈ 709.8, and e^z − e^z was NaN.
    """
    if keep == 1.0:
        return 0.0
    g = np.logaddexp(np.log1p(-keep), np.log(keep) + contrib / keep) - contrib
    growth = np.maximum(g, 0.0).sum(axis=1)  # each term is >= 0 (Jensen) up to rounding
    log_growth = np.empty_like(growth)  # log(e^G - 1), accurate for small and large G
    big = growth > 1.0
    log_growth[big] = growth[big] + np.log(-np.expm1(-growth[big]))
    with np.errstate(divide="ignore"):  # G = 0 (a sample no feature reaches): log 0 = -inf
        log_growth[~big] = np.log(np.expm1(growth[~big]))
    log_total = special.logsumexp(scores + log_growth)
    with np.errstate(over="ignore"):  # beyond float64: inf, which finite_result refuses
        return float(np.exp(log_total - np.log(len(scores))))


def _mc_penalty(beta, X, keep, offset, family, n_masks, seed) -> Estimate:
    contrib = X * beta
    plain = float(np.mean(cumulant(X @ beta + offset, family)))
    need = min_draws([keep])
    n_masks = check_n_masks(n_masks, need, f"keep = {keep}, Bernoulli input masks")
    n, d = X.shape

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        kept = rng.random((size, n, d)) < keep
        scores = np.einsum("snd,nd->sn", kept, contrib) / keep + offset
        return np.mean(cumulant(scores, family), axis=1) - plain

    batch = int(np.clip(_CHUNK // (4 * n * d), 1, 4096))
    return estimate(draw, n_masks=n_masks, rng=seed, batch_size=batch, min_masks=max(1000, need))


@finite_result("the dropout penalty of the GLM", _SCORES)
def dropout_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    method: Literal["exact", "monte_carlo"] = "exact",
    offset: float = 0.0,
    n_masks: int = 2000,
    seed: SeedLike = 0,
) -> float | Estimate:
    r"""The dropout penalty of a GLM: what input dropout adds to the mean loss.

    .. math:: R(\beta, b) = \frac1n \sum_{i=1}^n \mathbb E_r A(\tilde x_i\cdot\beta + b)
              - A(x_i\cdot\beta + b), \qquad \tilde x_i = x_i \circ r_i/\theta,

    :math:`r_{ij}` i.i.d. Bernoulli(θ). Label-free: :math:`\mathbb E_r L_r = L + R` for
    any labels. Non-negative (Jensen), zero at θ = 1.

    Parameters
    ----------
    beta : array (d,)
        Coefficients.
    X : array (n, d)
        Inputs, one sample per row.
    keep : float
        Retain probability θ in (0, 1].
    family : {"gaussian", "logistic", "poisson"}
        Cumulant A: z²/2, log(1 + e^z), e^z.
    method : {"exact", "monte_carlo"}
        ``"exact"`` enumerates the :math:`2^{d'}` masks of the :math:`d'` features with a
        nonzero :math:`x_{ij}\beta_j` (at most :data:`MAX_EXACT_FEATURES`), chunked;
        ``"monte_carlo"`` averages ``n_masks`` draws, each a fresh mask for every sample.
    offset : float
        The intercept b, added to every score; never dropped.
    n_masks : int
        Monte Carlo draws; at least :func:`regtheory.montecarlo.min_draws` of ``keep``.
    seed : int or numpy.random.Generator
        Source of the Monte Carlo masks (same seed, same estimate).

    Returns
    -------
    float or Estimate
        The exact value, or an :class:`regtheory.montecarlo.Estimate`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [-1.0, 0.5]])
    >>> beta = np.array([0.3, -0.2])
    >>> lam = (1 - 0.8) / 0.8   # squared loss: exactly (λ/2) mean_i Σ_j x_ij² β_j²
    >>> exact = dropout_penalty(beta, X, 0.8, family="gaussian")
    >>> bool(np.isclose(exact, lam / 2 * np.mean((X**2) @ beta**2)))
    True

    See Also
    --------
    quadratic_penalty, gaussian_penalty, solve_dropout
    """
    beta, X, keep, fam, offset = _check_model(beta, X, keep, family, offset)
    check_choice(method, "method", ("exact", "monte_carlo"))
    n_masks = check_int(n_masks, "n_masks", minimum=2)
    rng = as_generator(seed)
    if method == "exact":
        return _exact_penalty(beta, X, keep, offset, fam)
    return _mc_penalty(beta, X, keep, offset, fam, n_masks, rng)


@finite_result("the quadratic (adaptive L2) penalty of the GLM", _SCORES)
def quadratic_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    offset: float = 0.0,
) -> float:
    r"""Wager et al.'s second-order ("adaptive L2") approximation of the dropout penalty.

    .. math:: R_q(\beta, b) = \frac{\lambda}{2}\, \frac1n \sum_i A''(x_i\cdot\beta + b)
              \sum_j x_{ij}^2 \beta_j^2, \qquad \lambda = \frac{1-\theta}{\theta},

    the second-order Taylor expansion of A around the mask-free score, whose variance
    under the masks is :math:`\lambda\sum_j x_{ij}^2\beta_j^2`. Exact for the Gaussian
    family (A''' = 0). Otherwise it is second order in the contributions
    :math:`c_{ij} = x_{ij}\beta_j` (scaling β by t leaves an error of order t³), but not in
    λ: every cumulant of a mask entry is of order 1 − keep, so as keep → 1 the error
    shrinks like λ, not λ², and its relative error tends to a constant (THEORY §8).

    Parameters
    ----------
    beta, X, keep, family, offset
        As in :func:`dropout_penalty`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X, beta = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([0.3, -0.2])
    >>> q = quadratic_penalty(beta, X, 0.8, family="gaussian")
    >>> bool(np.isclose(q, dropout_penalty(beta, X, 0.8, family="gaussian")))
    True

    References
    ----------
    S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS
    2013, eq. (8).
    """
    beta, X, keep, fam, offset = _check_model(beta, X, keep, family, offset)
    lam = (1.0 - keep) / keep
    curvature = variance_function(X @ beta + offset, fam)
    return float(0.5 * lam * np.mean(curvature * ((X * X) @ (beta * beta))))


@finite_result("the Gaussian (fast dropout) penalty of the GLM", _SCORES)
def gaussian_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    offset: float = 0.0,
    n_nodes: int = 64,
) -> float:
    r"""The "fast dropout" approximation: the dropped-out score as a normal variable.

    Wang & Manning replace :math:`\tilde x_i\cdot\beta` by a normal variable with its mean
    :math:`\mu_i = x_i\cdot\beta` and variance :math:`s_i^2 = \lambda\sum_j x_{ij}^2
    \beta_j^2` (a sum of many independent terms, by the central limit theorem):

    .. math:: R_g(\beta, b) = \frac1n \sum_i \mathbb E_{t\sim N(0,1)} A(\mu_i + b + s_i t)
              - A(\mu_i + b),

    the expectation by Gauss–Hermite quadrature with ``n_nodes`` nodes
    (``numpy.polynomial.hermite_e``, weight :math:`e^{-t^2/2}`). Exact for the Gaussian
    family; for the Poisson family the closed form is :math:`e^{\mu+b}(e^{s^2/2} - 1)`.

    Parameters
    ----------
    beta, X, keep, family, offset
        As in :func:`dropout_penalty`.
    n_nodes : int
        Quadrature nodes (exact for polynomials of degree below 2·n_nodes).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X, beta = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([0.3, -0.2])
    >>> g = gaussian_penalty(beta, X, 0.8, family="gaussian")
    >>> bool(np.isclose(g, dropout_penalty(beta, X, 0.8, family="gaussian")))
    True

    References
    ----------
    S. Wang, C. Manning, Fast dropout training, ICML 2013.
    """
    beta, X, keep, fam, offset = _check_model(beta, X, keep, family, offset)
    n_nodes = check_int(n_nodes, "n_nodes")
    lam = (1.0 - keep) / keep
    mu = X @ beta + offset
    s = np.sqrt(lam * ((X * X) @ (beta * beta)))
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / np.sqrt(2.0 * np.pi)
    expected = cumulant(mu[:, None] + s[:, None] * nodes, fam) @ weights
    return float(np.mean(expected - cumulant(mu, fam)))


# ----------------------------------------------------------------------------- solutions


@dataclass(frozen=True)
class GLMSolution:
    r"""A solution of the dropout problem of a GLM (:func:`solve_dropout`).

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
        What the solver said (``"optimal"``; the closed form: ``"closed_form"``).
    solve_time : float
        Wall-clock seconds, formulation included.
    method, family : str
        What was solved.
    keep : float
        Retain probability θ.
    n_terms : int
        Terms (samples × masks) of the solved objective.
    iterations : int
        Convex solves done (the reweighted-ridge steps of ``"quadratic"``; else 1).
    gradient_norm : float
        Euclidean norm of the gradient of the solved objective in (β, b), computed in
        NumPy from the solution: a check of the solver independent of its status.
    solver : str
        The cvxpy solver whose solution was accepted (``"closed_form"`` for the
        quadratic method on the Gaussian family).
    """

    beta: np.ndarray
    intercept: float
    objective: float
    objective_stderr: float | None
    status: str
    solve_time: float
    method: str
    family: str
    keep: float
    n_terms: int
    iterations: int
    gradient_norm: float
    solver: str

    def __post_init__(self) -> None:
        freeze_arrays(self)


@dataclass(frozen=True)
class _Design:
    """The solved objective as weighted terms: Σ_k w_k A(rows_k·β + b) − c·β − ȳ b."""

    rows: np.ndarray  # (terms, d): x̃ of each sample under each mask
    weights: np.ndarray  # (terms,)
    linear: np.ndarray  # (d,): mean_i y_i x_i
    y_mean: float
    draw: np.ndarray | None  # (terms,): which mask draw a term belongs to (saa)

    def objective(self, beta: np.ndarray, b: float, family: str) -> float:
        expected = self.weights @ cumulant(self.rows @ beta + b, family)
        return float(expected - self.linear @ beta - self.y_mean * b)

    def gradient(self, beta: np.ndarray, b: float, family: str, intercept: bool) -> np.ndarray:
        resid = self.weights * mean_function(self.rows @ beta + b, family)
        grad = resid @ self.rows - self.linear
        if intercept:
            grad = np.append(grad, resid.sum() - self.y_mean)
        return grad


def _exact_design(X: np.ndarray, y: np.ndarray, keep: float) -> _Design:
    n, d = X.shape
    masks = mask_matrix(d)
    p = mask_probabilities(masks, keep)
    keep_rows = p > 0.0  # keep = 1: the one mask of ones
    masks, p = masks[keep_rows], p[keep_rows]
    if n * len(masks) > MAX_EXACT_TERMS:
        raise InvalidParameterError(
            f"`method`='exact' needs n·2^d = {n}·{len(masks)} = {n * len(masks)} terms, "
            f"more than the {MAX_EXACT_TERMS} given to cvxpy: use method='saa' (any d), "
            "or fewer samples or features"
        )
    rows = (X[:, None, :] * masks[None, :, :] / keep).reshape(-1, d)
    weights = np.tile(p, n) / n
    return _Design(rows, weights, y @ X / n, float(np.mean(y)), None)


def _saa_design(X: np.ndarray, y: np.ndarray, keep: float, n_masks: int, rng) -> _Design:
    n, d = X.shape
    kept = rng.random((n_masks, n, d)) < keep  # draw k: a fresh mask for every sample
    rows = (kept * X[None] / keep).reshape(-1, d)
    weights = np.full(n_masks * n, 1.0 / (n_masks * n))
    draw = np.repeat(np.arange(n_masks), n)
    return _Design(rows, weights, y @ X / n, float(np.mean(y)), draw)


LBFGS = "L-BFGS-B"
#: Gradient norm at which the L-BFGS path calls a solution optimal: on 57,000 SAA terms the
#: rounding of the objective stops L-BFGS-B near 1e-8, so 1e-8 itself is not always reached.
LBFGS_GTOL = 1e-7


def _lbfgs(
    design: _Design, family: str, intercept: bool, ridge: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, float, str, str]:
    """Minimise design.objective + Σ_j ridge_j β_j² with scipy's L-BFGS-B and the NumPy
    gradient; 'optimal' when the gradient norm reaches :data:`LBFGS_GTOL`.
    """
    d = design.rows.shape[1]

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, b = theta[:d], float(theta[d]) if intercept else 0.0
        grad = design.gradient(beta, b, family, intercept)
        grad[:d] += 2.0 * ridge * beta
        return design.objective(beta, b, family) + float(ridge @ beta**2), grad

    options = {"maxiter": 20_000, "maxcor": 30, "gtol": LBFGS_GTOL / 10, "ftol": 0.0}
    result = optimize.minimize(fun, start, jac=True, method=LBFGS, options=options)
    norm = float(np.linalg.norm(fun(result.x)[1]))
    if not norm <= LBFGS_GTOL:
        raise SolverFailedError(
            "not_converged",
            LBFGS,
            f"L-BFGS-B stopped ({result.message}) with gradient norm {norm:.1e} above "
            f"{LBFGS_GTOL:.0e}: the objective may have no minimiser (labels separable in a "
            "direction no mask spoils, or too few SAA masks), or be badly scaled",
        )
    theta = result.x
    return theta[:d], float(theta[d]) if intercept else 0.0, "optimal", LBFGS


def _solve_design(
    design: _Design, family: str, intercept: bool, ladder: list[tuple[str, dict]]
) -> tuple[np.ndarray, float, str, str]:
    d = design.rows.shape[1]
    if ladder[0][0] == LBFGS:
        return _lbfgs(design, family, intercept, np.zeros(d), np.zeros(d + intercept))
    beta = cp.Variable(d)
    b = cp.Variable() if intercept else cp.Constant(0.0)
    expected = design.weights @ _cvx_cumulant(design.rows @ beta + b, family)
    problem = cp.Problem(cp.Minimize(expected - design.linear @ beta - design.y_mean * b))
    status, name = _solve(problem, ladder)
    b_value = float(np.asarray(b.value, dtype=float)) if intercept else 0.0
    return np.asarray(beta.value, dtype=float), b_value, status, name


#: Clarabel's tolerances for the exponential-cone problems here: at 1e-12 (the implied
#: problems' setting) it ends 'optimal_inaccurate' on the larger exact problems after twice
#: the iterations; at 1e-10 the gradient at the solution is below 1e-8 (measured), against
#: 1e-5 at its 1e-8 defaults on a Poisson problem.
CLARABEL_GLM_OPTIONS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _ladder(solver: object, solver_options: object) -> list[tuple[str, dict]]:
    if solver is not None and not isinstance(solver, str):
        raise InvalidParameterError(
            f"`solver` must be a cvxpy solver name (str), got {type(solver).__name__}"
        )
    if solver_options is not None and not isinstance(solver_options, dict):
        raise InvalidParameterError(
            f"`solver_options` must be a dict, got {type(solver_options).__name__}"
        )
    if solver is None and solver_options is None:
        return [("CLARABEL", dict(CLARABEL_GLM_OPTIONS)), ("CLARABEL", {}), ("SCS", {})]
    name = (solver or "CLARABEL").upper()
    if name == LBFGS:
        return [(LBFGS, {})]
    if name not in cp.installed_solvers():
        raise InvalidParameterError(
            f"`solver` must be one of the installed cvxpy solvers {cp.installed_solvers()}, "
            f"got {solver!r}"
        )
    return [(name, dict(solver_options or {}))]


def _solve(problem: cp.Problem, ladder: list[tuple[str, dict]]) -> tuple[str, str]:
    """Solve down ``ladder`` until a solver says 'optimal'; (status, solver) of that rung."""
    tried = []
    for name, options in ladder:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=name, **options)
            status = str(problem.status)
        except cp.error.SolverError:
            status = "solver_error"
        if status == cp.OPTIMAL:
            return status, name
        tried.append(f"{name} {options or '(defaults)'}: {status}")
        if status == cp.UNBOUNDED:
            raise SolverFailedError(
                status,
                name,
                "the objective is unbounded below: the labels are separable by a direction "
                "that no mask spoils (dropout does not bound every direction; e.g. one "
                "feature that separates alone), so there is no minimiser",
            )
    raise SolverFailedError(
        status,
        name,
        f"no solver reached 'optimal' (tried: {'; '.join(tried)}); standardise the features "
        "or pass another `solver`",
    )


def _saa_stderr(design: _Design, beta: np.ndarray, b: float, family: str) -> float:
    assert design.draw is not None
    terms = design.weights * cumulant(design.rows @ beta + b, family)
    per_draw = np.bincount(design.draw, weights=terms) * (design.draw.max() + 1)
    return float(np.std(per_draw, ddof=1) / np.sqrt(per_draw.size))


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


def _solve_quadratic(X, y, keep, family, intercept, ladder):
    n, d = X.shape
    beta, b = np.zeros(d), 0.0
    if family == "gaussian":
        beta, b = _ridge_closed_form(X, y, _ridge_weights(X, beta, b, keep, family), intercept)
        return beta, b, "closed_form", "closed_form", 1
    if ladder[0][0] == LBFGS:
        return _lbfgs_fixed_point(X, y, keep, family, intercept)
    var_beta = cp.Variable(d)
    var_b = cp.Variable() if intercept else cp.Constant(0.0)
    c = cp.Parameter(d, nonneg=True)
    z = X @ var_beta + var_b
    loss = cp.sum(_cvx_cumulant(z, family)) / n - (y @ X / n) @ var_beta - np.mean(y) * var_b
    problem = cp.Problem(cp.Minimize(loss + c @ cp.square(var_beta)))
    for step in range(1, MAX_FIXED_POINT_STEPS + 1):
        c.value = _ridge_weights(X, beta, b, keep, family)
        status, name = _solve(problem, ladder)
        new_beta = np.asarray(var_beta.value, dtype=float)
        new_b = float(np.asarray(var_b.value, dtype=float)) if intercept else 0.0
        change = np.max(np.abs(np.append(new_beta - beta, new_b - b)))
        scale = 1.0 + np.max(np.abs(np.append(new_beta, new_b)))
        beta, b = new_beta, new_b
        if change <= FIXED_POINT_TOL * scale:
            return beta, b, status, name, step
    raise _not_fixed(change)


def _lbfgs_fixed_point(X, y, keep, family, intercept):
    n, d = X.shape
    design = _Design(X, np.full(n, 1.0 / n), y @ X / n, float(np.mean(y)), None)
    theta = np.zeros(d + intercept)
    for step in range(1, MAX_FIXED_POINT_STEPS + 1):
        c = _ridge_weights(X, theta[:d], float(theta[d]) if intercept else 0.0, keep, family)
        beta, b, status, name = _lbfgs(design, family, intercept, c, theta)  # warm start
        new = np.append(beta, b) if intercept else beta
        change = np.max(np.abs(new - theta))
        theta = new
        if change <= FIXED_POINT_TOL * (1.0 + np.max(np.abs(theta))):
            return beta, b, status, name, step
    raise _not_fixed(change)


def _not_fixed(change: float) -> SolverFailedError:
    return SolverFailedError(
        "fixed_point_not_reached",
        "reweighted ridge",
        f"the reweighted ridge steps of the quadratic method moved (β, b) by {change:.1e} "
        f"(relative) after {MAX_FIXED_POINT_STEPS} steps, above {FIXED_POINT_TOL:.0e}: the "
        "adaptive-L2 weights oscillate at this keep; try a keep closer to 1 or method='exact'",
    )


def _quadratic_solution(X, y, keep, family, intercept, ladder) -> tuple:
    beta, b, status, name, steps = _solve_quadratic(X, y, keep, family, intercept, ladder)
    n = X.shape[0]
    design = _Design(X, np.full(n, 1.0 / n), y @ X / n, float(np.mean(y)), None)
    c = _ridge_weights(X, beta, b, keep, family)
    objective = design.objective(beta, b, family) + float(c @ beta**2)
    grad = design.gradient(beta, b, family, intercept)
    grad[: X.shape[1]] += 2.0 * c * beta  # the curvature held at the solution
    return beta, b, objective, None, status, name, n, steps, grad


def _cvx_solution(design: _Design, family, intercept, ladder) -> tuple:
    beta, b, status, name = _solve_design(design, family, intercept, ladder)
    stderr = None if design.draw is None else _saa_stderr(design, beta, b, family)
    objective = design.objective(beta, b, family)
    grad = design.gradient(beta, b, family, intercept)
    return beta, b, objective, stderr, status, name, len(design.weights), 1, grad


def solve_dropout(
    X: ArrayLike,
    y: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    method: Literal["exact", "saa", "quadratic"] = "exact",
    intercept: bool = True,
    n_masks: int = 100,
    seed: SeedLike = 0,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> GLMSolution:
    r"""Minimise the dropout objective of a GLM with cvxpy: exactly, by sampling, or to second order.

    .. math:: \min_{\beta, b}\ \frac1n \sum_i \mathbb E_r A(\tilde x_i\cdot\beta + b)
              - y_i (x_i\cdot\beta + b)

    * ``"exact"``: the expectation as the sum over all :math:`2^d` masks weighted by
      their probabilities, :math:`n 2^d` terms (at most :data:`MAX_EXACT_TERMS`);
    * ``"saa"``: the sample average over ``n_masks`` fixed draws, each a fresh mask for
      every sample (:math:`n \cdot` ``n_masks`` terms, any d), with the sampling standard
      error of the objective at the solution;
    * ``"quadratic"``: Wager et al.'s adaptive L2, :math:`L(\beta, b) + \sum_j c_j
      \beta_j^2` with :math:`c_j = \tfrac12\lambda\frac1n\sum_i A''(x_i\cdot\hat\beta +
      \hat b) x_{ij}^2` at the previous solution (from β = 0), re-solved until (β, b)
      moves by at most :data:`FIXED_POINT_TOL` relative to 1 + max|(β, b)|; a closed
      form for the Gaussian family, where the weights do not depend on β.

    Each problem is convex (an expectation of convex functions of (β, b)); cvxpy
    solves it (``cp.logistic``, ``cp.exp``, ``cp.square``) and only an ``optimal``
    status is accepted; the result carries the gradient norm at the solution (NumPy).
    The intercept is neither dropped nor penalized.

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
    seed : int or numpy.random.Generator
        Source of the ``"saa"`` masks.
    solver : str, optional
        cvxpy solver name. By default Clarabel at tolerances 1e-10, then at its defaults,
        then SCS, until one says ``optimal``; a named solver runs once, at its defaults.
        ``"L-BFGS-B"``: scipy on the same objective, 'optimal' at gradient norm
        :data:`LBFGS_GTOL`; far faster than Clarabel for many terms.
    solver_options : dict, optional
        Options for the one solve with ``solver`` (Clarabel when no solver is named).

    Returns
    -------
    GLMSolution

    Raises
    ------
    regtheory.implied.SolverFailedError
        If no solver reaches an ``optimal`` status, or the quadratic method's
        reweighted ridge does not reach its fixed point in
        :data:`MAX_FIXED_POINT_STEPS` steps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 3))
    >>> y = (X @ [1.0, -1.0, 0.5] + rng.standard_normal(40) > 0).astype(float)
    >>> sol = solve_dropout(X, y, 0.8)
    >>> sol.status, sol.n_terms, bool(sol.gradient_norm < 1e-6)
    ('optimal', 320, True)

    References
    ----------
    S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS 2013.
    """
    start = time.perf_counter()
    X = check_array(X, "X", ndim=2)
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    y = _check_labels(y, X, str(family))
    check_choice(method, "method", ("exact", "saa", "quadratic"))
    n_masks = check_int(n_masks, "n_masks", minimum=2)
    rng = as_generator(seed)
    options = (str(family), bool(intercept), _ladder(solver, solver_options))
    beta, b, objective, stderr, status, name, n_terms, steps, grad = _METHODS[str(method)](
        X, y, keep, n_masks, rng, options
    )
    elapsed = time.perf_counter() - start
    return GLMSolution(
        beta, b, objective, stderr, status, elapsed, str(method), str(family), keep, n_terms,
        steps, float(np.linalg.norm(grad)), name,
    )  # fmt: skip


_Method = Callable[[np.ndarray, np.ndarray, float, int, np.random.Generator, tuple], tuple]
_METHODS: dict[str, _Method] = {
    "exact": lambda X, y, keep, n_masks, rng, o: _cvx_solution(_exact_design(X, y, keep), *o),
    "saa": lambda X, y, keep, n_masks, rng, o: _cvx_solution(
        _saa_design(X, y, keep, n_masks, rng), *o
    ),
    "quadratic": lambda X, y, keep, n_masks, rng, o: _quadratic_solution(X, y, keep, *o),
}


# ----------------------------------------------------------------------------- SGD


@dataclass(frozen=True, eq=False)
class GLMTrainingResult:
    r"""Outcome of :func:`dropout_sgd`: the final coefficients and a history.

    Attributes
    ----------
    beta : array (d,)
        Final coefficients.
    intercept : float
        Final intercept (0 when not fitted).
    steps : int array (n_records,)
        Gradient steps taken at each record, from 0 to ``n_steps``.
    objective : array (n_records,)
        The expected dropout objective :math:`L + R` on the data at each record, exact
        by enumeration when :math:`n 2^d \le 2^{20}` (a few milliseconds a record); else
        the mean sampled minibatch loss since the previous record.
    betas : array (n_records, d)
        Coefficients at each record.
    family : str
    keep, n_steps, lr, lr_decay, batch_size, record_every, seed
        The settings of the run (``seed`` None for a Generator).
    """

    beta: np.ndarray
    intercept: float
    steps: np.ndarray
    objective: np.ndarray
    betas: np.ndarray
    family: str
    keep: float
    n_steps: int
    lr: float
    lr_decay: float | None
    batch_size: int
    record_every: int
    seed: int | None


def _sgd_step(X, y, keep, family, intercept):
    def step(params, rows, rng):
        beta, b = params
        Xs, ys = (X, y) if rows is None else (X[rows], y[rows])
        dropped = Xs * (rng.random(Xs.shape) < keep) / keep  # one real mask per sample
        z = dropped @ beta + b[0]
        loss = float(np.mean(cumulant(z, family) - ys * z))
        resid = (mean_function(z, family) - ys) / len(ys)
        grad_b = np.array([resid.sum()]) if intercept else np.zeros(1)
        return loss, (resid @ dropped, grad_b)

    return step


def dropout_sgd(
    X: ArrayLike,
    y: ArrayLike,
    keep: float,
    steps: int,
    lr: float,
    seed: SeedLike,
    *,
    family: Family = "logistic",
    intercept: bool = True,
    batch_size: int | None = None,
    lr_decay: float | None = None,
    record_every: int | None = None,
) -> GLMTrainingResult:
    r"""Fit a GLM by SGD with real input dropout, as a deep-learning framework would.

    From β = 0, b = 0, each step draws a minibatch, one mask :math:`r_k` per sample, and
    steps along the gradient of the sampled loss

    .. math:: \ell_t = \frac1{|B_t|}\sum_{k \in B_t} A(\tilde x_k\cdot\beta + b)
              - y_k(\tilde x_k\cdot\beta + b), \qquad \tilde x_k = x_k\circ r_k/\theta,

    whose expectation is the dropout objective :math:`L + R` minimised by
    :func:`solve_dropout`; the step :math:`\eta/(1 + t/\tau)` decays with ``lr_decay`` = τ
    (Robbins–Monro), so the iterates settle on its solution. The loop is the one of
    :mod:`regtheory.training` (minibatch, then masks, from the one generator).

    Parameters
    ----------
    X, y, keep, family, intercept
        As in :func:`solve_dropout`.
    steps : int
        Gradient steps.
    lr : float
        Initial step size η > 0.
    seed : int or numpy.random.Generator
        Source of minibatches and masks.
    batch_size : int, optional
        Samples per step (default all; masks are still sampled).
    lr_decay : float, optional
        Decay time τ of the step size; ``None`` keeps it constant.
    record_every : int, optional
        Record every this many steps (default ⌈steps/100⌉).

    Returns
    -------
    GLMTrainingResult

    Raises
    ------
    FloatingPointError
        If the loss or the coefficients become non-finite: ``lr`` is too large.
    """
    X = check_array(X, "X", ndim=2)
    keep = check_keep(keep)
    check_choice(family, "family", FAMILIES)
    family = str(family)  # type: ignore[assignment]
    y = _check_labels(y, X, family)
    schedule = _sgd.check_schedule(steps, lr, 1.0, lr_decay, batch_size, record_every, len(X))
    rng = as_generator(seed)
    n, d = X.shape
    objective = None
    if n << d <= _RECORDED_TERMS:
        design = _Design(X, np.full(n, 1.0 / n), y @ X / n, float(np.mean(y)), None)

        def objective(params: _sgd.Params) -> float:
            beta, b = params[0], float(params[1][0])
            penalty = _exact_penalty(beta, X, keep, b, family)
            return design.objective(beta, b, family) + penalty

    history = _sgd.run(
        (np.zeros(d), np.zeros(1)),
        _sgd_step(X, y, keep, family, bool(intercept)),
        schedule,
        n,
        rng,
        objective,
        lambda params: [params[0]],
    )
    return GLMTrainingResult(
        beta=history.params[0],
        intercept=float(history.params[1][0]),
        steps=history.steps,
        objective=history.loss,
        betas=history.snapshots[0],
        family=family,
        keep=keep,
        n_steps=schedule.steps,
        lr=schedule.lr,
        lr_decay=schedule.lr_decay,
        batch_size=schedule.batch_size,
        record_every=schedule.record_every,
        seed=_sgd.seed_record(seed),
    )
