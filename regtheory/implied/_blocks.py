r"""Implied problem of block dropout on an FC layer (Pal et al., CVPR 2020).

Dropping groups of k hidden units together induces, over maps M of a
width-w network with G = w/k groups, the squared spectral k-support norm
(see :func:`regtheory.fc.block_induced_regularizer`):

.. math::

    \min_{M,\ \operatorname{rank} M \le w}\ \|(M - TC^{-1})C^{1/2}\|_F^2
        + \frac{\lambda}{G}\,\|MC^{1/2}\|_{(k)}^2 .

The k-support norm enters through its variational form (McDonald, Pontil &
Stamos, NeurIPS 2014), :math:`\|\sigma\|_{(k)}^2 = \min\{\sum_i \sigma_i^2/\theta_i :
0 < \theta_i \le 1,\ \sum_i\theta_i \le k\}`, written with rotated second-order
cones, so this solve is independent of the closed form in :mod:`regtheory.fc`.
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike

from .._linalg import sqrtm_psd
from .._references import cites
from .._validation import InvalidParameterError, check_block_size, check_fc_problem, check_int
from ..fc import block_induced_regularizer, spectral_k_support_norm
from ..masks import dropout_lambda
from ._certificate import squared_norm_gap, top_k_positive
from ._fc import fc_objective
from ._solver import ImpliedResult, Solved, as_array, solve

__all__ = ["k_support_norm_sq", "solve_fc_block"]


@cites("argyriou2012sparse", "mcdonald2014spectral")
def k_support_norm_sq(x: cp.Expression, k: int) -> tuple[cp.Expression, list]:
    r"""Cvxpy epigraph of the squared k-support norm :math:`\|x\|_{(k)}^2` of a vector expression.

    The variational form of McDonald, Pontil & Stamos [2] (the k-support norm of
    Argyriou, Foygel & Srebro [1] as a box norm),

    .. math:: \|x\|_{(k)}^2 = \min_{\theta}\Big\{\sum_{i=1}^n \frac{x_i^2}{\theta_i} :
              0 < \theta_i \le 1,\ \sum_i \theta_i \le k\Big\}
              = \min\Big\{\sum_i s_i : x_i^2 \le s_i\theta_i,\ \theta_i \le 1,\
              \sum_i\theta_i \le k\Big\},

    with each :math:`x_i^2 \le s_i\theta_i` (:math:`s_i, \theta_i \ge 0`) written as
    the rotated second-order cone :math:`\|(2x_i,\ s_i - \theta_i)\|_2 \le s_i + \theta_i`.
    Each call creates fresh variables θ and s (shape (n,)).

    Parameters
    ----------
    x : cvxpy.Expression, shape (n,)
        The vector (a variable, or any affine expression; constants are allowed).
    k : int
        Support parameter, an integer k ≥ 1 (k ≥ n gives the squared Euclidean norm).

    Returns
    -------
    term : cvxpy.Expression (scalar)
        :math:`\sum_i s_i`, to be minimised.
    constraints : list of cvxpy.Constraint
        The cones and the constraints on θ; add them to the problem. Minimising
        ``term`` subject to them gives :math:`\|x\|_{(k)}^2`.

    Raises
    ------
    InvalidParameterError
        If ``x`` is not a 1-D cvxpy expression or ``k`` is not a positive int.

    References
    ----------
    [1] A. Argyriou, R. Foygel, N. Srebro, Sparse Prediction with the k-Support
        Norm, NeurIPS 2012.
    [2] A. M. McDonald, M. Pontil, D. Stamos, Spectral k-Support Norm
        Regularization, NeurIPS 2014.

    Examples
    --------
    >>> import cvxpy as cp
    >>> import numpy as np
    >>> term, constraints = k_support_norm_sq(cp.Constant(np.array([3.0, 4.0])), k=1)
    >>> round(float(cp.Problem(cp.Minimize(term), constraints).solve()), 3)  # (3 + 4)**2
    49.0
    """
    if not isinstance(x, cp.Expression) or x.ndim != 1:
        raise InvalidParameterError(f"`x` must be a 1-D cvxpy expression, got {type(x).__name__}")
    k = check_int(k, "k")
    n = x.shape[0]
    theta = cp.Variable(n)
    s = cp.Variable(n)
    # x_i^2 <= s_i * theta_i as a rotated cone: ||(2 x_i, s_i - theta_i)|| <= s_i + theta_i
    cone = cp.SOC(s + theta, cp.vstack([2 * x, s - theta]), axis=0)
    return cp.sum(s), [cone, theta <= 1, cp.sum(theta) <= k]


@cites("pal2020regularization", "mcdonald2014spectral", "argyriou2012sparse")
def solve_fc_block(
    T: ArrayLike,
    keep: float,
    width: int,
    block_size: int,
    *,
    cov: ArrayLike | None = None,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> ImpliedResult:
    r"""Solve the convex implied problem of block (DropBlock-on-FC) dropout with cvxpy.

    The regularizer is the convex lower bound :func:`regtheory.fc.block_induced_regularizer`
    (exact for block_size = 1; see there for when it is attained). The result's
    ``gap`` certifies the objective's relative accuracy (typically 1e-11 to 1e-9).

    By unitary invariance (as in :func:`solve_fc` with ``method="spectral"``) the
    optimum shares the singular vectors of the whitened target :math:`TC^{-1/2}`;
    its singular values m solve the cone program

    .. math:: \min_{m \ge 0}\ \sum_i(\sigma_i - m_i)^2 + \frac{\lambda}{G}\|m\|_{(k)}^2 ,

    with m_i = 0 beyond the width, λ = (1 − θ)/θ and G = w/k. ``block_size=1`` is
    the FC problem (2) (:func:`solve_fc`).

    Parameters
    ----------
    T : array (d_out, d_in)
        Cross moment E[y xᵀ].
    keep : float
        Retain probability θ in (0, 1] of each block.
    width : int
        Hidden units w, a multiple of ``block_size`` (else ``ValueError``).
    block_size : int
        Units per block k.
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ], positive definite. ``None`` means
        C = I (white input).
    solver : str, optional
        cvxpy solver name. By default Clarabel at tolerances 1e-9, then at its
        defaults, then SCS, until one solution certifies.
    solver_options : dict, optional
        Keyword arguments for ``problem.solve``: one solve with exactly these.

    Returns
    -------
    ImpliedResult
        ``M`` of shape (d_out, d_in); ``objective`` is ``fit`` (:func:`fc_objective`'s
        fit term, ``keep=1``) plus ``regularizer``
        (:func:`regtheory.fc.block_induced_regularizer` at ``M``).

    Raises
    ------
    SolverFailedError
        If no solver returns a solution whose certified gap (a Fenchel bound with
        the dual of the k-support norm, the ℓ2 norm of the k largest entries) is
        at most 1e-6.

    References
    ----------
    [1] A. Pal, C. Lane, R. Vidal, B. D. Haeffele, On the Regularization
        Properties of Structured Dropout, CVPR 2020.
    [2] A. M. McDonald, M. Pontil, D. Stamos, Spectral k-Support Norm
        Regularization, NeurIPS 2014.
    [3] A. Argyriou, R. Foygel, N. Srebro, Sparse Prediction with the k-Support
        Norm, NeurIPS 2012.
    """
    T, keep, width, cov = check_fc_problem(T, keep, width, cov)
    lam = dropout_lambda(keep)
    k = check_block_size(block_size, width)
    start = time.perf_counter()
    Tw = T if cov is None else T @ sqrtm_psd(cov, inverse=True)
    W1, sigma, W2t = np.linalg.svd(Tw, full_matrices=False)
    r = min(width, sigma.size)
    mval, solved = _block_singular_values(
        sigma, r, lam / (width // k), k, solver=solver, solver_options=solver_options
    )
    M = (W1[:, :r] * mval) @ W2t[:r]
    if cov is not None:
        M = M @ sqrtm_psd(cov, inverse=True)
    elapsed = time.perf_counter() - start
    fit = fc_objective(M, T, 1.0, width, cov=cov)  # keep = 1: the fit term alone
    regularizer = block_induced_regularizer(M, keep, width, k, cov=cov)
    return ImpliedResult(
        M=M,
        objective=fit + regularizer,
        solve_time=elapsed,
        **solved.fields(),
        fit=fit,
        regularizer=regularizer,
    )


def _block_singular_values(
    sigma: np.ndarray,
    r: int,
    c: float,
    k: int,
    *,
    solver: str | None,
    solver_options: dict | None,
) -> tuple[np.ndarray, Solved]:
    r"""The optimal singular values m (r of them) of the block problem, with the accepted solve.

    Minimises :math:`\sum_i(\sigma_i - m_i)^2 + c\,\|m\|_{(k)}^2` over m ≥ 0, c = λ/G.
    """
    # The problem is 2-homogeneous in (sigma, m): solve it for sigma / sigma_1 so the
    # interior-point tolerances are relative to O(1) numbers.
    scale = sigma[0] if sigma.size and sigma[0] > 0 else 1.0
    m = cp.Variable(r, nonneg=True)
    reg, constraints = k_support_norm_sq(m, k)
    s = sigma[:r] / scale
    tail = float(np.sum(sigma[r:] ** 2)) / scale**2
    objective = cp.sum_squares(s - m) + tail + c * reg
    problem = cp.Problem(cp.Minimize(objective), constraints)

    def values() -> np.ndarray:
        return np.clip(as_array(m.value), 0.0, None)

    def k_support(x: np.ndarray) -> float:
        return spectral_k_support_norm(np.diag(x), k) if x.size else 0.0

    def certify() -> float:
        mv = values()
        value = float(np.sum((s - mv) ** 2)) + tail + c * k_support(mv) ** 2
        grad = 2 * (mv - s)
        return squared_norm_gap(value, mv, grad, c, k_support, top_k_positive(k), tail)

    solved = solve(problem, solver, solver_options, sdp=True, certify=certify)
    return scale * values(), solved
