"""Small linear-algebra helpers shared by several modules."""

from __future__ import annotations

import numpy as np

__all__ = ["numerical_rank", "sqrtm_psd"]


def numerical_rank(s: np.ndarray, rtol: float = 1e-6) -> int:
    """Number of singular values ``s`` above ``rtol`` times the largest (0 for a zero matrix).

    Solver output carries the solver's tolerance in its small singular values, so a
    rank read off a cvxpy solution needs a relative threshold well above rounding.
    """
    s = np.asarray(s, dtype=float)
    if s.size == 0 or s.max() <= 0.0:
        return 0
    return int(np.sum(s > rtol * s.max()))


def sqrtm_psd(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root C^{1/2} (or C^{-1/2}) of a checked PSD matrix."""
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.clip(eigval, 0.0, None)
    power = np.sqrt(eigval)
    if inverse:
        power = 1.0 / power
    return (eigvec * power) @ eigvec.T
