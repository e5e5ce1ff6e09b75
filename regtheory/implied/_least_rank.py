r"""Minimisers of least rank of :math:`\min\{\|Z\|_* : \mathcal A(Z) = t\}`.

An interior-point solver returns a minimiser in the relative interior of the
set of minimisers, i.e. one of *largest* rank. A factored network with C
hidden channels attains the convex value (7) only through a minimiser of rank
≤ C, so the rank matters. With the SVD :math:`Z^\star = P\Sigma Q^\top`
(rank r) and the balanced factors :math:`P_s = P\Sigma^{1/2}`,
:math:`Q_s = Q\Sigma^{1/2}`, every

.. math::

    Z(G) = P_s G Q_s^\top,\qquad G \succeq 0,\quad
    \mathcal A(P_s G Q_s^\top) = t,\quad \langle G, \Sigma\rangle = \operatorname{tr}\Sigma

is a minimiser too: it is feasible, and :math:`\|Z(G)\|_* \le \tfrac12
\operatorname{tr}\big([P_s; Q_s]\,G\,[P_s; Q_s]^\top\big) = \langle G, \Sigma\rangle
= \|Z^\star\|_*`, the optimum (the lifted SDP's objective). Its rank is at most
rank G. Two searches over this face, cheapest first:

1. *Rank reduction* (Pataki's argument): while a symmetric direction Δ ≠ 0
   keeps the linear conditions (a null space), move G = I + τΔ to the boundary
   of the PSD cone, which lowers the rank by at least one. Exact linear
   algebra; it ends at an extreme point, not always one of least rank.
2. *Factored search* at a target rank C: G = HHᵀ with H of C columns,
   the linear conditions solved by non-linear least squares from several
   starts (Burer–Monteiro).

The caller certifies the result independently (its nuclear norm against a dual
bound), so neither search has to be trusted.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .._linalg import balanced_factors, numerical_rank

__all__ = ["least_rank_minimiser"]

# Singular values below this fraction of the largest are the solver's rounding. Tighter
# than the package's default (regtheory._linalg.RANK_RTOL, 1e-6) on purpose: the face
# searched below must hold every minimiser, so it keeps every direction the solver left
# above its own tolerance (1e-9); the channel counts (7) is attained with, and the
# factorizations of conv_induced_regularizer, are read with this threshold.
RANK_RTOL = 1e-7
# A direction along the face is a null vector of its linear conditions: a singular
# value of the conditions at most this fraction of the largest counts as zero.
NULL_RTOL = 1e-9


def _face(Z: np.ndarray, A: np.ndarray):
    """Balanced factors of Z and the linear conditions L vec(G) = b of its face."""
    P, s, Qt = np.linalg.svd(Z, full_matrices=False)
    r = numerical_rank(s, rtol=RANK_RTOL)
    (Ps, Qs), sig = balanced_factors(P, s, Qt, r), s[:r]
    # vec(Ps G Qsᵀ) = (Ps ⊗ Qs) vec(G) for row-major vecs
    L = np.vstack([A @ np.kron(Ps, Qs), np.diag(sig).ravel()[None, :]])
    return Ps, Qs, sig, L


def _reduce(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Rank reduction along the face until no direction keeps the conditions."""
    while True:
        Ps, Qs, sig, L = _face(Z, A)
        r = sig.size
        if r <= 1:
            return Z
        iu = np.triu_indices(r)
        # symmetric Δ from its upper triangle: vec(Δ) = S @ d
        S = np.zeros((r * r, iu[0].size))
        S[iu[0] * r + iu[1], np.arange(iu[0].size)] = 1.0
        S[iu[1] * r + iu[0], np.arange(iu[0].size)] = 1.0
        M = L @ S
        _, sv, Vt = np.linalg.svd(M)
        null = Vt[numerical_rank(sv, rtol=NULL_RTOL) :]
        if null.shape[0] == 0:
            return Z
        D = (S @ null[0]).reshape(r, r)
        # <Δ, Σ> = 0 with Σ ≻ 0, so Δ has a positive eigenvalue; step to make I + τΔ singular
        tau = -1.0 / np.linalg.eigvalsh(D)[-1]
        Z = Ps @ (np.eye(r) + tau * D) @ Qs.T


def _search(Z: np.ndarray, A: np.ndarray, rank: int, starts: int) -> np.ndarray | None:
    """A minimiser Ps HHᵀ Qsᵀ with H of ``rank`` columns, or None if none was found."""
    Ps, Qs, sig, L = _face(Z, A)
    r = sig.size
    b = L @ np.eye(r).ravel()
    nb = np.linalg.norm(b)
    Lr = L.reshape(-1, r, r)
    Lsym = Lr + Lr.transpose(0, 2, 1)

    def residual(h):
        H = h.reshape(r, rank)
        return (L @ (H @ H.T).ravel() - b) / nb

    def jacobian(h):
        return np.einsum("kab,bc->kac", Lsym, h.reshape(r, rank)).reshape(b.size, -1) / nb

    rng = np.random.default_rng(0)  # a fixed search: same input, same minimiser
    for i in range(starts):
        if i == 0:  # keep the largest singular directions
            H0 = np.eye(r)[:, :rank] * np.sqrt(sig.sum() / sig[:rank].sum())
        else:
            H0 = rng.standard_normal((r, rank)) / np.sqrt(rank)
        sol = optimize.least_squares(
            residual,
            H0.ravel(),
            jac=jacobian,
            method="trf",
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
            max_nfev=500,
        )
        if np.linalg.norm(sol.fun) <= 1e-10:
            H = sol.x.reshape(r, rank)
            return Ps @ H @ H.T @ Qs.T
    return None


def least_rank_minimiser(Z: np.ndarray, A: np.ndarray, rank: int, *, starts: int = 6):
    """A minimiser of rank ≤ ``rank`` on the face of Z, or the lowest-rank one found.

    Parameters
    ----------
    Z : array (m, n)
        A minimiser of min{‖Z‖_* : A vec(Z) = t} (row-major vec).
    A : array (L, m·n)
        The linear map.
    rank : int
        The rank wanted (the number of channels).
    starts : int
        Starts of the factored search.

    Returns
    -------
    (Z', found) : (array, bool)
        ``found`` says whether rank Z' ≤ ``rank``; if not, Z' is the reduced
        minimiser (an upper bound on the least rank).
    """
    if numerical_rank(np.linalg.svd(Z, compute_uv=False), rtol=RANK_RTOL) <= rank:
        return Z, True
    reduced = _reduce(Z, A)
    if numerical_rank(np.linalg.svd(reduced, compute_uv=False), rtol=RANK_RTOL) <= rank:
        return reduced, True
    # An extreme point is the whole face of itself: search the face of the solver's
    # (relative-interior) minimiser, which holds every minimiser.
    found = _search(Z, A, rank, starts)
    return (reduced, False) if found is None else (found, True)
