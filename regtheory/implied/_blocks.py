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

from .._validation import sqrtm_psd
from ..fc import _check_block_size, block_induced_regularizer
from ._fc import _check_problem, fc_objective
from ._solver import ImpliedResult, solve

__all__ = ["k_support_norm_sq", "solve_fc_block"]


def k_support_norm_sq(x: cp.Expression, k: int) -> tuple[cp.Expression, list]:
    r"""cvxpy epigraph of :math:`\|x\|_{(k)}^2` for a vector expression x.

    Returns ``(objective_term, constraints)``: minimising the term subject to the
    constraints gives the squared k-support norm (variational form above).
    """
    n = x.shape[0]
    theta = cp.Variable(n)
    s = cp.Variable(n)
    # x_i^2 <= s_i * theta_i as a rotated cone: ||(2 x_i, s_i - theta_i)|| <= s_i + theta_i
    cone = cp.SOC(s + theta, cp.vstack([2 * x, s - theta]), axis=0)
    return cp.sum(s), [cone, theta <= 1, cp.sum(theta) <= k]


def solve_fc_block(
    T,
    keep: float,
    width: int,
    block_size: int,
    cov=None,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> ImpliedResult:
    r"""Solve the convex implied problem of block (DropBlock-on-FC) dropout with cvxpy.

    The regularizer is the convex lower bound :func:`regtheory.fc.block_induced_regularizer`
    (exact for block_size = 1; see there for when it is attained). Accuracy: ~1e-6
    relative in M, ~1e-9 in the objective (Clarabel at 1e-9; tighter ends inaccurate).

    By unitary invariance (as in :func:`solve_fc` with ``method="spectral"``) the
    optimum shares the singular vectors of the whitened target :math:`TC^{-1/2}`;
    its singular values m solve the cone program

    .. math:: \min_{m \ge 0}\ \sum_i(\sigma_i - m_i)^2 + \frac{\lambda}{G}\|m\|_{(k)}^2 ,

    with m_i = 0 beyond the width. ``block_size=1`` is the FC problem (2).

    Returns
    -------
    ImpliedResult
        ``objective`` is :func:`fc_objective`'s fit term plus the block regularizer.
    """
    T, lam, width, cov = _check_problem(T, keep, width, cov)
    k = _check_block_size(block_size, width)
    G = width // k
    start = time.perf_counter()
    Tw = T if cov is None else T @ sqrtm_psd(cov, inverse=True)
    W1, sigma, W2t = np.linalg.svd(Tw, full_matrices=False)
    r = min(width, sigma.size)
    # The problem is 2-homogeneous in (sigma, m): solve it for sigma / sigma_1 so the
    # interior-point tolerances are relative to O(1) numbers.
    scale = sigma[0] if sigma.size and sigma[0] > 0 else 1.0
    m = cp.Variable(r, nonneg=True)
    reg, constraints = k_support_norm_sq(m, k)
    objective = cp.sum_squares(sigma[:r] / scale - m) + (lam / G) * reg
    problem = cp.Problem(cp.Minimize(objective), constraints)
    name = solve(problem, solver, solver_options, sdp=True)  # cones: 1e-12 is too tight
    mval = scale * np.clip(np.asarray(m.value), 0.0, None)
    M = (W1[:, :r] * mval) @ W2t[:r]
    if cov is not None:
        M = M @ sqrtm_psd(cov, inverse=True)
    elapsed = time.perf_counter() - start
    fit = fc_objective(M, T, 1.0, width, cov)  # keep = 1: the fit term alone
    return ImpliedResult(
        M=M,
        objective=fit + block_induced_regularizer(M, keep, width, k, cov),
        status=cp.OPTIMAL,
        solve_time=elapsed,
        solver=name,
    )
