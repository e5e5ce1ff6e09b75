"""The dropout penalty of a GLM: exact by enumeration, Monte Carlo, and two approximations."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from .._grammar import RngLike, as_rng, check_method, transition_to_rng
from .._overflow import finite_result
from .._references import cites
from .._results import Penalty
from .._validation import InvalidParameterError, check_int, check_n_masks
from ..montecarlo import default_n_masks, estimate, min_draws
from ._families import Family, check_model, cumulant, variance_function

#: The most features whose masks :func:`dropout_penalty` enumerates (2^16 masks).
MAX_EXACT_FEATURES = 16
_SCORES = (
    "a cumulant of the scores z = x·β + b left float64 (e^z does at z ≈ 709.8, "
    "z²/2 at |z| ≈ 1.9e154); the penalty of the rescaled problem is not a simple "
    "multiple of this one"
)
_CHUNK = 1 << 22  # scores computed at once (32 MB of float64)
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


def exact_penalty(beta, X, keep, offset, family) -> float:
    contrib = X * beta
    # only features with a nonzero contribution somewhere move the score
    active = np.flatnonzero(np.any(contrib != 0.0, axis=0))
    if active.size > MAX_EXACT_FEATURES:
        raise InvalidParameterError(
            f"`method`='exact' enumerates 2^d masks of the d features that reach the score, "
            f"at most d = {MAX_EXACT_FEATURES}; here d = {active.size}: use "
            "method='mc'"
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


def _mc_penalty(beta, X, keep, offset, family, n_masks, rng) -> Penalty:
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
    return estimate(draw, n_masks=n_masks, rng=rng, batch_size=batch, min_masks=max(1000, need))


#: The values of ``method=`` of :func:`dropout_penalty`: the package's three, then the two
#: approximations.
PENALTY_METHODS = ("exact", "mc", "auto", "quadratic", "gaussian")


def _method(method: object) -> str:
    if method == "monte_carlo":  # the name before the package's grammar
        warnings.warn(
            "method='monte_carlo' is deprecated and will be removed in a future minor "
            "release; pass method='mc'",
            DeprecationWarning,
            stacklevel=4,
        )
        return "mc"
    return check_method(method, choices=PENALTY_METHODS)


def _active_features(beta: np.ndarray, X: np.ndarray) -> int:
    return int(np.count_nonzero(np.any(X * beta != 0.0, axis=0)))


@cites("wager2013dropout")
@finite_result("the dropout penalty of the GLM", _SCORES)
@transition_to_rng
def dropout_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    method: Literal["auto", "exact", "mc", "quadratic", "gaussian"] = "auto",
    offset: float = 0.0,
    n_masks: int | None = None,
    rng: RngLike = 0,
) -> Penalty:
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
    method : {"auto", "exact", "mc", "quadratic", "gaussian"}
        ``"exact"`` enumerates the :math:`2^{d'}` masks of the :math:`d'` features with a
        nonzero :math:`x_{ij}\beta_j` (at most :data:`MAX_EXACT_FEATURES`), chunked;
        ``"mc"`` averages ``n_masks`` draws, each a fresh mask for every sample;
        ``"auto"`` is ``"exact"`` up to :data:`MAX_EXACT_FEATURES` such features, else
        ``"mc"``. ``"quadratic"`` and ``"gaussian"`` are the approximations
        :func:`quadratic_penalty` and :func:`gaussian_penalty` (64 nodes).
        (``"monte_carlo"``, the former name of ``"mc"``, is deprecated.)
    offset : float
        The intercept b, added to every score; never dropped.
    n_masks : int, optional
        Monte Carlo draws; by default :func:`regtheory.montecarlo.default_n_masks` of
        ``keep``, and at least :func:`regtheory.montecarlo.min_draws` of it.
    rng : int, numpy.random.Generator or None
        Source of the Monte Carlo masks (same int, same estimate). ``seed=`` is a
        deprecated alias.

    Returns
    -------
    Penalty
        A float: the exact value (``method="exact"``), a Monte Carlo estimate with its
        standard error and interval (``"mc"``), or the approximation (its ``method``
        names it).

    Raises
    ------
    InvalidParameterError
        If an input is malformed, ``method="exact"`` meets more than
        :data:`MAX_EXACT_FEATURES` features, or ``n_masks`` is below the draws that
        the interval needs.
    NumericalOverflowError
        If the penalty leaves the range of float64.

    See Also
    --------
    quadratic_penalty, gaussian_penalty, solve_dropout

    Examples
    --------
    >>> X = np.array([[1.0, 2.0], [-1.0, 0.5]])
    >>> beta = np.array([0.3, -0.2])
    >>> lam = (1 - 0.8) / 0.8   # squared loss: exactly (λ/2) mean_i Σ_j x_ij² β_j²
    >>> exact = dropout_penalty(beta, X, 0.8, family="gaussian")
    >>> exact.is_exact, bool(np.isclose(exact, lam / 2 * np.mean((X**2) @ beta**2)))
    (True, True)

    """
    beta, X, keep, fam, offset = check_model(beta, X, keep, family, offset)
    chosen = _method(method)
    if chosen in ("quadratic", "gaussian"):
        return _APPROXIMATIONS[chosen](beta, X, keep, fam, offset)
    if n_masks is not None:
        n_masks = check_int(n_masks, "n_masks", minimum=2)
    generator = as_rng(rng)
    if chosen == "auto":
        chosen = "exact" if _active_features(beta, X) <= MAX_EXACT_FEATURES else "mc"
    if chosen == "exact":
        return Penalty.exact(exact_penalty(beta, X, keep, offset, fam))
    if n_masks is None:
        n_masks = default_n_masks([keep])
    return _mc_penalty(beta, X, keep, offset, fam, n_masks, generator)


@cites("wager2013dropout, eq. (8)")
@finite_result("the quadratic (adaptive L2) penalty of the GLM", _SCORES)
def quadratic_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    offset: float = 0.0,
) -> Penalty:
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
    beta : array (d,)
        Coefficients.
    X : array (n, d)
        Inputs, one sample per row.
    keep : float
        Retain probability θ in (0, 1].
    family : {"gaussian", "logistic", "poisson"}
        Cumulant A: z²/2, log(1 + e^z), e^z.
    offset : float
        The intercept b, added to every score; never dropped.

    Returns
    -------
    Penalty
        The approximation, a float (``method="quadratic"``).

    Raises
    ------
    InvalidParameterError
        If an input is malformed.
    NumericalOverflowError
        If the approximation leaves the range of float64.

    References
    ----------
    S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS
    2013, eq. (8).

    Examples
    --------
    >>> X, beta = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([0.3, -0.2])
    >>> q = quadratic_penalty(beta, X, 0.8, family="gaussian")
    >>> bool(np.isclose(q, dropout_penalty(beta, X, 0.8, family="gaussian")))
    True

    """
    beta, X, keep, fam, offset = check_model(beta, X, keep, family, offset)
    return _quadratic(beta, X, keep, fam, offset)


def _quadratic(beta, X, keep, family, offset) -> Penalty:
    lam = (1.0 - keep) / keep
    curvature = variance_function(X @ beta + offset, family)
    value = 0.5 * lam * np.mean(curvature * ((X * X) @ (beta * beta)))
    return Penalty(float(value), method="quadratic")


@cites("wang2013fast")
@finite_result("the Gaussian (fast dropout) penalty of the GLM", _SCORES)
def gaussian_penalty(
    beta: ArrayLike,
    X: ArrayLike,
    keep: float,
    *,
    family: Family = "logistic",
    offset: float = 0.0,
    n_nodes: int = 64,
) -> Penalty:
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
    beta : array (d,)
        Coefficients.
    X : array (n, d)
        Inputs, one sample per row.
    keep : float
        Retain probability θ in (0, 1].
    family : {"gaussian", "logistic", "poisson"}
        Cumulant A: z²/2, log(1 + e^z), e^z.
    offset : float
        The intercept b, added to every score; never dropped.
    n_nodes : int
        Quadrature nodes (exact for polynomials of degree below 2·n_nodes).

    Returns
    -------
    Penalty
        The approximation, a float (``method="gaussian"``).

    Raises
    ------
    InvalidParameterError
        If an input is malformed.
    NumericalOverflowError
        If the approximation leaves the range of float64.

    References
    ----------
    S. Wang, C. Manning, Fast dropout training, ICML 2013.

    Examples
    --------
    >>> X, beta = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([0.3, -0.2])
    >>> g = gaussian_penalty(beta, X, 0.8, family="gaussian")
    >>> bool(np.isclose(g, dropout_penalty(beta, X, 0.8, family="gaussian")))
    True

    """
    beta, X, keep, fam, offset = check_model(beta, X, keep, family, offset)
    n_nodes = check_int(n_nodes, "n_nodes")
    return _gaussian(beta, X, keep, fam, offset, n_nodes)


def _gaussian(beta, X, keep, family, offset, n_nodes: int = 64) -> Penalty:
    lam = (1.0 - keep) / keep
    mu = X @ beta + offset
    s = np.sqrt(lam * ((X * X) @ (beta * beta)))
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / np.sqrt(2.0 * np.pi)
    expected = cumulant(mu[:, None] + s[:, None] * nodes, family) @ weights
    return Penalty(float(np.mean(expected - cumulant(mu, family))), method="gaussian")


_APPROXIMATIONS = {"quadratic": _quadratic, "gaussian": _gaussian}
