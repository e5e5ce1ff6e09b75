"""Discrete choices on computed numbers, made so that rounding cannot flip them.

Numbers that are equal in exact arithmetic (tied singular values, diagonal entries
of a rotated matrix, the objective values of optimizer starts that reach the same
minimum) come out a few ulps apart, and which way they fall depends on the last bits
of the input and on the CPU's BLAS kernels. A choice made on them -- which pair of
units to rotate, which start to keep -- treats numbers within ``TIE_RTOL`` of the
scale as equal and takes the lowest index among them. Otherwise a 1e-16 change of
the input, or another machine, selects another, equally valid, result, and whatever
is computed on it moves: the Monte Carlo means of figure (e) moved by 0.1 % with the
equalized factorization that a tie-break picked.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TIE_RTOL", "argmin_tied", "lowest_index"]

#: Relative tolerance within which computed numbers count as tied.
TIE_RTOL = 1e-9


def lowest_index(candidates: np.ndarray) -> int:
    """The first index where the boolean array ``candidates`` is true."""
    return int(np.flatnonzero(candidates)[0])


def argmin_tied(values, rtol: float = TIE_RTOL) -> int:
    """Lowest index whose value is within ``rtol`` · |min| of the minimum."""
    values = np.asarray(values, dtype=float)
    best = float(np.min(values))
    return lowest_index(values <= best + rtol * max(abs(best), np.finfo(float).tiny))
