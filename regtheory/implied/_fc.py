r"""The implied regularized problem of FC dropout, solved with cvxpy.

Dropout training of a width-w FC network minimises, in expectation, the
*implied problem* over end-to-end maps M (THEORY.md §1, formulas (1)–(2)):

.. math::

    \min_{M,\ \operatorname{rank} M \le w}\ \mathbb{E}\|y - Mx\|^2
        + \frac{\lambda}{w}\,\|M C^{1/2}\|_*^2 .

This module solves it with cvxpy, independently of the closed form
:func:`regtheory.fc.global_optimum`, so each checks the other.

Solvers and tolerances: see :mod:`regtheory.implied._solver`.

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix
    Factorization, AISTATS 2018.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Literal

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike

from .._linalg import numerical_rank, sqrtm_psd
from .._references import cites
from .._validation import InvalidParameterError, check_array, check_fc_problem
from ..masks import dropout_lambda
from ._certificate import l1_nonneg, linf_positive, nuclear, spectral, squared_norm_gap
from ._solver import ImpliedResult, Solved, as_array, solve

__all__ = ["fc_objective", "solve_fc"]


@cites("mianjy2018implicit", "cavazza2018dropout")
def fc_objective(
    M: ArrayLike, T: ArrayLike, keep: float, width: int, *, cov: ArrayLike | None = None
) -> float:
    r"""Objective of the FC implied problem at M, up to a constant independent of M.

    .. math::

        J(M) = \|(M - T C^{-1}) C^{1/2}\|_F^2 + \frac{\lambda}{w}\|M C^{1/2}\|_*^2
             = \mathbb{E}\|y - Mx\|^2 + \Theta(M) - \mathbb{E}\|y - TC^{-1}x\|^2 ,

    i.e. the dropout objective minus the least-squares risk, so for C = I it is
    :math:`\|M - T\|_F^2 + (\lambda/w)\|M\|_*^2`.

    Parameters
    ----------
    M : array (d_out, d_in)
        Candidate end-to-end map.
    T : array (d_out, d_in)
        Cross moment E[y xᵀ]; ``M`` must have its shape.
    keep : float
        Retain probability θ in (0, 1]; ``keep=1`` (λ = 0) leaves the fit term alone.
    width : int
        Hidden units w.
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ], positive definite. ``None`` means
        C = I (white input).

    Returns
    -------
    float
        J(M) as in the first expression above, λ = (1 − θ)/θ.

    Raises
    ------
    InvalidParameterError
        If ``M`` or ``T`` is not a finite real matrix, ``M`` does not have the shape of
        ``T``, ``keep`` is not in (0, 1], ``width`` is not a positive int, or ``cov`` is
        not a positive definite (d_in, d_in) matrix.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    [2] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix
        Factorization, AISTATS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> fc_objective(np.eye(2), 2 * np.eye(2), keep=0.5, width=2)  # 2 + (1/2) * 2**2
    4.0
    """
    T, keep, width, cov = check_fc_problem(T, keep, width, cov)
    lam = dropout_lambda(keep)
    M = check_array(M, "M", ndim=2)
    if M.shape != T.shape:
        raise InvalidParameterError(f"`M` must have the shape of `T` {T.shape}, got {M.shape}")
    fit, regularizer = _fc_terms(M, T, lam, width, cov)
    return float(fit + regularizer)


def _fc_terms(
    M: np.ndarray, T: np.ndarray, lam: float, width: int, cov: np.ndarray | None
) -> tuple[float, float]:
    """The two terms of :func:`fc_objective` on checked data: the fit and the regularizer."""
    if cov is None:
        D, Mc = M - T, M
    else:
        root = sqrtm_psd(cov)
        D = M @ root - T @ sqrtm_psd(cov, inverse=True)
        Mc = M @ root
    nuc = np.linalg.svd(Mc, compute_uv=False).sum()
    return np.sum(D * D), lam / width * nuc**2


def _solve_fc_sdp(T, lam, width, cov, solver, options):
    M = cp.Variable(T.shape)
    root = None if cov is None else sqrtm_psd(cov)
    Tw = T if cov is None else T @ sqrtm_psd(cov, inverse=True)
    if cov is None:
        Mc, fit = M, cp.sum_squares(M - T)
    else:
        Mc = M @ root
        # E||y - Mx||^2 - E||y||^2 = tr(M C Mᵀ) - 2 <M, T>; kept in the original variables
        # (no whitening) so this formulation is independent of the spectral one.
        fit = cp.sum_squares(Mc) - 2 * cp.sum(cp.multiply(T, M)) + np.sum(Tw**2)
    problem = cp.Problem(cp.Minimize(fit + (lam / width) * cp.square(cp.normNuc(Mc))))

    def whitened():
        Mval = as_array(M.value)
        return Mval, (Mval if cov is None else Mval @ root)

    def certify():
        # In the whitened variable N = M C^½ the objective is ‖N − T C^-½‖² + (λ/w)‖N‖_*².
        N = whitened()[1]
        value = float(np.sum((N - Tw) ** 2)) + lam / width * nuclear(N) ** 2
        return squared_norm_gap(value, N, 2 * (N - Tw), lam / width, nuclear, spectral, 0.0)

    solved = solve(problem, solver, options, sdp=True, certify=certify)
    Mval, N = whitened()
    s = np.linalg.svd(N, compute_uv=False)
    rank = numerical_rank(s)
    if rank > width:
        raise InvalidParameterError(
            f"the nuclear-norm relaxation has rank {rank} > width {width}: the 'sdp' method "
            "cannot impose the rank constraint; use method='spectral'"
        )
    return Mval, solved


def _solve_fc_spectral(T, lam, width, cov, solver, options):
    # Unitary invariance: the optimum shares the singular vectors of the whitened
    # target T C^{-1/2} (von Neumann's trace inequality), so only its singular values
    # m are unknown, sorted like sigma; rank <= width means m_i = 0 for i > width.
    Tw = T if cov is None else T @ sqrtm_psd(cov, inverse=True)
    W1, sigma, W2t = np.linalg.svd(Tw, full_matrices=False)
    r = min(width, sigma.size)
    tail = float(np.sum(sigma[r:] ** 2))
    m = cp.Variable(r, nonneg=True)
    objective = cp.sum_squares(sigma[:r] - m) + tail + (lam / width) * cp.square(cp.sum(m))
    problem = cp.Problem(cp.Minimize(objective))

    def values():
        return np.clip(as_array(m.value), 0.0, None)

    def certify():
        mv = values()
        value = float(np.sum((sigma[:r] - mv) ** 2)) + tail + lam / width * np.sum(mv) ** 2
        grad = 2 * (mv - sigma[:r])
        return squared_norm_gap(value, mv, grad, lam / width, l1_nonneg, linf_positive, tail)

    solved = solve(problem, solver, options, certify=certify)
    M = (W1[:, :r] * values()) @ W2t[:r]
    if cov is not None:
        M = M @ sqrtm_psd(cov, inverse=True)
    return M, solved


_FC_METHODS = MappingProxyType({"sdp": _solve_fc_sdp, "spectral": _solve_fc_spectral})


@cites("mianjy2018implicit", "cavazza2018dropout")
def solve_fc(
    T: ArrayLike,
    keep: float,
    width: int,
    *,
    cov: ArrayLike | None = None,
    method: Literal["spectral", "sdp"] = "spectral",
    solver: str | None = None,
    solver_options: dict | None = None,
) -> ImpliedResult:
    r"""Solve the FC implied problem with cvxpy.

    .. math::

        \min_{M,\ \operatorname{rank} M \le w}\ \|(M - TC^{-1})C^{1/2}\|_F^2
            + \frac{\lambda}{w}\|MC^{1/2}\|_*^2

    (the dropout objective up to a constant, see :func:`fc_objective`): ``fit`` is the
    first term, ``regularizer`` the second, ``objective`` their sum.

    Parameters
    ----------
    T : array (d_out, d_in)
        Cross moment E[y xᵀ].
    keep : float
        Retain probability in (0, 1].
    width : int
        Hidden units w.
    cov : array (d_in, d_in), optional
        E[x xᵀ], positive definite (default identity).
    method : {"spectral", "sdp"}
        ``"sdp"``: the matrix problem with ``cp.square(cp.normNuc(.))`` (an SDP,
        for small sizes only: its semidefinite variable grows with n²). It
        cannot impose rank <= w and raises if its solution is wider.
        ``"spectral"``: by unitary invariance, a QP over the singular values of
        the whitened target (one SVD + a cvxpy problem in min(n, w) scalars),
        exact with the rank constraint; scales to n = 1000.
    solver : str, optional
        cvxpy solver name. By default Clarabel at tolerances 1e-12 (1e-9 for
        "sdp"), then at its defaults, then SCS, until one solution certifies.
    solver_options : dict, optional
        Keyword arguments for ``problem.solve``: one solve with exactly these.

    Returns
    -------
    ImpliedResult
        ``gap`` is the relative duality gap certified in NumPy from ``M`` (a
        Fenchel bound in the whitened variable), at most 1e-6.

    Raises
    ------
    SolverFailedError
        If no solver returns a solution whose certified gap is at most 1e-6.
    """
    T, keep, width, cov = check_fc_problem(T, keep, width, cov)
    lam = dropout_lambda(keep)
    if method not in _FC_METHODS:
        raise InvalidParameterError(
            f"`method` must be one of {sorted(_FC_METHODS)}, got {method!r}"
        )
    start = time.perf_counter()
    # The objective is 2-homogeneous in (M, T): solve for T / s and scale back, so the
    # solvers' absolute tolerances see O(1) numbers whatever the units of the data.
    scale = float(np.linalg.norm(T))
    if scale == 0.0:
        M = np.zeros_like(T)
        solved = Solved("closed form (T = 0)", cp.OPTIMAL, 0.0, ())
    else:
        M, solved = _FC_METHODS[method](T / scale, lam, width, cov, solver, solver_options)
        M = scale * M
    elapsed = time.perf_counter() - start
    fit, regularizer = _fc_terms(M, T, lam, width, cov)
    return ImpliedResult(
        M=M,
        objective=float(fit + regularizer),
        solve_time=elapsed,
        **solved.fields(),
        fit=float(fit),
        regularizer=float(regularizer),
    )
