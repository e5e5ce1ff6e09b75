r"""The induced regularizer of a deep linear network with dropout at every hidden layer.

The network :math:`x \mapsto W_L D_{L-1} W_{L-1} \cdots D_1 W_1 x` has L − 1 hidden
layers of ``width`` units, each followed by an independent inverted Bernoulli mask
:math:`D_i = \operatorname{diag}(m_i)/\theta` (Mianjy & Arora [1]). With
:math:`C = \mathbb E[xx^\top]` its exact dropout penalty is the moment propagation of
THEORY §6 with every mask random, summed over all subsets of layers at once:

.. math::

    Q_0 = C,\qquad A_i = W_i Q_{i-1} W_i^\top,\qquad
    Q_i = A_i + \lambda\,\mathrm{Diag}(A_i),\qquad
    R(W_1, \dots, W_L) = \operatorname{tr}(W_L Q_{L-1} W_L^\top) - \operatorname{tr}(MCM^\top),

:math:`\lambda = (1-\theta)/\theta`, :math:`M = W_L \cdots W_1`. The induced regularizer is

.. math:: \Theta_L(M) = \inf\{R(W_1, \dots, W_L) : W_L \cdots W_1 = M\} .

For L = 2 it is :math:`(\lambda/w)\|MC^{1/2}\|_*^2` (THEORY (2)); for L > 2 it is
minimised numerically here, and compared with a bound that holds at every depth:

.. math:: \Theta_L(M) \;\ge\; \nu_L\,\|MC^{1/2}\|_*^2,\qquad
          \nu_L = \Big(1 + \frac{\lambda}{w}\Big)^{L-1} - 1 ,

with equality when M has rank one. Proof: the term of a set T of t hidden layers in the
expansion of THEORY §6 is :math:`\lambda^t\sum_\pi a_\pi^2`, a sum over the
:math:`w^t` paths π that pick one unit in each layer of T, where :math:`a_\pi` is the
product of the norms of the pieces of the path (the last column block, the entries of the
inner products, the first row block times :math:`C^{1/2}`); the rank-one matrices
of norm :math:`a_\pi` sum to :math:`MC^{1/2}`, so by Cauchy–Schwarz and the triangle
inequality the term is at least :math:`(\lambda/w)^t\|MC^{1/2}\|_*^2`, and the binomial
sum over T gives :math:`\nu_L`. For :math:`MC^{1/2} = \sigma uv^\top` the factorization
:math:`W_1 = \mathbf 1 v^\top C^{-1/2}`, :math:`W_i = \mathbf 1\mathbf 1^\top/w`,
:math:`W_L = (\sigma/w)\,u\mathbf 1^\top` pays exactly :math:`\nu_L\sigma^2`. Since the
bound is convex and met on rank-one maps, it is the convex envelope of
:math:`\Theta_L` (the rank-one pieces of the SVD, each scaled to the whole nuclear norm,
average to M), in line with [1]. For L ≥ 3 and rank ≥ 2 the numbers sit strictly above it
and depend on the singular values, not only on the nuclear norm (at depth 3 a rank-three
isometry pays over 1.2 times the bound that the rank-one map of equal nuclear norm meets).

Maps with r equal non-zero singular values σ. With an equal-norm Parseval frame F
(w × r, :math:`F^\top F = I`, every row of squared norm r/w; it exists for every w ≥ r),
the factorization :math:`W_1 = F`, :math:`W_i = FF^\top`, :math:`W_L = \sigma F^\top` (in
the singular bases of :math:`MC^{1/2}`) pays

.. math:: r\sigma^2\Big(\Big(1 + \frac{\lambda r}{w}\Big)^{L-1} - 1\Big)
          = \frac{\|MC^{1/2}\|_*^2}{r}\Big(\Big(1 + \frac{\lambda r}{w}\Big)^{L-1} - 1\Big),

an upper bound on :math:`\Theta_L`; in every case computed (ranks 2 and 3, widths from
r to 2r, divisible or not, depths up to 5) the numerical minimum equals it to 1e-6. That
the bound is the minimum is an observation, not a proof.

How the constraint is kept. Write :math:`P = W_{L-1}\cdots W_1` and :math:`Q = Q_{L-1}`
(which do not depend on :math:`W_L`). For fixed inner factors, R is a convex quadratic in
:math:`W_L` under the linear constraint :math:`W_L P = M`; when Q is positive definite and
P has full column rank its minimiser and minimum are

.. math::

    W_L^\star = M K^{-1} P^\top Q^{-1},\qquad K = P^\top Q^{-1} P,\qquad
    F(W_1, \dots, W_{L-1}) = \operatorname{tr}(M K^{-1} M^\top) - \operatorname{tr}(MCM^\top).

So :math:`\Theta_L(M) = \inf F` over the inner factors alone, without a constraint: the
last layer is eliminated exactly (variable projection), every point the optimiser visits
is a factorization of M, and no penalty weight or final projection is needed. A
parameterisation :math:`W_L = MP^+` would also keep the constraint, but it fixes the part
of :math:`W_L` outside the range of P and so misses the optimum when width > rank M.
By the envelope theorem (Lagrange multiplier :math:`B = MK^{-1}`),

.. math::

    dF = \langle W_L^{\star\top} W_L^\star,\, dQ\rangle
         - 2\,\langle W_L^{\star\top} B,\, dP\rangle ,

which is pulled back through the propagation by its adjoint
(:math:`G \leftarrow W_i^\top (G + \lambda\,\mathrm{Diag}\,G)\, W_i`): an exact gradient,
checked against central finite differences.

Reductions, each exact. (a) Whitening: R depends on :math:`W_1` only through
:math:`W_1 C W_1^\top`, so :math:`\Theta_L(M; C) = \Theta_L(MC^{1/2}; I)` for positive
definite C. (b) With :math:`MC^{1/2} = A\,\mathrm{diag}(s)\,B^\top` of rank r, replacing
:math:`W_1` by :math:`W_1 BB^\top` and :math:`W_L` by :math:`AA^\top W_L` keeps the map and
does not increase R (the propagation is monotone in the PSD order), so the problem is that
of the r × r map :math:`\mathrm{diag}(s)`, on which P must have full column rank r (else
:math:`W_LP` could not be invertible): F is finite on the whole feasible set and grows
without bound towards its edge. (c) :math:`\Theta_L(cM) = c^2\Theta_L(M)`: the solve runs
at :math:`\|s\|_1 = 1`.

References
----------
[1] P. Mianjy, R. Arora, On Dropout and Nuclear Norm Regularization, ICML 2019.
[2] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018 (L = 2).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from threadpoolctl import threadpool_limits

from .._grammar import RngLike, as_rng, transition_to_rng
from .._linalg import numerical_rank, rounding_rtol, sqrtm_psd
from .._references import Cited, cites
from .._results import freeze_arrays
from .._ties import argmin_tied
from .._validation import (
    InvalidParameterError,
    check_array,
    check_cov,
    check_int,
)
from ..masks import dropout_lambda

__all__ = ["DeepRegularizerResult", "deep_induced_regularizer"]


@dataclass(frozen=True)
class DeepRegularizerResult(Cited):
    r"""The smallest dropout penalty of a deep linear net over the factorizations of a map.

    Attributes
    ----------
    value : float
        :math:`\Theta_L(M)`: the lowest penalty found, over all starts (an upper bound
        on the infimum, attained by ``factors``).
    factors : tuple of ndarrays
        :math:`W_1, \dots, W_L` (read-only), shapes (width, d_in), (width, width), …,
        (d_out, width), with :math:`W_L\cdots W_1 = M` to rounding (``constraint_error``).
        The penalty is invariant under positive rescalings of each hidden unit; the
        factors are returned with equal Frobenius norms.
    nuclear : float
        The two-layer value :math:`(\lambda/w)\|MC^{1/2}\|_*^2` (THEORY (2)).
    ratio : float
        ``value / nuclear``.
    lower_bound : float
        :math:`\nu_L\|MC^{1/2}\|_*^2`, :math:`\nu_L = (1+\lambda/w)^{L-1} - 1`: a lower
        bound on :math:`\Theta_L(M)`, attained at rank one (module docstring).
    start_values : ndarray
        The penalty at the end of every start, in order. Starts within 1e-9 (relative)
        of the lowest count as tied; the first of them gives ``factors``.
    spread : float
        ``(max(start_values) - value) / value``: how far the worst start stopped above
        the best (0 when all starts agree).
    constraint_error : float
        :math:`\|W_L\cdots W_1 - M\|_F / \|M\|_F` of the returned factors.
    success : bool
        Whether L-BFGS-B reported convergence at the best start (it can stop with a
        failed line search where floating point allows no further progress;
        ``gradient_norm`` says how stationary the point is).
    message : str
        L-BFGS-B's message at the best start.
    gradient_norm : float
        Stationarity at the best start, free of units: ‖∇F‖·‖z‖/F over the stacked
        inner factors z of the solve.
    solve_time : float
    """

    value: float
    factors: tuple[np.ndarray, ...]
    nuclear: float
    ratio: float
    lower_bound: float
    start_values: np.ndarray
    spread: float
    constraint_error: float
    success: bool
    message: str
    gradient_norm: float
    solve_time: float

    def __post_init__(self) -> None:
        freeze_arrays(self)
        for W in self.factors:
            W.flags.writeable = False

    @property
    def grad_norm(self) -> float:
        """Deprecated name of ``gradient_norm``."""
        warnings.warn(
            "grad_norm is deprecated; use gradient_norm", DeprecationWarning, stacklevel=2
        )
        return self.gradient_norm


@cites("mianjy2019dropout")
@transition_to_rng
def deep_induced_regularizer(
    M: ArrayLike,
    keep: float,
    width: int,
    depth: int,
    *,
    cov: ArrayLike | None = None,
    starts: int = 10,
    rng: RngLike = 0,
) -> DeepRegularizerResult:
    r"""Induced regularizer :math:`\Theta_L(M)` of a deep linear net, dropout at every hidden layer.

    .. math::

        \Theta_L(M) = \min_{W_L\cdots W_1 = M}\;
            \mathbb E_{x, m}\|W_L D_{L-1} W_{L-1}\cdots D_1 W_1 x\|^2 - \mathbb E_x\|Mx\|^2 ,

    L = ``depth`` layers, L − 1 hidden layers of ``width`` units, each followed by an
    independent Bernoulli(``keep``) mask scaled by 1/keep. The penalty is the exact moment
    propagation (module docstring); the last layer is eliminated in closed form, so every
    iterate is an exact factorization of M, and the inner factors are minimised with
    L-BFGS-B and the exact gradient from ``starts`` random points (i.i.d. Gaussian entries
    of variance 1/fan-in). The problem is not convex: the value is the best local minimum
    found, an upper bound on :math:`\Theta_L`, reported with the spread of the starts.

    Parameters
    ----------
    M : array (d_out, d_in)
        End-to-end map, not zero.
    keep : float
        Retain probability θ in (0, 1) (at θ = 1 every factorization costs nothing).
    width : int
        Units per hidden layer w, at least rank(M).
    depth : int
        Number of weight layers L ≥ 2 (L − 1 dropout layers).
    cov : array (d_in, d_in), optional
        Input second moment C = E[x xᵀ], positive definite; ``None`` means C = I.
    starts : int
        Random initialisations.
    rng : int, numpy.random.Generator or None
        Source of the starts; the same int seed gives the same numbers.

    Returns
    -------
    DeepRegularizerResult
        The best local minimum found, its factors, and the values of all the starts.

    Raises
    ------
    InvalidParameterError
        If an argument is refused: ``M`` zero or not finite, ``keep`` not in (0, 1),
        ``width`` below rank(M), ``depth`` below 2, ``cov`` not positive definite.

    See Also
    --------
    regtheory.fc.induced_regularizer : the closed form at depth 2.
    regtheory.network.dropout_penalty : the penalty of given factors on data.

    References
    ----------
    [1] P. Mianjy, R. Arora, On Dropout and Nuclear Norm Regularization, ICML 2019.

    Examples
    --------
    At depth 2 it is the squared nuclear norm, (λ/w)‖M‖_*² = (1/2)·3² here:

    >>> import numpy as np
    >>> res = deep_induced_regularizer(np.diag([2.0, 1.0]), keep=0.5, width=2, depth=2, starts=2)
    >>> round(res.value, 6), round(res.ratio, 6)
    (4.5, 1.0)
    """
    M, lam, width, depth, starts, C, rng = _check_deep(M, keep, width, depth, starts, cov, rng)
    A, s, Bt, r = _whitened_svd(M, C, lam, width)
    scale = float(s[:r].sum())
    objective = _reduced_objective(s[:r] / scale, lam)
    shapes = [(width, r)] + [(width, width)] * (depth - 2)
    start = time.perf_counter()
    results = _minimise(objective, shapes, starts=starts, rng=rng)
    values = np.array([r_.fun for r_ in results]) * scale**2
    best = results[argmin_tied(values)]
    inner = _unstack(best.x, shapes)
    value, grads, last = objective(inner)
    grad = np.concatenate([g.ravel() for g in grads])
    factors = _original_coordinates(inner, last, Bt[:r].T, scale * A[:, :r], C)
    product = functools.reduce(lambda acc, W: W @ acc, factors[1:], factors[0])
    nuclear = lam / width * scale**2
    return DeepRegularizerResult(
        value=float(value) * scale**2,
        factors=tuple(factors),
        nuclear=nuclear,
        ratio=float(value) * scale**2 / nuclear,
        lower_bound=((1.0 + lam / width) ** (depth - 1) - 1.0) * scale**2,
        start_values=values,
        spread=float((values.max() - values.min()) / values.min()),
        constraint_error=float(np.linalg.norm(product - M) / np.linalg.norm(M)),
        success=bool(best.success),
        message=str(best.message),
        gradient_norm=float(np.linalg.norm(grad) * np.linalg.norm(best.x) / value),
        solve_time=time.perf_counter() - start,
    )


def _check_deep(
    M: ArrayLike,
    keep: float,
    width: int,
    depth: int,
    starts: int,
    cov: ArrayLike | None,
    rng: RngLike,
) -> tuple[np.ndarray, float, int, int, int, np.ndarray | None, np.random.Generator]:
    """The arguments of :func:`deep_induced_regularizer`, checked in order, with λ."""
    M = check_array(M, "M", ndim=2)
    lam = dropout_lambda(keep)
    width, depth = check_int(width, "width"), check_int(depth, "depth", minimum=2)
    starts = check_int(starts, "starts")
    C = check_cov(cov, M.shape[1], require_pd=True)
    return M, lam, width, depth, starts, C, as_rng(rng)


def _whitened_svd(
    M: np.ndarray, C: np.ndarray | None, lam: float, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """SVD of MC^{1/2} and its rank r, after the checks that need them."""
    if lam == 0.0:
        raise InvalidParameterError(
            "`keep` must be below 1: without dropout every factorization has zero penalty"
        )
    A, s, Bt = np.linalg.svd(M if C is None else M @ sqrtm_psd(C), full_matrices=False)
    r = numerical_rank(s, rtol=rounding_rtol(M.shape))
    if r == 0:
        raise InvalidParameterError("`M` must not be zero: its regularizer is 0 at any depth")
    if width < r:
        raise InvalidParameterError(
            f"`width` ({width}) must be at least rank(M) ({r}): a narrower network "
            "cannot represent M"
        )
    return A, s, Bt, r


def _original_coordinates(
    inner: list[np.ndarray],
    last: np.ndarray,
    right: np.ndarray,
    left: np.ndarray,
    C: np.ndarray | None,
) -> list[np.ndarray]:
    """Factors of M from those of the reduced map: W_1 ← W_1 Bᵀ C^{-1/2}, W_L ← (σ A) W_L.

    ``right`` = B and ``left`` = σ A are the scaled singular vectors of MC^{1/2}; the
    layers are then rescaled to equal norms (:func:`_equal_norms`).
    """
    first = inner[0] @ right.T
    if C is not None:
        first = first @ sqrtm_psd(C, inverse=True)
    return _equal_norms([first, *inner[1:], left @ last])


def _unstack(z: np.ndarray, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    out, k = [], 0
    for shape in shapes:
        n = shape[0] * shape[1]
        out.append(z[k : k + n].reshape(shape).copy())
        k += n
    return out


def _equal_norms(factors: list[np.ndarray]) -> list[np.ndarray]:
    """Rescale the layers by numbers whose product is 1 so that their Frobenius norms agree.

    A scalar per layer is a rescaling of every hidden unit alike, under which both the map
    and the dropout penalty are invariant.
    """
    norms = np.array([np.linalg.norm(W) for W in factors])
    target = np.exp(np.mean(np.log(norms)))
    return [W * (target / n) for W, n in zip(factors, norms, strict=True)]


def _reduced_objective(
    s: np.ndarray, lam: float
) -> Callable[[Sequence[np.ndarray]], tuple[float, list[np.ndarray], np.ndarray]]:
    """F of the module docstring for the map diag(s), white input: (F, ∇F, W_L*).

    The argument is the list of inner factors W_1 (w, r), W_2, …, W_{L-1} (w, w).
    Returns F = inf over W_L of the penalty, its gradient in each inner factor, and the
    minimising last layer W_L* (r, w). F is +inf where Q is not positive definite or P
    not of full column rank (the edge of the feasible set, never a minimum).
    """
    N = np.diag(s)
    base = float(np.sum(s * s))

    def diag(A: np.ndarray) -> tuple[np.ndarray, ...]:
        return np.diag_indices(A.shape[0])

    def objective(inner: Sequence[np.ndarray]) -> tuple[float, list[np.ndarray], np.ndarray]:
        Q, P = np.eye(s.size), np.eye(s.size)
        Qs, Ps = [], []
        for W in inner:
            Qs.append(Q)
            Ps.append(P)
            Q = W @ Q @ W.T
            Q[diag(Q)] *= 1.0 + lam  # A + λ Diag(A)
            P = W @ P
        try:
            QiP = np.linalg.solve(Q, P)
            B = np.linalg.solve(P.T @ QiP, N).T  # N K^{-1} (K and N symmetric)
        except np.linalg.LinAlgError:
            return np.inf, [np.zeros_like(W) for W in inner], np.zeros((s.size, Q.shape[0]))
        last = B @ QiP.T  # W_L* = N K^{-1} Pᵀ Q^{-1}
        value = float(np.sum(B * N)) - base
        G, H = last.T @ last, -2.0 * last.T @ B
        grads = [np.empty(0)] * len(inner)
        for i in range(len(inner) - 1, -1, -1):
            W = inner[i]
            Gp = G.copy()
            Gp[diag(Gp)] *= 1.0 + lam
            grads[i] = 2.0 * Gp @ W @ Qs[i] + H @ Ps[i].T
            G, H = W.T @ Gp @ W, W.T @ H
        return value, grads, last

    return objective


def _minimise(
    objective: Callable[[Sequence[np.ndarray]], tuple[float, list[np.ndarray], np.ndarray]],
    shapes: Sequence[tuple[int, int]],
    *,
    starts: int,
    rng: np.random.Generator,
) -> list[optimize.OptimizeResult]:
    """L-BFGS-B on the stacked inner factors from ``starts`` random points, in order."""

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads, _ = objective(_unstack(z, shapes))
        return value, np.concatenate([g.ravel() for g in grads])

    # The matrices are a few dozen entries wide: BLAS threads only add synchronisation
    # to L-BFGS-B's small products, and slow them down when the cores are shared.
    with threadpool_limits(limits=1, user_api="blas"):
        results = [_one_start(fun, shapes, rng) for _ in range(starts)]
    return results


def _one_start(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    shapes: Sequence[tuple[int, int]],
    rng: np.random.Generator,
) -> optimize.OptimizeResult:
    """One L-BFGS-B run from i.i.d. Gaussian factors of variance 1/fan-in."""
    z0 = np.concatenate([rng.standard_normal(a * b) / np.sqrt(b) for a, b in shapes])
    return optimize.minimize(
        fun,
        z0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-12, "ftol": 1e-15},
    )
