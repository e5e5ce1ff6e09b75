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
from .conv import conv2d

__all__ = ["ConvTask", "LinearTask", "conv_task", "linear_teacher", "white_inputs"]


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


@dataclass(frozen=True)
class ConvTask:
    """A 1-D circular convolution task y = w₀ ⋆ x + noise, with a held-out test set.

    Attributes
    ----------
    X, Y : (N, 1, n) training signals and targets.
    X_test, Y_test : (N_test, 1, n) test signals and targets (same law).
    teacher : (1, 1, 2K−1) the end-to-end kernel that made Y (PyTorch layout).
    inputs : "white" or "natural".
    """

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    teacher: np.ndarray
    inputs: str


def _signals(N: int, n: int, inputs: str, rng) -> np.ndarray:
    if inputs == "white":
        return white_inputs(N, n, rng)
    # "natural": a 1/f power spectrum (amplitude f^{-1/2}, floor at f = 1), unit variance per
    # pixel -- the second-order statistics of natural images along a line.
    f = np.abs(np.fft.fftfreq(n) * n)
    amplitude = 1.0 / np.sqrt(np.maximum(f, 1.0))
    X = np.fft.ifft(np.fft.fft(rng.standard_normal((N, n)), axis=1) * amplitude, axis=1).real
    return X / np.sqrt(np.mean(amplitude**2))


def conv_task(
    n: int,
    teacher,
    n_train: int,
    n_test: int,
    noise: float,
    seed,
    inputs: str = "white",
) -> ConvTask:
    """Signals of length ``n``, targets ``teacher ⋆ x`` (circular) plus Gaussian noise.

    ``inputs="white"`` makes the training signals exactly white (XᵀX/N = I, needs
    n_train ≥ n), the setting where the conv implied problem (7) is exact;
    ``"natural"`` draws signals with a 1/f power spectrum.
    """
    n = check_int(n, "n")
    teacher = check_array(teacher, "teacher", ndim=1)
    if teacher.size % 2 == 0 or teacher.size > 2 * n - 1:
        raise ValueError(
            f"`teacher` must have odd length at most 2n − 1 = {2 * n - 1}, got {teacher.size}"
        )
    if inputs not in ("white", "natural"):
        raise ValueError(f"`inputs` must be 'white' or 'natural', got {inputs!r}")
    if not (noise >= 0):
        raise ValueError(f"`noise` must be non-negative, got {noise!r}")
    rng = as_generator(seed)
    w = teacher.reshape(1, 1, -1)
    X = _signals(check_int(n_train, "n_train"), n, inputs, rng)[:, None, :]
    X_test = _signals(check_int(n_test, "n_test"), n, inputs, rng)[:, None, :]
    Y = conv2d(X, w, "circular") + noise * rng.standard_normal(X.shape)
    Y_test = conv2d(X_test, w, "circular") + noise * rng.standard_normal(X_test.shape)
    return ConvTask(X=X, Y=Y, X_test=X_test, Y_test=Y_test, teacher=w, inputs=inputs)
