r"""The dropout objective on the observed entries themselves, minimised over factorizations.

On a fixed set Ω of N observed entries the expected dropout objective of a factorization
of width d is (:func:`regtheory.completion.dropout_penalty`)

.. math:: J_\Omega(U, V) = \frac1N \sum_{t=1}^N \big(y_t - (UV^\top)_{i_tj_t}\big)^2
          + \frac{\lambda}{N} \sum_{t=1}^N \sum_{k=1}^d U_{i_tk}^2 V_{j_tk}^2 .

Its regularizer is a sum over the units of :math:`\lambda\|\sqrt W \circ u_kv_k^\top\|_F^2`,
W the indicator of Ω divided by N, so it depends on the rank-one terms
:math:`u_kv_k^\top` only. Minimised over the factorizations of a matrix it gives a
function of M with a closed form only when W has rank one (Ω a product of a row set and a
column set, such as every entry): then it is the squared weighted trace norm that
:func:`regtheory.completion.solve_induced` handles. Otherwise (THEORY §9) it lies between
:math:`(\lambda/d)\|\sqrt W \circ M\|_F^2` and the value of :math:`J_\Omega` at the
factorization of the weighted-trace-norm solution. It need not be attained: a unit whose
rows and columns meet Ω in few entries can grow without bound at little cost, and on sparse
sets the factors of a descent do grow without bound while :math:`J_\Omega` settles at its
infimum. :func:`solve_observed` therefore minimises :math:`J_\Omega` over (U, V) directly,
L-BFGS from several random starts with exact gradients and a budget of iterations, and
reports how far it got (objective of every start, stationarity, whether L-BFGS converged);
no certificate of global optimality exists for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse

from .._grammar import RngLike, as_rng
from .._references import Cited, cites
from .._results import freeze_arrays
from .._ties import argmin_tied
from .._validation import check_int, check_positive
from ..implied._conv_factored import _minimise
from ..masks import dropout_lambda
from ._objective import Observations, check_covered, check_obs

__all__ = ["ObservedSolution", "solve_observed"]


@dataclass(frozen=True)
class ObservedSolution(Cited):
    r"""The best stationary point of :math:`J_\Omega` over several starts (:func:`solve_observed`).

    Attributes
    ----------
    U : ndarray (m, d)
        Row factor at the best start.
    V : ndarray (n, d)
        Column factor at the best start.
    objective : float
        :math:`J_\Omega(U, V)`: ``fit`` plus ``regularizer``. Starts within 1e-9 (relative)
        of the lowest count as tied; the first of them is best.
    fit : float
        Mean squared error on the observed entries.
    regularizer : float
        :math:`R_\Omega(U, V)`, the exact dropout penalty on Ω.
    start_objectives : ndarray
        :math:`J_\Omega` at the end of every start (how rugged the landscape is).
    success : bool
        Whether L-BFGS-B reported convergence at the best start.
    message : str
        L-BFGS-B's message at the best start.
    gradient_norm : float
        Stationarity at the best start, free of units: ‖∇J‖·‖(U, V)‖/J.
    solve_time : float
        Wall-clock seconds.
    """

    U: np.ndarray
    V: np.ndarray
    objective: float
    fit: float
    regularizer: float
    start_objectives: np.ndarray
    success: bool
    message: str
    gradient_norm: float
    solve_time: float

    def __post_init__(self) -> None:
        freeze_arrays(self)

    @property
    def M(self) -> np.ndarray:
        r"""The completed matrix :math:`UV^\top`."""
        return self.U @ self.V.T


def _objective(obs: Observations, y: np.ndarray, lam: float, width: int):
    r""":math:`J_\Omega` on the stacked factors z = (U, V): (J, ∇J, R_Ω)."""
    (m, n), N = obs.shape, obs.n_observed
    ones = np.ones(N)
    to_rows = sparse.csr_matrix((ones, (obs.rows, np.arange(N))), shape=(m, N))
    to_cols = sparse.csr_matrix((ones, (obs.cols, np.arange(N))), shape=(n, N))

    def objective(z: np.ndarray) -> tuple[float, np.ndarray, float]:
        U = z[: m * width].reshape(m, width)
        V = z[m * width :].reshape(n, width)
        Ui, Vj = U[obs.rows], V[obs.cols]
        E = np.einsum("tk,tk->t", Ui, Vj) - y
        Ui2, Vj2 = Ui * Ui, Vj * Vj
        penalty = lam / N * float(np.einsum("tk,tk->", Ui2, Vj2))
        # ∂/∂U_i: (2/N) Σ_t E_t V_j + (2λ/N) Σ_t U_i V_j², the same for V
        gU = to_rows @ ((2.0 / N) * (E[:, None] * Vj + lam * Ui * Vj2))
        gV = to_cols @ ((2.0 / N) * (E[:, None] * Ui + lam * Vj * Ui2))
        value = float(np.mean(E * E)) + penalty
        return value, np.concatenate([gU.ravel(), gV.ravel()]), penalty

    return objective


@cites("cavazza2018dropout", "arora2021dropout")
def solve_observed(
    obs: Observations,
    keep: float,
    width: int,
    *,
    starts: int = 5,
    rng: RngLike = 0,
    init_scale: float = 0.5,
    max_iter: int = 10_000,
) -> ObservedSolution:
    r"""Minimise the dropout objective on the observed entries over factorizations of width d.

    .. math:: \min_{U, V}\ J_\Omega(U, V) = \frac1N \sum_{t=1}^N
              \big(y_t - (UV^\top)_{i_tj_t}\big)^2 + \frac{\lambda}{N}\sum_{t=1}^N
              \sum_{k=1}^d U_{i_tk}^2 V_{j_tk}^2 ,

    the objective dropout training of the factorization descends in expectation
    (:func:`regtheory.training.train_completion`), by L-BFGS with exact gradients from
    ``starts`` random points. It is not convex, and on sparse sets of entries its infimum
    may not be attained (module docstring); the best end point is returned, with
    ``success`` and ``gradient_norm`` saying whether it is stationary.
    Where Ω is every entry of a block of rows and columns (W of rank one), its minimum is
    that of :func:`solve_induced`; elsewhere the two problems differ (module docstring).

    Parameters
    ----------
    obs : Observations
        The observed entries; every row and column must have one.
    keep : float
        Retain probability θ in (0, 1].
    width : int
        Width d of the factorization.
    starts : int
        Random starts, ≥ 1.
    rng : int, numpy.random.Generator or None
        Source of the starts; the same int gives the same numbers.
    init_scale : float
        Standard deviation of the starting factors (in units of the observed values' rms).
    max_iter : int
        L-BFGS iterations per start at most (and twice as many evaluations of J).

    Returns
    -------
    ObservedSolution
        The factors, :math:`J_\Omega` and its parts, every start's end, the stationarity.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations` or has an empty row or column, ``keep``
        is outside (0, 1], ``width`` or ``starts`` is not a positive integer, or
        ``init_scale`` is not positive, or ``max_iter`` is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.completion import observed, solve_induced
    >>> i, j = np.divmod(np.arange(12), 4)   # every entry of a 3 x 4 matrix
    >>> obs = observed(i, j, np.arange(12.0) % 5, (3, 4))
    >>> a = solve_observed(obs, 0.5, 3)
    >>> b = solve_induced(obs, 0.5, 3)
    >>> bool(abs(a.objective - b.objective) < 1e-7 * b.objective)
    True
    """
    start = time.perf_counter()
    obs = check_obs(obs)
    check_covered(obs)
    lam = dropout_lambda(keep)
    width = check_int(width, "width")
    starts = check_int(starts, "starts")
    init_scale = check_positive(init_scale, "init_scale")
    max_iter = check_int(max_iter, "max_iter")
    return _best_of_starts(obs, lam, width, starts, as_rng(rng), init_scale, max_iter, start)


def _best_of_starts(obs, lam, width, starts, gen, init_scale, max_iter, start) -> ObservedSolution:
    """L-BFGS from every start on the problem scaled to observed values of rms 1."""
    (m, n), values = obs.shape, obs.values
    scale = float(np.sqrt(np.mean(values**2))) or 1.0  # J is 2-homogeneous in (U, V, y)
    objective = _objective(obs, values / scale, lam, width)
    results = _minimise(
        objective,
        (m + n) * width,
        starts=starts,
        init_scale=init_scale,
        rng=gen,
        max_iter=max_iter,
        max_fun=2 * max_iter,
    )
    ends = np.array([float(r.fun) for r in results])
    best = results[argmin_tied(ends)]
    value, grad, penalty = objective(best.x)
    root = np.sqrt(scale)
    return ObservedSolution(
        U=root * best.x[: m * width].reshape(m, width),
        V=root * best.x[m * width :].reshape(n, width),
        objective=scale**2 * value,
        fit=scale**2 * (value - penalty),
        regularizer=scale**2 * penalty,
        start_objectives=scale**2 * ends,
        success=bool(best.success),
        message=str(best.message),
        gradient_norm=float(np.linalg.norm(grad) * np.linalg.norm(best.x) / value)
        if value > 0
        else 0.0,
        solve_time=time.perf_counter() - start,
    )
