"""Synthetic tasks for experiments: exactly white inputs and linear teachers.

With finite data the dropout objective is formula (1) with the *empirical*
second moment C = XᵀX/n; whitening the sample makes C = I exactly, so the
isotropic closed forms apply to the sample itself, not only in expectation
(the setting of Cavazza et al., AISTATS 2018, §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import as_generator, check_array, check_int

__all__ = ["LinearTask", "linear_teacher", "white_inputs"]


def white_inputs(n: int, d: int, seed) -> np.ndarray:
    """``n`` Gaussian samples in ℝ^d transformed so that ``XᵀX/n = I`` exactly (n ≥ d)."""
    n, d = check_int(n, "n"), check_int(d, "d")
    if n < d:
        raise ValueError(f"`n` must be at least `d` ({d}) to whiten the sample, got {n}")
    X = as_generator(seed).standard_normal((n, d))
    evals, evecs = np.linalg.eigh(X.T @ X / n)
    return X @ (evecs * evals**-0.5) @ evecs.T


@dataclass(frozen=True)
class LinearTask:
    """A regression task y = T₀x + noise on white inputs.

    Attributes
    ----------
    X : (n, d_in) inputs with XᵀX/n = I.
    Y : (n, d_out) targets.
    teacher : (d_out, d_in) the map T₀ that generated Y.
    T : (d_out, d_in) the empirical cross moment YᵀX/n (what the theory calls T).
    """

    X: np.ndarray
    Y: np.ndarray
    teacher: np.ndarray
    T: np.ndarray


def linear_teacher(
    n: int, singular_values, d_in: int, d_out: int, noise: float, seed
) -> LinearTask:
    """A teacher map with the given singular values (random singular vectors), white X.

    Parameters
    ----------
    n : int
        Number of samples (≥ d_in).
    singular_values : array (k,)
        Singular values of the teacher, k ≤ min(d_in, d_out).
    d_in, d_out : int
    noise : float
        Standard deviation of the Gaussian label noise.
    seed : int or numpy.random.Generator
    """
    s = check_array(singular_values, "singular_values", ndim=1)
    d_in, d_out = check_int(d_in, "d_in"), check_int(d_out, "d_out")
    if s.size > min(d_in, d_out):
        raise ValueError(
            f"`singular_values` has {s.size} entries, more than min(d_in, d_out) = {min(d_in, d_out)}"
        )
    if not (noise >= 0):
        raise ValueError(f"`noise` must be non-negative, got {noise!r}")
    rng = as_generator(seed)
    X = white_inputs(n, d_in, rng)
    A, _ = np.linalg.qr(rng.standard_normal((d_out, s.size)))
    B, _ = np.linalg.qr(rng.standard_normal((d_in, s.size)))
    teacher = (A * s) @ B.T
    Y = X @ teacher.T + noise * rng.standard_normal((n, d_out))
    return LinearTask(X=X, Y=Y, teacher=teacher, T=Y.T @ X / n)
