r"""The convex problem of the product form on observed entries, solved twice and certified.

With the empirical marginals p, q > 0 of the N observed entries, :math:`P =
\operatorname{diag}(\sqrt p)`, :math:`Q = \operatorname{diag}(\sqrt q)`, λ = (1 − θ)/θ and
width d, the product form of dropout induces (:func:`induced_regularizer`) the problem

.. math:: \min_M\ F(M) = \frac1N \sum_{t=1}^N \big(y_t - M_{i_tj_t}\big)^2
          + \frac{\lambda}{d}\,\|PMQ\|_*^2 .

Entries of M outside Ω enter only through the regularizer. In :math:`Z = PMQ` (P, Q are
invertible) it reads :math:`f(Z) + c\|Z\|_*^2` with c = λ/d and the separable quadratic

.. math:: f(Z) = \frac1N \sum_t \big(y_t - w_t Z_{i_tj_t}\big)^2, \qquad
          w_t = \frac{1}{\sqrt{p_{i_t} q_{j_t}}} ,

whose gradient is zero off Ω. Both solvers are judged by one certificate, computed in NumPy
from the point they return: Fenchel's inequality with the dual point :math:`-\nabla f(Z)`
and the conjugate :math:`\|Y\|_2^2/(4c)` of :math:`c\|\cdot\|_*^2`
(:func:`regtheory.implied._certificate.squared_norm_gap`) bounds the relative
sub-optimality of Z.

* ``"cvxpy"`` poses F with ``cp.square(cp.normNuc(.))`` (a semidefinite program) and solves
  it on the package's ladder (:func:`regtheory.implied._solver.solve`).
* ``"proximal"`` runs accelerated proximal gradient (FISTA) on the Z form with
  function-value restarts (O'Donoghue & Candès). The proximal map of :math:`c\|\cdot\|_*^2`
  acts on the singular values σ: :math:`\min_{s \ge 0} \tfrac12\|s - σ\|^2 + c(\sum s)^2` is
  solved by :math:`s = (σ - τ)_+` with :math:`τ = 2c\sum(σ - τ)_+`, i.e. for the support of
  the k largest values :math:`τ = 2c\sum_{i \le k} σ_i / (1 + 2ck)`, valid for the largest k
  with :math:`σ_k > τ_k` (the condition holds for every smaller k and fails for every larger
  one). Only the singular values above τ are needed: once the iterates are of low rank, a
  partial SVD (PROPACK, else ARPACK) of the low-rank-plus-sparse matrix of the gradient step
  finds them, and it has found them all when the smallest one it computed is below τ; while
  the rank is high, a dense SVD. The proximal method is one rung of the ladder, so a run
  that does not certify raises :class:`regtheory.implied.SolverFailedError` like a cvxpy one.

The objective is 2-homogeneous in (M, y), so both solve with y scaled to a mean square of 1
and scale back; the relative gap does not change.

References
----------
[1] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and Capacity
    Control, ICML 2021.
[2] R. Salakhutdinov, N. Srebro, Collaborative Filtering in a Non-Uniform World: Learning
    with the Weighted Trace Norm, NeurIPS 2010.
[3] A. Beck, M. Teboulle, A Fast Iterative Shrinkage-Thresholding Algorithm for Linear
    Inverse Problems, SIAM J. Imaging Sciences, 2009.
[4] B. O'Donoghue, E. Candès, Adaptive Restart for Accelerated Gradient Schemes,
    Foundations of Computational Mathematics, 2015.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import cvxpy as cp
import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

from .._linalg import numerical_rank
from .._references import cites
from .._validation import (
    InvalidParameterError,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from ..implied._certificate import spectral, squared_norm_gap
from ..implied._least_rank import least_rank_minimiser
from ..implied._solver import (
    Certificate,
    ImpliedResult,
    Rung,
    Solved,
    SolverFailedError,
    as_array,
    solve,
)
from ..masks import dropout_lambda
from ._objective import Observations, _rowwise, check_covered, check_obs

__all__ = ["CompletionSolution", "solve_induced", "solve_weighted_trace_norm"]

#: The methods of :func:`solve_induced`.
METHODS = ("auto", "cvxpy", "proximal")
#: ``method="auto"`` solves with cvxpy up to this many entries m·n, proximally above.
CVXPY_MAX_ENTRIES = 2_500
#: Above this many entries m·n, :func:`solve_induced` refuses ``least_rank=True`` (the
#: search's linear conditions are dense: N × m·n).
LEAST_RANK_MAX_ENTRIES = 2_500
#: The certified relative gap :func:`solve_induced` asks for by default.
DEFAULT_TOL = 1e-8
#: The proximal iterations :func:`solve_induced` allows by default.
DEFAULT_MAX_ITER = 10_000

# A proximal step takes a dense SVD when min(m, n) is at most this, or when more than a
# third of the singular values would be needed (a partial SVD of that many costs more).
_DENSE_SVD_MAX = 200
# The proximal iteration estimates its gap every this many steps (a spectral norm of the
# sparse gradient), and computes the certificate when the estimate is below `tol`.
_CHECK_EVERY = 10
# An objective above the previous one by more than this (relative) restarts the momentum;
# below it, the difference is rounding.
_RESTART_RTOL = 1e-14
# Singular values beyond the support that a partial SVD computes (at least one is needed).
_EXTRA = 5


@dataclass(frozen=True, kw_only=True)
class CompletionSolution(ImpliedResult):
    r"""Solution of :func:`solve_induced`, a :class:`regtheory.implied.ImpliedResult`.

    Attributes
    ----------
    M : ndarray (m, n)
        The minimiser (read-only), entries off Ω included.
    objective : float
        :math:`F(M) = \frac1N\sum_t (y_t - M_{i_tj_t})^2 + \frac{\lambda}{d}\|PMQ\|_*^2`,
        computed in NumPy.
    fit : float
        The first term: the mean squared error on the observed entries.
    regularizer : float
        The second term, :func:`induced_regularizer` of M when d ≥ rank M.
    gap : float
        Certified relative duality gap of M, computed in NumPy (module docstring): the
        minimum of F is at least ``objective * (1 - gap)``. At most the ``tol`` asked for.
    status : str
        ``"optimal"``; ``"optimal_inaccurate"`` when cvxpy's solver stopped short of its
        tolerances but the certificate holds; ``"closed_form"`` without a regularizer
        (``keep = 1``) or without data (every y = 0).
    solver : str
        The rung that produced M: a cvxpy rung such as ``"CLARABEL (tight)"``, or
        ``"proximal"``.
    iterations : int or None
        Iterations of that solve (the proximal steps, or what the cvxpy solver reports).
    rank : int
        Numerical rank of M: singular values of PMQ above 1e-6 of the largest
        (``RANK_RTOL`` of the package; cvxpy's output carries its tolerance in the
        small ones).
    solve_time : float
        Wall-clock seconds, formulation and certificate included.
    gradient_norm, attempts
        As in :class:`regtheory.implied.Solution` (``gradient_norm`` is None: a gap
        certifies).
    attained : bool or None
        For :func:`solve_induced`: whether rank M ≤ ``width``, so that a factorization of
        that width attains ``objective`` (:func:`equalize` builds it). False means the
        convex value is a lower bound on the dropout objective of that width, attained only
        if another minimiser has rank ≤ width (``least_rank=True`` searches for one). None
        for :func:`solve_weighted_trace_norm`, which has no width.
    """

    rank: int
    attained: bool | None = None


@dataclass(frozen=True)
class _Data:
    """The checked problem in the Z form, with y scaled to a mean square of 1."""

    obs: Observations
    y: np.ndarray  # observed values / scale, in the order of obs
    w: np.ndarray  # 1/sqrt(p_i q_j) per observation
    root_p: np.ndarray
    root_q: np.ndarray
    c: float  # λ/d
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.obs.shape

    def residual(self, z: np.ndarray) -> np.ndarray:
        """The residuals y − w z, for the values z of Z on Ω."""
        return self.y - self.w * z

    def gradient(self, z: np.ndarray) -> np.ndarray:
        """∇f(Z) on Ω (it is zero off Ω): −(2/N) w (y − w z)."""
        return -2.0 / self.y.size * self.w * self.residual(z)

    def dense(self, values: np.ndarray) -> np.ndarray:
        """The m × n matrix with ``values`` on Ω and zeros elsewhere."""
        out = np.zeros(self.shape)
        out[self.obs.rows, self.obs.cols] = values
        return out


class _Certifier:
    """The certificate of a point Z (the same for both methods); keeps what it computed."""

    def __init__(self, data: _Data, tol: float):
        self.data, self.tol = data, tol
        self.sigma = np.zeros(0)  # singular values of the last Z certified
        self.gap = np.inf

    def __call__(self, Z: np.ndarray) -> Certificate:
        data = self.data
        z = Z[data.obs.rows, data.obs.cols]
        sigma = np.linalg.svd(Z, compute_uv=False)
        nuc = float(sigma.sum())
        value = float(np.mean(data.residual(z) ** 2)) + data.c * nuc**2
        # ‖Z‖_* is computed once, above, and handed to the gap as the norm of Z
        gap = squared_norm_gap(
            value, Z, data.dense(data.gradient(z)), data.c, lambda _: nuc, spectral, 0.0
        )
        self.sigma, self.gap = sigma, gap
        return Certificate(bool(gap <= self.tol), gap=gap)


def _shrink(sigma: np.ndarray, c: float) -> np.ndarray:
    r"""The proximal map of :math:`c(\sum s)^2` on s ≥ 0 at σ (sorted descending).

    :math:`s = (σ - τ)_+`, :math:`τ = 2c\sum_{i\le r} σ_i/(1 + 2cr)`, r the number of k with
    :math:`σ_k > 2c\sum_{i\le k} σ_i/(1 + 2ck)` (module docstring). Returns s[:r].
    """
    k = np.arange(1, sigma.size + 1)
    tau = 2.0 * c * np.cumsum(sigma) / (1.0 + 2.0 * c * k)
    r = int(np.sum(sigma > tau))
    return sigma[:r] - tau[r - 1] if r else np.zeros(0)


class _Proximal:
    """FISTA with restarts on the Z form, as a rung of the ladder.

    It has ``solve``, ``status`` and ``solver_stats`` as a cvxpy problem has them. The
    iterate is kept as factors Z = A diag(s) Bᵀ (A, B with orthonormal columns, from an
    SVD).
    """

    def __init__(self, data: _Data, certifier: _Certifier):
        self.data, self.certifier = data, certifier
        m, n = data.shape
        self.A, self.s, self.B = np.zeros((m, 0)), np.zeros(0), np.zeros((n, 0))
        self.status: str | None = None
        self.solver_stats: SimpleNamespace | None = None
        self.lipschitz = 2.0 / data.y.size * float(np.max(data.w**2))
        self.iteration = 0
        # the certifier's verdict on the iterate of the iteration it last read
        self.certified: tuple[int, Certificate] | None = None
        # the sparsity pattern of Ω in CSR order, and where each observation goes in it
        obs = data.obs
        self.order = np.lexsort((obs.cols, obs.rows))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(obs.rows, minlength=m))])
        self.pattern = (obs.cols[self.order], indptr)
        self.rank_guess = 1
        self.partial = "propack"
        # a fixed start for the Krylov methods (a constant vector could miss a subspace)
        self.start = np.random.default_rng(0).standard_normal(max(m, n))

    def Z(self) -> np.ndarray:
        return (self.A * self.s) @ self.B.T

    def certificate(self) -> Certificate:
        """The certifier's verdict on the current iterate (computed once per iterate)."""
        if self.certified is None or self.certified[0] != self.iteration:
            self.certified = (self.iteration, self.certifier(self.Z()))
        return self.certified[1]

    def _sparse(self, values: np.ndarray) -> sparse.csr_matrix:
        cols, indptr = self.pattern
        return sparse.csr_matrix((values[self.order], cols, indptr), shape=self.data.shape)

    def _values(self, A: np.ndarray, s: np.ndarray, B: np.ndarray) -> np.ndarray:
        """The values of A diag(s) Bᵀ on Ω, one per observation."""
        return _rowwise(A * s, B, self.data.obs)

    def _dense_svd(self, A, s, B, step):
        X = (A * s) @ B.T
        X[self.data.obs.rows, self.data.obs.cols] -= step
        return np.linalg.svd(X, full_matrices=False)

    def _partial_svd(self, op: LinearOperator, k: int):
        m, n = self.data.shape
        if self.partial == "propack":
            try:
                return svds(op, k=k, tol=0, solver="propack", v0=self.start[:m])
            except ValueError:  # scipy without PROPACK enabled
                self.partial = "arpack"
        return svds(op, k=k, tol=0, solver="arpack", v0=self.start[: min(m, n)])

    def _step(self, A, s, B, step, c):
        """Singular triplets of X = A diag(s) Bᵀ − (step on Ω), all those above the threshold."""
        m, n = self.data.shape
        small = min(m, n)
        k = self.rank_guess + _EXTRA
        if small <= _DENSE_SVD_MAX or k > small // 3:
            return self._dense_svd(A, s, B, step)
        G = self._sparse(step)

        def matmat(V):
            return A @ (s[:, None] * (B.T @ V)) - G @ V

        def rmatmat(U):
            return B @ (s[:, None] * (A.T @ U)) - G.T @ U

        op = LinearOperator(
            (m, n),
            matvec=lambda v: matmat(np.reshape(v, (-1, 1))).ravel(),
            rmatvec=lambda u: rmatmat(np.reshape(u, (-1, 1))).ravel(),
            matmat=matmat,
            rmatmat=rmatmat,
            dtype=float,
        )
        while k <= small // 3:
            try:
                U, sigma, Vt = self._partial_svd(op, k)
            except (np.linalg.LinAlgError, ArpackNoConvergence, ArpackError):
                break
            order = np.argsort(sigma)[::-1]
            U, sigma, Vt = U[:, order], sigma[order], Vt[order]
            if _shrink(sigma, c).size < k:  # the smallest computed value is below τ
                return U, sigma, Vt
            k *= 2
        return self._dense_svd(A, s, B, step)

    def _spectral(self, values: np.ndarray) -> float:
        """Spectral norm of the matrix with ``values`` on Ω: Lanczos for a large one."""
        shape = self.data.shape
        if min(shape) > _DENSE_SVD_MAX:
            try:
                return float(
                    svds(
                        self._sparse(values),
                        k=1,
                        tol=1e-12,
                        solver="arpack",
                        v0=self.start[: min(shape)],
                        return_singular_vectors=False,
                    )[0]
                )
            except (ArpackNoConvergence, ArpackError):
                pass
        return spectral(self.data.dense(values))

    def _estimate(self, z: np.ndarray, nuc: float) -> float:
        """The gap of the iterate with a Lanczos spectral norm: whether to certify now.

        From the values z of Z on Ω and its nuclear norm (that of its factors): the
        gradient is zero off Ω, so ⟨∇f(Z), Z⟩ is a sum over Ω.
        """
        data = self.data
        value = float(np.mean(data.residual(z) ** 2)) + data.c * nuc**2
        return squared_norm_gap(
            value, z, data.gradient(z), data.c, lambda _: nuc, self._spectral, 0.0
        )

    def solve(self, solver: str, warm_start: bool = True, **options: float) -> None:
        """Run FISTA from the current iterate until the certificate holds or ``max_iter``."""
        tol, max_iter = float(options["tol"]), int(options["max_iter"])
        data, L = self.data, self.lipschitz
        c = data.c / L  # the proximal map of (c/L)‖Z‖_*² after a gradient step of 1/L
        A, s, B = self.A, self.s, self.B
        z = self._values(A, s, B)
        value = float(np.mean(data.residual(z) ** 2)) + data.c * float(s.sum()) ** 2
        A0, s0, B0, z0 = A, s, B, z
        t, done, steps = 1.0, False, 0
        for steps in range(1, max_iter + 1):
            t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
            beta = (t - 1.0) / t_next
            # Y = Z + β(Z − Z_prev), as factors, and its values on Ω
            Ay, By = np.hstack([A, A0]), np.hstack([B, B0])
            sy = np.concatenate([(1.0 + beta) * s, -beta * s0])
            zy = z + beta * (z - z0)
            U, sigma, Vt = self._step(Ay, sy, By, data.gradient(zy) / L, c)
            s_new = _shrink(sigma, c)
            r = s_new.size
            A0, s0, B0, z0 = A, s, B, z
            A, s, B = U[:, :r], s_new, Vt[:r].T
            z = self._values(A, s, B)
            self.rank_guess = max(r, 1)
            new_value = float(np.mean(data.residual(z) ** 2)) + data.c * float(s.sum()) ** 2
            t = 1.0 if new_value > value * (1.0 + _RESTART_RTOL) else t_next
            value = new_value
            self.A, self.s, self.B = A, s, B
            self.iteration += 1
            if steps % _CHECK_EVERY == 0 or steps == max_iter:
                if self._estimate(z, float(s.sum())) <= tol and self.certificate().holds:
                    done = True
                    break
        self.status = cp.OPTIMAL if done else cp.OPTIMAL_INACCURATE
        self.solver_stats = SimpleNamespace(num_iters=steps)


def _solve_proximal(data, certifier, tol, max_iter) -> tuple[np.ndarray, Solved]:
    problem = _Proximal(data, certifier)
    rung = Rung("proximal", {"tol": tol, "max_iter": max_iter}, "proximal")
    try:
        solved = solve(problem, None, certify=problem.certificate, rungs=(rung,))
    except SolverFailedError as err:
        raise SolverFailedError(
            err.status,
            err.solver,
            f"after {max_iter} proximal iterations the certified gap is {certifier.gap:.1e}, "
            f"above `tol` = {tol:.0e}: raise `max_iter`, loosen `tol`, or use "
            "method='cvxpy' (moderate sizes)",
            err.attempts,
        ) from None
    return problem.Z(), solved


def _solve_cvxpy(data, certifier, tol, solver) -> tuple[np.ndarray, Solved]:
    obs = data.obs
    M = cp.Variable(data.shape)
    fit = cp.sum_squares(M[obs.rows, obs.cols] - data.y) / obs.n_observed
    weights = np.outer(data.root_p, data.root_q)
    problem = cp.Problem(cp.Minimize(fit + data.c * cp.square(cp.normNuc(cp.multiply(weights, M)))))
    try:
        solved = solve(
            problem, solver, None, sdp=True, certify=lambda: certifier(weights * as_array(M.value))
        )
    except SolverFailedError as err:
        last = err.attempts[-1] if err.attempts else None
        if last is None or last.gap is None:
            raise
        raise SolverFailedError(
            err.status,
            err.solver,
            f"the last solution certifies a relative gap of {last.gap:.1e}, above `tol` = "
            f"{tol:.0e}: loosen `tol`, or use method='proximal'",
            err.attempts,
        ) from None
    return weights * as_array(M.value), solved


def _closed_form(data: _Data, certifier: _Certifier, label: str) -> tuple[np.ndarray, Solved]:
    """Without a regularizer (keep = 1) y on Ω and zero elsewhere minimises; y = 0 gives 0."""
    Z = data.dense(data.y / data.w)
    cert = certifier(Z)
    return Z, Solved(label, "closed_form", cert.gap, (), iterations=0)


@cites("arora2021dropout", "salakhutdinov2010collaborative")
def solve_induced(
    obs: Observations,
    keep: float,
    width: int,
    *,
    method: Literal["auto", "cvxpy", "proximal"] = "auto",
    tol: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    solver: str | None = None,
    least_rank: bool = False,
) -> CompletionSolution:
    r"""Minimise the squared loss on the observed entries plus the induced regularizer.

    .. math:: \min_M\ F(M) = \frac1N \sum_{t=1}^N \big(y_t - M_{i_tj_t}\big)^2
              + \frac{\lambda}{d}\,\big\|\operatorname{diag}(\sqrt p)\, M\,
              \operatorname{diag}(\sqrt q)\big\|_*^2 ,

    λ = (1 − θ)/θ, p and q the empirical marginals of ``obs``: the convex problem the
    product form of dropout induces (:func:`induced_regularizer`), a squared weighted trace
    norm. Both methods are judged by one Fenchel duality gap, computed in NumPy from M.

    Parameters
    ----------
    obs : Observations
        The observed entries (:func:`observed`); every row and column must have one.
    keep : float
        Retain probability θ in (0, 1]. At θ = 1 there is no regularizer and every M equal
        to y on Ω minimises; the one returned is zero off Ω.
    width : int
        Width d of the factorization, ≥ 1; the regularizer is divided by it.
    method : {"auto", "cvxpy", "proximal"}
        ``"cvxpy"``: ``cp.square(cp.normNuc(.))``, a semidefinite program, down the
        package's solver ladder; its cost grows steeply with m + n. ``"proximal"``: FISTA
        with restarts on :math:`Z = PMQ`, partial SVDs once the rank is low (1000 × 1000
        with 10⁵ observations in minutes). ``"auto"``: cvxpy up to m·n = 2,500, else proximal.
    tol : float, optional
        The certified relative gap the solution must reach, in (0, 1); default 1e-8.
    max_iter : int
        Proximal iterations at most (the cvxpy solvers keep their own limits).
    solver : str, optional
        A cvxpy solver for ``method="cvxpy"`` (that solver only); None walks the ladder.
        The proximal method takes none.
    least_rank : bool
        When the solution's rank exceeds ``width``, search the minimisers for one of rank
        ≤ width (THEORY §9; the conv net's least-rank search with Ω's selection as the
        linear map) and return it if found and certified. Dense in m·n, so refused above
        m·n = 2,500; it can take far longer than the solve.

    Returns
    -------
    CompletionSolution
        ``M``, ``objective`` = ``fit`` + ``regularizer``, the certified ``gap`` (at most
        ``tol``), ``solver`` (a rung of the ladder or ``"proximal"``), ``iterations``, ``rank``.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations` or has an empty row or column, ``keep``
        is outside (0, 1], ``width`` or ``max_iter`` is not a positive integer, ``tol`` is
        not in (0, 1), ``method`` is unknown, or ``solver`` is not an installed cvxpy
        solver (or is given to the proximal method).
    SolverFailedError
        If no rung certifies a gap of at most ``tol`` (the proximal method within
        ``max_iter`` iterations).

    See Also
    --------
    equalize : a factorization of width d ≥ rank M whose product form attains the regularizer.

    References
    ----------
    [1] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.
    [2] R. Salakhutdinov, N. Srebro, Collaborative Filtering in a Non-Uniform World:
        Learning with the Weighted Trace Norm, NeurIPS 2010.

    Examples
    --------
    >>> from regtheory.completion import observed
    >>> obs = observed([0, 0, 1, 2, 2], [0, 1, 1, 0, 2], [1.0, 2.0, 1.0, -1.0, 0.5], (3, 3))
    >>> a = solve_induced(obs, keep=0.5, width=3, method="cvxpy")
    >>> b = solve_induced(obs, keep=0.5, width=3, method="proximal")
    >>> a.gap <= 1e-8 and b.gap <= 1e-8, b.solver
    (True, 'proximal')
    >>> bool(abs(a.objective - b.objective) <= 1e-7 * b.objective)
    True
    """
    start = time.perf_counter()
    obs = check_obs(obs)
    c = dropout_lambda(keep) / check_int(width, "width")
    p, q = check_covered(obs)
    search = _check_least_rank(least_rank, obs.shape, width)
    result = _solve(obs, c, p, q, method, tol, max_iter, solver, start, width=search)
    return result if least_rank else dataclasses.replace(result, attained=result.rank <= width)


def _check_least_rank(least_rank: object, shape: tuple[int, int], width: int) -> int | None:
    """The width to search for with ``least_rank=True`` (None: no search), checked."""
    if not isinstance(least_rank, bool):
        raise InvalidParameterError(f"`least_rank` must be True or False, got {least_rank!r}")
    m, n = shape
    if least_rank and m * n > LEAST_RANK_MAX_ENTRIES:
        raise InvalidParameterError(
            f"`least_rank=True` needs m·n ≤ {LEAST_RANK_MAX_ENTRIES:,} (its linear conditions "
            f"are dense), got {m} × {n}"
        )
    return width if least_rank else None


@cites("salakhutdinov2010collaborative", "foygel2011learning")
def solve_weighted_trace_norm(
    obs: Observations,
    weight: float,
    *,
    smoothing: float = 0.0,
    method: Literal["auto", "cvxpy", "proximal"] = "auto",
    tol: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    solver: str | None = None,
) -> CompletionSolution:
    r"""Minimise the squared loss on Ω plus a squared (smoothed) weighted trace norm.

    .. math:: \min_M\ \frac1N \sum_{t=1}^N \big(y_t - M_{i_tj_t}\big)^2
              + \mu\,\big\|\operatorname{diag}(\sqrt{\tilde p})\, M\,
              \operatorname{diag}(\sqrt{\tilde q})\big\|_*^2 ,
              \qquad \tilde p = (1 - \zeta)\, p + \zeta/m, \quad
              \tilde q = (1 - \zeta)\, q + \zeta/n,

    with p, q the empirical marginals of ``obs``, μ = ``weight`` and ζ = ``smoothing``:
    the weighted trace norm of Salakhutdinov & Srebro [1] at ζ = 0 (the problem dropout
    induces, :func:`solve_induced`, is μ = λ/d), the trace norm :math:`\|M\|_*^2/(mn)` at
    ζ = 1, and the smoothed weighted trace norm of Foygel et al. [2] in between. The norm
    is squared, as dropout induces it; the unsquared penalty :math:`\nu\|\cdot\|_*` has
    the same minimisers along its path (at the solution, ν = 2μ times the norm), so a
    weight chosen on held-out entries over a grid selects among the same matrices. The
    engine and the certificate are those of :func:`solve_induced`.

    Parameters
    ----------
    obs : Observations
        The observed entries (:func:`observed`). With ``smoothing = 0`` every row and
        column must have one; with ``smoothing > 0`` an empty row or column is allowed (its
        entries are then set by the regularizer alone, to zero).
    weight : float
        μ ≥ 0; 0 leaves y on Ω and zero elsewhere.
    smoothing : float
        ζ in [0, 1].
    method : {"auto", "cvxpy", "proximal"}
        As in :func:`solve_induced`.
    tol : float, optional
        The certified relative gap asked for, in (0, 1); default 1e-8.
    max_iter : int
        Proximal iterations at most.
    solver : str, optional
        A cvxpy solver for ``method="cvxpy"``; None walks the ladder.

    Returns
    -------
    CompletionSolution
        As :func:`solve_induced`; ``regularizer`` is the second term above.

    Raises
    ------
    InvalidParameterError
        If ``weight`` is negative or not finite, ``smoothing`` is outside [0, 1], ``obs``
        has an empty row or column at ζ = 0, or an option is invalid as in
        :func:`solve_induced`.
    SolverFailedError
        If no method certifies a gap of at most ``tol``.

    References
    ----------
    [1] R. Salakhutdinov, N. Srebro, Collaborative Filtering in a Non-Uniform World:
        Learning with the Weighted Trace Norm, NeurIPS 2010.
    [2] R. Foygel, R. Salakhutdinov, O. Shamir, N. Srebro, Learning with the Weighted
        Trace-norm under Arbitrary Sampling Distributions, NeurIPS 2011.

    Examples
    --------
    >>> from regtheory.completion import observed, solve_induced
    >>> obs = observed([0, 0, 1, 2, 2], [0, 1, 1, 0, 2], [1.0, 2.0, 1.0, -1.0, 0.5], (3, 3))
    >>> a = solve_weighted_trace_norm(obs, 0.5, method="proximal")  # μ = λ/d = 1/2
    >>> b = solve_induced(obs, keep=0.5, width=2, method="proximal")
    >>> bool(abs(a.objective - b.objective) <= 1e-7 * b.objective)
    True
    >>> c = solve_weighted_trace_norm(obs, 0.5, smoothing=1.0, method="proximal")
    >>> bool(abs(c.regularizer - 0.5 * np.linalg.norm(c.M, "nuc") ** 2 / 9) < 1e-9)
    True
    """
    start = time.perf_counter()
    obs = check_obs(obs)
    c = check_nonnegative(weight, "weight")
    if not np.isfinite(c):
        raise InvalidParameterError(f"`weight` must be finite, got {weight!r}")
    zeta = check_nonnegative(smoothing, "smoothing")
    if zeta > 1.0:
        raise InvalidParameterError(f"`smoothing` must be in [0, 1], got {smoothing!r}")
    if zeta == 0.0:
        p, q = check_covered(obs)
    else:
        m, n = obs.shape
        p = (1.0 - zeta) * obs.row_marginals + zeta / m
        q = (1.0 - zeta) * obs.col_marginals + zeta / n
    return _solve(obs, c, p, q, method, tol, max_iter, solver, start)


def _solve(obs, c, p, q, method, tol, max_iter, solver, start, width=None) -> CompletionSolution:
    """Solve fit + c‖diag(√p) M diag(√q)‖_*² (p, q > 0) by the method asked for.

    With a ``width``, a solution of higher rank is replaced by a certified minimiser of rank
    ≤ width when the search of :func:`_least_rank` finds one.
    """
    data, chosen, tol = _checked(obs, c, p, q, method, tol, max_iter, solver)
    certifier = _Certifier(data, tol)
    if data.scale == 0.0:
        Z, solved = _closed_form(data, certifier, "closed form (y = 0)")
    elif data.c == 0.0:
        Z, solved = _closed_form(data, certifier, "closed form (no regularizer)")
    elif chosen == "cvxpy":
        Z, solved = _solve_cvxpy(data, certifier, tol, solver)
    else:
        Z, solved = _solve_proximal(data, certifier, tol, max_iter)
    attained = None
    if width is not None:
        Z, attained = _least_rank(data, certifier, Z, width)
        solved = dataclasses.replace(solved, gap=certifier.gap)  # the gap of the Z returned
    return _solution(data, certifier, Z, solved, start, attained)


def _least_rank(
    data: _Data, certifier: _Certifier, Z: np.ndarray, width: int
) -> tuple[np.ndarray, bool]:
    """Z, or a certified minimiser of rank ≤ width on its face; and whether rank ≤ width.

    The minimisers share their values on Ω and their nuclear norm, so they are those of
    min{‖Z‖_* : Z_Ω = z}: the conv net's least-rank search applies with the selection of Ω
    as its linear map (dense, hence the size limit). The certifier judges the result again.
    """
    m, n = data.shape
    if numerical_rank(certifier.sigma) <= width:
        return Z, True
    select = np.zeros((data.obs.n_observed, m * n))
    select[np.arange(data.obs.n_observed), data.obs.rows * n + data.obs.cols] = 1.0
    found_Z, found = least_rank_minimiser(Z, select, width)
    if not found:
        certifier(Z)  # keep the certificate of the Z returned
        return Z, False
    if not certifier(found_Z).holds or numerical_rank(certifier.sigma) > width:
        certifier(Z)
        return Z, False
    return found_Z, True


def _solution(
    data: _Data,
    certifier: _Certifier,
    Z: np.ndarray,
    solved: Solved,
    start: float,
    attained: bool | None = None,
) -> CompletionSolution:
    """The result for the solution Z (scaled units); the certifier holds Z's singular values."""
    obs = data.obs
    M = data.scale * Z / np.outer(data.root_p, data.root_q)
    fit = float(np.mean((obs.values - M[obs.rows, obs.cols]) ** 2))
    regularizer = data.c * (data.scale * float(certifier.sigma.sum())) ** 2
    return CompletionSolution(
        M=M,
        objective=fit + regularizer,
        fit=fit,
        regularizer=regularizer,
        solve_time=time.perf_counter() - start,
        **solved.fields(),
        rank=numerical_rank(certifier.sigma),
        attained=attained,
    )


def _checked(obs, c, p, q, method, tol, max_iter, solver) -> tuple[_Data, str, float]:
    """The options checked; the problem scaled, the method resolved, the tolerance."""
    check_choice(method, "method", METHODS)
    tol = check_positive(DEFAULT_TOL if tol is None else tol, "tol")
    if tol >= 1.0:
        raise InvalidParameterError(f"`tol` (a relative gap) must be in (0, 1), got {tol!r}")
    check_int(max_iter, "max_iter")
    m, n = obs.shape
    if method == "auto":
        method = "cvxpy" if m * n <= CVXPY_MAX_ENTRIES else "proximal"
    if method == "proximal" and solver is not None:
        raise InvalidParameterError(
            f"`solver` names a cvxpy solver, which method='proximal' does not use; got {solver!r}"
        )
    scale = float(np.sqrt(np.mean(obs.values**2)))
    data = _Data(
        obs,
        obs.values / scale if scale > 0 else obs.values,
        1.0 / np.sqrt(p[obs.rows] * q[obs.cols]),
        np.sqrt(p),
        np.sqrt(q),
        c,
        scale,
    )
    return data, method, tol
