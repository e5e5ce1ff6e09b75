"""Tasks for experiments: exactly white inputs, linear teachers, and a real ratings matrix.

With finite data the dropout objective is formula (1) with the *empirical*
second moment C = XᵀX/n; whitening the sample makes C = I exactly, so the
isotropic closed forms apply to the sample itself, not only in expectation
(the setting of Cavazza et al., AISTATS 2018, §5).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from . import completion
from ._grammar import RngLike, as_rng, keyword_only, transition_to_rng
from ._references import cites
from ._validation import (
    InvalidParameterError,
    check_array,
    check_int,
    check_nonnegative,
)
from .conv import conv2d

__all__ = [
    "ConvTask",
    "LinearTask",
    "conv_task",
    "linear_teacher",
    "movielens_100k",
    "teacher_kernel",
    "white_inputs",
]

# Where RecBole's wheel keeps MovieLens 100k, below its package directory.
_RECBOLE_ML100K = ("dataset_example", "ml-100k", "ml-100k.inter")


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


@keyword_only(2)
@transition_to_rng
def white_inputs(n: int, d: int, *, rng: RngLike = 0) -> np.ndarray:
    r"""``n`` Gaussian samples in ℝ^d transformed so that ``XᵀX/n = I`` exactly (n ≥ d).

    A standard normal sample G (n, d) is whitened by its own empirical second
    moment (symmetric inverse square root, by eigendecomposition):

    .. math:: X = G\,\big(G^\top G/n\big)^{-1/2},\qquad X^\top X/n = I_d

    exactly up to rounding (not only in expectation), so the isotropic closed
    forms (C = I) hold for the sample itself.

    Parameters
    ----------
    n : int
        Number of samples, at least ``d`` (else ``ValueError``).
    d : int
        Dimension.
    rng : int, numpy.random.Generator or None
        Source of G.

    Returns
    -------
    ndarray (n, d)
        The samples, one per row.

    Raises
    ------
    InvalidParameterError
        If ``n`` or ``d`` is not a positive integer, ``n < d``, or ``rng`` is not an
        int ≥ 0, a Generator or None (or is given together with the former ``seed``).

    Examples
    --------
    >>> import numpy as np
    >>> X = white_inputs(50, 3, rng=0)
    >>> X.shape, np.allclose(X.T @ X / 50, np.eye(3))
    ((50, 3), True)
    """
    n, d = check_int(n, "n"), check_int(d, "d")
    if n < d:
        raise InvalidParameterError(f"`n` must be at least `d` ({d}) to whiten the sample, got {n}")
    X = as_rng(rng).standard_normal((n, d))
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


@keyword_only(5)
@transition_to_rng
def linear_teacher(
    n: int,
    singular_values: ArrayLike,
    d_in: int,
    d_out: int,
    noise: float,
    *,
    rng: RngLike = 0,
) -> LinearTask:
    r"""A teacher map with the given singular values (random singular vectors), white X.

    .. math:: T_0 = A \operatorname{diag}(s) B^\top,\qquad
              Y = X T_0^\top + \text{noise}\cdot E,\qquad X^\top X/n = I,

    A (d_out, k) and B (d_in, k) with orthonormal columns (Q factors of Gaussian
    matrices), X from :func:`white_inputs`, E i.i.d. standard normal. Because X is
    exactly white, the empirical cross moment is
    :math:`T = Y^\top X/n = T_0 + \text{noise}\cdot E^\top X/n`, and the FC closed
    forms with C = I apply to (X, Y) exactly.

    Parameters
    ----------
    n : int
        Number of samples (≥ d_in, else ``ValueError``).
    singular_values : array (k,)
        Singular values s of the teacher, k ≤ min(d_in, d_out) (else
        ``ValueError``); the teacher's singular values are their absolute values.
    d_in : int
        Input dimension.
    d_out : int
        Output dimension.
    noise : float
        Standard deviation of the Gaussian label noise, ≥ 0.
    rng : int, numpy.random.Generator or None
        One generator draws X, then A and B, then the noise.

    Returns
    -------
    LinearTask
        ``X`` (n, d_in) with XᵀX/n = I, ``Y`` (n, d_out), ``teacher`` T₀
        (d_out, d_in) and ``T`` = YᵀX/n (d_out, d_in).

    Raises
    ------
    InvalidParameterError
        If a size is not a positive integer, ``n < d_in``, ``singular_values`` is not
        a finite real 1-D array of at most min(d_in, d_out) entries, ``noise`` is
        negative, or ``rng`` is refused (as in :func:`white_inputs`).

    Examples
    --------
    >>> import numpy as np
    >>> task = linear_teacher(40, [3.0, 1.0], d_in=4, d_out=3, noise=0.0, rng=0)
    >>> np.linalg.svd(task.teacher, compute_uv=False).round(12)
    array([3., 1., 0.])
    >>> np.allclose(task.T, task.teacher)  # noise-free and white: T = T0
    True
    """
    s = check_array(singular_values, "singular_values", ndim=1)
    d_in, d_out = check_int(d_in, "d_in"), check_int(d_out, "d_out")
    if s.size > min(d_in, d_out):
        raise InvalidParameterError(
            f"`singular_values` has {s.size} entries, more than min(d_in, d_out) = "
            f"{min(d_in, d_out)}"
        )
    noise = check_nonnegative(noise, "noise")
    rng = as_rng(rng)
    X = white_inputs(n, d_in, rng=rng)
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
        return white_inputs(N, n, rng=rng)
    # "natural": a 1/f power spectrum (amplitude f^{-1/2}, floor at f = 1), unit variance per
    # pixel -- the second-order statistics of natural images along a line.
    f = np.abs(np.fft.fftfreq(n) * n)
    amplitude = 1.0 / np.sqrt(np.maximum(f, 1.0))
    X = np.fft.ifft(np.fft.fft(rng.standard_normal((N, n)), axis=1) * amplitude, axis=1).real
    return X / np.sqrt(np.mean(amplitude**2))


@keyword_only(5)
@transition_to_rng
def conv_task(
    n: int,
    teacher: ArrayLike,
    n_train: int,
    n_test: int,
    noise: float,
    *,
    rng: RngLike = 0,
    inputs: Literal["white", "natural"] = "white",
) -> ConvTask:
    r"""Signals of length ``n``, targets ``teacher ⋆ x`` (circular) plus Gaussian noise.

    Every target is the circular cross-correlation of its signal with the
    teacher (:func:`regtheory.conv.conv2d` with ``padding="circular"``), L = len(teacher):

    .. math:: y[i] = \sum_{a=0}^{L-1} w_0[a]\; x\big[(i + a - \tfrac{L-1}{2}) \bmod n\big]
              + \text{noise}\cdot\varepsilon[i],\qquad \varepsilon[i] \sim \mathcal N(0, 1).

    ``inputs="white"``: the training signals and, separately, the test signals are
    exactly white (:func:`white_inputs`: XᵀX/N = I for each set, so n_train ≥ n and
    n_test ≥ n), the setting where the conv implied problem (7) is exact.
    ``"natural"``: Gaussian signals with power spectrum :math:`1/|f|` (amplitude
    :math:`|f|^{-1/2}`, floored at :math:`|f| = 1`, f the integer DFT frequency), scaled to
    unit variance per pixel in expectation.

    Parameters
    ----------
    n : int
        Signal length.
    teacher : array (L,)
        End-to-end kernel w₀, odd length L ≤ n.
    n_train : int
        Training signals N (≥ n for white inputs).
    n_test : int
        Test signals (≥ n for white inputs).
    noise : float
        Standard deviation of the Gaussian target noise, ≥ 0.
    rng : int, numpy.random.Generator or None
        One generator draws the training signals, the test signals, then the
        training noise and the test noise.
    inputs : {"white", "natural"}
        Law of the signals.

    Returns
    -------
    ConvTask
        ``X``, ``Y`` (n_train, 1, n); ``X_test``, ``Y_test`` (n_test, 1, n);
        ``teacher`` (1, 1, L) in PyTorch layout; ``inputs``.

    Raises
    ------
    InvalidParameterError
        If a size is not a positive integer, ``teacher`` is not a finite real 1-D array
        of odd length at most ``n``, ``inputs`` is unknown, ``noise`` is negative,
        white inputs have fewer signals than ``n``, or ``rng`` is refused (as in
        :func:`white_inputs`).

    Examples
    --------
    >>> import numpy as np
    >>> task = conv_task(5, [1.0, 2.0, 1.0], n_train=10, n_test=5, noise=0.0, rng=0)
    >>> task.X.shape, task.X_test.shape, task.teacher.shape
    ((10, 1, 5), (5, 1, 5), (1, 1, 3))
    >>> x = task.X[0, 0]
    >>> np.allclose(task.Y[0, 0], np.roll(x, 1) + 2 * x + np.roll(x, -1))
    True
    """
    n = check_int(n, "n")
    teacher = check_array(teacher, "teacher", ndim=1)
    if teacher.size % 2 == 0 or teacher.size > n:
        raise InvalidParameterError(
            f"`teacher` must have odd length at most the signal length n = {n} (a same-size "
            f"circular convolution kernel), got {teacher.size}"
        )
    if inputs not in ("white", "natural"):
        raise InvalidParameterError(f"`inputs` must be 'white' or 'natural', got {inputs!r}")
    noise = check_nonnegative(noise, "noise")
    rng = as_rng(rng)
    w = teacher.reshape(1, 1, -1)
    X = _signals(check_int(n_train, "n_train"), n, inputs, rng)[:, None, :]
    X_test = _signals(check_int(n_test, "n_test"), n, inputs, rng)[:, None, :]
    Y = conv2d(X, w, padding="circular") + noise * rng.standard_normal(X.shape)
    Y_test = conv2d(X_test, w, padding="circular") + noise * rng.standard_normal(X_test.shape)
    return ConvTask(X=X, Y=Y, X_test=X_test, Y_test=Y_test, teacher=w, inputs=inputs)


@transition_to_rng
def teacher_kernel(kernel_size: int, *, rng: RngLike = 0) -> np.ndarray:
    r"""A random end-to-end kernel for a comparison task: 2K − 1 i.i.d. taps N(0, 1/(2K − 1)).

    The teacher of ``regtheory compare``: the composition of two K-tap kernels has
    2K − 1 taps, so a two-layer conv net with K-tap kernels can represent it; the
    variance makes its expected squared norm 1. Pass it to
    :func:`regtheory.data.conv_task`.

    Parameters
    ----------
    kernel_size : int
        Taps K of each of the two kernels of the net.
    rng : int, numpy.random.Generator or None
        Source of the taps.

    Returns
    -------
    ndarray (2K − 1,)
        The taps of the teacher.

    Raises
    ------
    InvalidParameterError
        If ``kernel_size`` is not a positive integer or ``rng`` is refused (as in
        :func:`white_inputs`).

    Examples
    --------
    >>> teacher_kernel(3, rng=0).shape
    (5,)
    """
    kernel_size = check_int(kernel_size, "kernel_size")
    return as_rng(rng).standard_normal(2 * kernel_size - 1) / np.sqrt(2 * kernel_size - 1)


@cites("harper2015movielens")
def movielens_100k(*, path: str | os.PathLike | None = None) -> completion.Observations:
    r"""The MovieLens 100k ratings as observed entries of a 943 × 1682 users × movies matrix.

    100,000 ratings in {1, ..., 5} by 943 users of 1,682 movies (Harper & Konstan [1]), each
    user with at least 20, as :class:`regtheory.completion.Observations`: row i is the i-th
    smallest user id, column j the j-th smallest movie id, the value the rating. regtheory
    does not ship the data (GroupLens licenses it for research use and asks that it be
    obtained from them); it reads it where it already is:

    * with ``path=None``, from an installed RecBole, whose wheel carries it
      (``pip install --no-deps recbole==1.2.1``: the data only, without RecBole's own
      dependencies; RecBole is not imported);
    * from ``path``: RecBole's ``ml-100k.inter`` or GroupLens's own ``u.data`` (tab-separated
      user, item, rating, timestamp; a header line is skipped when there is one).

    Parameters
    ----------
    path : str or os.PathLike, optional
        A ratings file in one of the two formats above.

    Returns
    -------
    Observations
        The ratings, every row and column observed.

    Raises
    ------
    FileNotFoundError
        If ``path`` is None and RecBole is not installed, or the file does not exist.
    InvalidParameterError
        If the file does not hold rows of four numbers, or a (user, movie) pair twice.

    References
    ----------
    [1] F. M. Harper, J. A. Konstan, The MovieLens Datasets: History and Context, ACM
        Transactions on Interactive Intelligent Systems 5(4), 2015.

    Examples
    --------
    >>> obs = movielens_100k()  # read from an installed RecBole wheel
    >>> obs.shape, obs.n_observed
    ((943, 1682), 100000)
    """
    file = _recbole_ml100k() if path is None else Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no ratings file at {str(file)!r}")
    with open(file, encoding="utf-8") as handle:
        first = handle.readline()
    header = any(c.isalpha() for c in first)
    try:
        table = np.loadtxt(file, delimiter="\t", skiprows=int(header), ndmin=2)
    except ValueError as exc:
        raise InvalidParameterError(
            f"{str(file)!r} is not a ratings file of tab-separated user, item, rating, "
            f"timestamp: {exc}"
        ) from None
    if table.shape[1] != 4:
        raise InvalidParameterError(
            f"{str(file)!r} has {table.shape[1]} columns per line; expected 4 (user, item, "
            "rating, timestamp)"
        )
    users, rows = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    items, cols = np.unique(table[:, 1].astype(np.int64), return_inverse=True)
    return completion.observed(rows, cols, table[:, 2], (users.size, items.size))


def _recbole_ml100k() -> Path:
    """The ml-100k.inter file of an installed RecBole, located without importing it."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MovieLens 100k is read from an installed RecBole wheel, which carries it: "
            "`pip install --no-deps recbole==1.2.1` (the data only), or pass `path=` to "
            "GroupLens's u.data"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*_RECBOLE_ML100K)
