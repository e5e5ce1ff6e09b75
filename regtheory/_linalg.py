"""Small linear-algebra helpers shared by several modules."""

from __future__ import annotations

import numpy as np

__all__ = ["RANK_RTOL", "balanced_factors", "numerical_rank", "rounding_rtol", "sqrtm_psd"]

#: Singular values at most this fraction of the largest count as zero. Solver output
#: carries the solver's tolerance (1e-9 and looser) in its small singular values, so a
#: rank read off a cvxpy solution needs a relative threshold well above rounding.
RANK_RTOL = 1e-6


def rounding_rtol(shape: tuple[int, ...]) -> float:
    """The threshold of LAPACK rounding, max(shape) · eps (NumPy's ``matrix_rank``).

    The rank of a matrix given exactly (not the output of an iterative solver):
    only what rounding of its SVD leaves counts as zero.
    """
    return max(shape) * float(np.finfo(float).eps)


def numerical_rank(s: np.ndarray, *, rtol: float = RANK_RTOL) -> int:
    """Number of singular values ``s`` above ``rtol`` times the largest (0 for a zero matrix)."""
    s = np.asarray(s, dtype=float)
    if s.size == 0 or s.max() <= 0.0:
        return 0
    return int(np.sum(s > rtol * s.max()))


def balanced_factors(
    P: np.ndarray, s: np.ndarray, Qt: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""Balanced factors of an SVD :math:`P\operatorname{diag}(s)Q^\top` cut at ``rank``.

    :math:`U = P_r\operatorname{diag}(\sqrt{s_r})`, :math:`V = Q_r\operatorname{diag}(\sqrt{s_r})`,
    so :math:`UV^\top` is the rank-r truncation and :math:`U^\top U = V^\top V =
    \operatorname{diag}(s_r)`.
    """
    root = np.sqrt(s[:rank])
    return P[:, :rank] * root, Qt[:rank].T * root


def sqrtm_psd(cov: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    """Symmetric square root C^{1/2} (or C^{-1/2}) of a checked PSD matrix."""
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.clip(eigval, 0.0, None)
    power = np.sqrt(eigval)
    if inverse:
        power = 1.0 / power
    return (eigvec * power) @ eigvec.T
