r"""Implied problems of dropout on a two-layer linear conv net (THEORY.md §3).

The net :math:`x \mapsto u \ast (m \circ (v \ast x))` with C hidden channels,
circular padding and kernels of K taps computes the convolution with the
end-to-end kernel :math:`w = \sum_c u_c \star v_c = \mathcal A(Z)`,
:math:`Z = \sum_c u_c v_c^\top` (the *lifted kernel*), where
:math:`\mathcal A` sums Z over the pairs of taps whose offsets add up (folded
modulo the image when the end-to-end kernel is wider than it). With white
input, elementwise dropout costs :math:`\lambda n \sum_c \|u_c\|^2\|v_c\|^2`
(formula (5), n pixels), and its minimum over all C-channel factorizations of
w is

.. math::

    \Theta_{conv}(w) = \frac{\lambda n}{C}\,
        \min\{\|Z\|_*^2 : \mathcal A(Z) = w\}                              \quad (7)

a convex problem in the K×K lifted variable: its size does not grow with the
image. Channel dropout (SpatialDropout) costs :math:`\lambda n \sum_c \|u_c\star v_c\|^2`,
whose convex relaxation is the ridge :math:`(\lambda n/C)\|w\|^2`, a lower bound
(Cauchy–Schwarz over channels) attained exactly when w/C splits into two real K-tap
kernels. In 1-D with one input and one output channel and odd K every kernel
splits (a real polynomial of even degree 2(K − 1) factors into two real factors
of degree K − 1), so there the ridge is exact; in 2-D (a polynomial in two
variables need not factor) and with several channels it is only a bound.

With zero padding none of this is exact: the penalty (5) then weighs each hidden
position by how much of u fits in the image, and it is not even a function of Z
(rotating the channels keeps Z and the map but changes the penalty);
:func:`regtheory.implied.solve_conv_factored` minimises the exact objective.

Multi-channel input and output are handled by stacking: Z has rows
(out-channel, tap of u) and columns (in-channel, tap of v).

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] S. Gunasekar et al., Implicit Bias of Gradient Descent on Linear
    Convolutional Networks, NeurIPS 2018 (the ℓ₁ of the DFT for full-width kernels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike

from .. import fc
from .._convops import axis_index as _axis_index
from .._convops import axis_length as _axis_length
from .._convops import centre_roll, lifted_matrix
from .._linalg import balanced_factors, numerical_rank
from .._references import Cited, cites
from .._results import freeze_arrays
from .._validation import InvalidParameterError, check_array, check_conv_data, check_int
from .._validation import check_image_shape as _check_image_shape
from ..masks import dropout_lambda
from ._certificate import (
    frobenius,
    min_norm_gap,
    nuclear,
    relative_gap,
    spectral,
    squared_norm_gap,
)
from ._least_rank import RANK_RTOL, least_rank_minimiser
from ._solver import Solution, as_array, solve

__all__ = [
    "ConvRegularizerResult",
    "ConvSolution",
    "conv_induced_regularizer",
    "lifted_operator",
    "solve_conv",
]


@dataclass(frozen=True)
class ConvRegularizerResult(Cited):
    """The induced regularizer (7) of one end-to-end kernel, with its minimiser.

    Attributes
    ----------
    value : float
        Θ_conv(w).
    Z : ndarray (C_out·K, C_in·K)
        Minimising lifted kernel.
    u, v : ndarrays
        A factorization with C channels attaining the value, equalized over
        channels: ``u`` (C_out, C, kh, kw), ``v`` (C, C_in, kh, kw) (1-D: no kh axis).
    status, gap, solve_time, solver
        As in :class:`regtheory.implied.ImpliedResult`; ``gap`` bounds the relative
        error of ``value``.
    """

    value: float
    Z: np.ndarray
    u: np.ndarray
    v: np.ndarray
    status: str
    gap: float
    solve_time: float
    solver: str

    def __post_init__(self) -> None:
        freeze_arrays(self)


@dataclass(frozen=True, kw_only=True)
class ConvSolution(Solution):
    r"""Solution of the conv implied problem :func:`solve_conv`.

    Attributes
    ----------
    w : ndarray (C_out, C_in, 2kh−1, 2kw−1) (1-D: no height axis)
        End-to-end kernel in the layout of :func:`regtheory.conv.conv2d`; along an
        axis where 2k − 1 exceeds the (odd) image side n it is folded modulo n
        into n centred taps.
    Z : ndarray or None
        Lifted kernel (``mode="element"``), else None.
    objective : float
        ``fit + regularizer`` at the solution: the objective of the problem solved.
    fit : float
        The data term: mean squared error :math:`\frac1N\sum_n\|y_n - w \ast x_n\|^2` on
        the data (X, Y).
    regularizer : float
        The induced regularizer at the solution (element: :math:`(\lambda n/C)\|Z\|_*^2`;
        channel: the ridge :math:`(\lambda n/C)\|w\|^2`).
    status, gap, solve_time, solver, gradient_norm, iterations, attempts
        As in :class:`regtheory.implied.ImpliedResult`; ``gap`` bounds the relative
        sub-optimality of ``objective``.
    """

    w: np.ndarray
    Z: np.ndarray | None
    gap: float
    regularizer: float
    solve_time: float
    fit: float

    def __post_init__(self) -> None:
        freeze_arrays(self)


def _axis_displacement(k: int, n: int) -> np.ndarray:
    """Pixel displacement of each entry of the (folded) end-to-end kernel along one axis."""
    idx = np.arange(_axis_length(k, n))
    return idx - (k - 1) if 2 * k - 1 <= n else idx


def _check_pair(value: Sequence[int], name: str) -> tuple[int, int]:
    """(height, width) of positive ints (1-D: height 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InvalidParameterError(
            f"`{name}` must be a pair (height, width) of positive ints, got {value!r}"
        )
    height, width = (check_int(x, name) for x in value)
    return height, width


@cites("mianjy2018implicit")
def lifted_operator(
    kernel_size: Sequence[int],
    image_shape: Sequence[int],
    *,
    in_channels: int = 1,
    out_channels: int = 1,
) -> np.ndarray:
    r"""The matrix of the lifting map :math:`\mathcal A`: ``vec(w) = A @ vec(Z)`` (row-major vecs).

    Z has rows (out-channel o, tap a of u) and columns (in-channel i, tap b of v);
    its entry is added to the end-to-end kernel at the summed offset, per axis,

    .. math:: w[o, i, \iota_h(a_1 + b_1), \iota_w(a_2 + b_2)]
              = \sum_{\text{taps}} Z[(o, a_1, a_2), (i, b_1, b_2)],\qquad
              \iota(s) = \begin{cases} s & 2k - 1 \le n \\
                                         (s - k + 1) \bmod n & 2k - 1 > n \end{cases}

    (a, b ∈ {0, …, k − 1}), i.e. folded modulo the image side n along an axis where
    the end-to-end kernel (2k − 1 taps) is wider than the image; formula (7).
    ``vec(Z)`` flattens Z of shape (C_out·K, C_in·K) row-major (K = kh·kw, taps
    row-major) and ``vec(w)`` flattens w of shape (C_out, C_in, Lh, Lw) row-major,
    :math:`L = \min(2k - 1, n)` per axis.

    Parameters
    ----------
    kernel_size : (kh, kw)
        Taps per axis of each of the two kernels; a pair of ints (1-D: ``(1, k)``),
        at most the image size.
    image_shape : (H, W)
        Image size; a pair of ints (1-D signals of length L: ``(1, L)``).
    in_channels : int
        Input channels C_in (columns of Z are (in-channel, tap) pairs).
    out_channels : int
        Output channels C_out (rows of Z are (out-channel, tap) pairs).

    Returns
    -------
    ndarray (C_out·C_in·Lh·Lw, C_out·K·C_in·K)
        Entries 0/1; each column has exactly one 1.

    Raises
    ------
    InvalidParameterError
        If ``kernel_size`` or ``image_shape`` is not a pair of positive ints, the
        kernel does not fit the image, or a channel count is not a positive int.

    Examples
    --------
    >>> import numpy as np
    >>> A = lifted_operator((1, 3), (1, 5))  # 1-D, K = 3 taps, signals of length 5
    >>> A.shape
    (5, 9)
    >>> A @ np.eye(3).ravel()  # the sums of the anti-diagonals of Z = I
    array([1., 0., 1., 0., 1.])
    """
    (kh, kw), (H, W) = (
        _check_pair(kernel_size, "kernel_size"),
        _check_pair(image_shape, "image_shape"),
    )
    in_channels = check_int(in_channels, "in_channels")
    out_channels = check_int(out_channels, "out_channels")
    if kh > H or kw > W:
        raise InvalidParameterError(
            f"`kernel_size` {kernel_size} must fit `image_shape` {image_shape}"
        )
    return lifted_matrix((kh, kw), (H, W), in_channels, out_channels)


def _check_end_to_end(w, image_shape):
    """W as (C_out, C_in, 2kh−1, 2kw−1), the per-axis k, the (H, W), and whether 1-D."""
    w = check_array(w, "w", ndim=(1, 2, 3, 4))
    one_d = w.ndim in (1, 3)
    w4 = w[None, None] if w.ndim <= 2 else w
    if one_d:
        w4 = w4[:, :, None, :]
    lengths = w4.shape[2:]
    if any(L % 2 == 0 for L in lengths):
        raise InvalidParameterError(
            "`w` must have odd length 2K − 1 along each spatial axis (a composition of two "
            f"K-tap kernels), got shape {w.shape}"
        )
    k = tuple((L + 1) // 2 for L in lengths)
    H, W = _check_image_shape(image_shape, 1 if one_d else 2)
    if k[0] > H or k[1] > W:
        raise InvalidParameterError(f"the K-tap kernels ({k}) must fit the image {image_shape}")
    return w4, k, (H, W), one_d


def _fold(w4: np.ndarray, k, hw) -> np.ndarray:
    """Fold an end-to-end kernel modulo the image (identity when it fits)."""
    ih, iw = _axis_index(k[0], hw[0]), _axis_index(k[1], hw[1])
    out = np.zeros(w4.shape[:2] + (_axis_length(k[0], hw[0]), _axis_length(k[1], hw[1])))
    index: tuple[Any, ...] = (slice(None), slice(None), ih[:, None], iw[None, :])
    np.add.at(out, index, w4)
    return out


def _factor(Z: np.ndarray, channels: int, k, c_out: int, c_in: int, one_d: bool):
    """An equalized C-channel factorization Z = Σ_c u_c v_cᵀ (fc.equalize on the SVD)."""
    A, s, Bt = np.linalg.svd(Z, full_matrices=False)
    rank = numerical_rank(s, rtol=RANK_RTOL)
    if rank > channels:  # least_rank_minimiser found a rank <= channels: cannot happen
        raise AssertionError(f"a lifted kernel of rank {rank} for {channels} channels")
    U0 = np.zeros((Z.shape[0], channels))
    V0 = np.zeros((Z.shape[1], channels))
    U0[:, :rank], V0[:, :rank] = balanced_factors(A, s, Bt, rank)
    U, V = fc.equalize(U0, V0)
    kh, kw = k
    u = U.T.reshape(channels, c_out, kh, kw).transpose(1, 0, 2, 3)
    v = V.T.reshape(channels, c_in, kh, kw)
    if one_d:
        u, v = u[:, :, 0], v[:, :, 0]
    return u, v


@cites("mianjy2018implicit", "gunasekar2018implicit", "pataki1998rank", "burer2003nonlinear")
def conv_induced_regularizer(
    w: ArrayLike,
    keep: float,
    channels: int,
    image_shape: int | Sequence[int],
    *,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> ConvRegularizerResult:
    r"""Induced regularizer of elementwise dropout on a two-layer linear conv net, formula (7).

    .. math::

        \Theta_{conv}(w) = \min_{\sum_c u_c \star v_c = w} \lambda n\sum_{c=1}^{C}\|u_c\|^2\|v_c\|^2
            = \frac{\lambda n}{C}\,\min\{\|Z\|_*^2 : \mathcal A(Z) = w\}

    (circular padding, white input, n = H·W pixels). The convex value is a lower
    bound for every C; C channels attain it exactly when some minimiser Z has rank
    ≤ C. The solver returns a minimiser of largest rank, so this function then
    looks for one of rank ≤ C on the set of minimisers (rank reduction, then a
    factored search: :mod:`regtheory.implied._least_rank`) and returns it with a
    C-channel factorization; if none is found it raises, because the C-channel
    regularizer may then lie above (7). For full-size kernels (K = n) the value is
    :math:`(\lambda/(nC))\|\hat w\|_1^2`, ŵ the unnormalised DFT of the (folded)
    kernel, attained with one channel already (:math:`|\hat w_k| = |\hat u_k||\hat v_k|`
    with :math:`|\hat u_k| = |\hat v_k|`).

    Parameters
    ----------
    w : array
        End-to-end kernel: (2K−1,) for 1-D, (2K−1, 2K−1) for 2-D single channel;
        (C_out, C_in, 2K−1) or (C_out, C_in, 2Kh−1, 2Kw−1) for several channels.
    keep : float
        Retain probability in (0, 1].
    channels : int
        Hidden channels C.
    image_shape : int or tuple
        (L,) / L for 1-D, (H, W) for 2-D; the K-tap kernels must fit.
    solver : str, optional
        cvxpy solver; by default the ladder of :mod:`regtheory.implied._solver`
        (Clarabel at 1e-9, then at its defaults, then SCS).
    solver_options : dict, optional
        Keyword arguments for ``problem.solve`` (one solve with exactly these).

    Returns
    -------
    ConvRegularizerResult
        ``gap`` bounds the relative error of ``value`` (certified in NumPy from a
        dual point; ``Z`` satisfies :math:`\mathcal A(Z) = w` to rounding).

    Raises
    ------
    SolverFailedError
        If no solver returns a solution whose certified gap is at most 1e-6.
    InvalidParameterError
        If no minimiser of rank ≤ ``channels`` is found (the message gives the
        least rank found, for which (7) is attained).
    """
    lam = dropout_lambda(keep)
    channels = check_int(channels, "channels")
    w4, k, hw, one_d = _check_end_to_end(w, image_shape)
    c_out, c_in = w4.shape[:2]
    start = time.perf_counter()
    A = lifted_operator(k, hw, in_channels=c_in, out_channels=c_out)
    shape = (c_out * k[0] * k[1], c_in * k[0] * k[1])  # rows (out, tap of u), cols (in, tap of v)
    # (7) is 2-homogeneous in w: solve for w / s and scale Z back (O(1) numbers for the solver)
    target = _fold(w4, k, hw).ravel()
    scale = float(np.linalg.norm(target)) or 1.0
    t = target / scale
    Z = cp.Variable(shape)
    constraint = A @ cp.vec(Z, order="C") == t
    problem = cp.Problem(cp.Minimize(cp.normNuc(Z)), [constraint])
    # Each column of A holds one 1, so A Aᵀ is diagonal (how many entries of Z land on
    # each entry of w) and the least-norm correction onto {A(Z) = t} is exact and cheap.
    counts = A.sum(axis=1)

    def certify() -> float:
        Zf = _onto_constraint(as_array(Z.value), A, t, counts)
        return _squared_gap(Zf, _dual_bound(Zf, A, t, counts, constraint.dual_value))

    solved = solve(problem, solver, solver_options, sdp=True, certify=certify)
    Zf = _onto_constraint(as_array(Z.value), A, t, counts)
    lower = _dual_bound(Zf, A, t, counts, constraint.dual_value)
    # The solver's minimiser has the largest rank; C channels need one of rank <= C.
    Zr = _onto_constraint(_least_rank(Zf, A, channels), A, t, counts)  # exactly feasible
    gap = max(solved.certified_gap, _squared_gap(Zr, lower))
    elapsed = time.perf_counter() - start
    Zv = scale * Zr
    u, v = _factor(Zv, channels, k, c_out, c_in, one_d)
    nuc = nuclear(Zv)
    return ConvRegularizerResult(
        value=float(lam * hw[0] * hw[1] / channels * nuc**2),
        Z=Zv,
        u=u,
        v=v,
        status=solved.status,
        gap=gap,
        solve_time=elapsed,
        solver=solved.solver,
    )


def _onto_constraint(Z: np.ndarray, A: np.ndarray, t: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The least-norm correction of Z onto {A vec(Z) = t} (A Aᵀ = diag(counts))."""
    residual = t - A @ Z.ravel()
    return Z + (A.T @ (residual / counts)).reshape(Z.shape)


def _dual_bound(
    Zf: np.ndarray, A: np.ndarray, t: np.ndarray, counts: np.ndarray, multiplier: object
) -> float:
    """A lower bound on min ‖Z‖_* over {A vec(Z) = t} from the better of two dual points.

    The dual points: the solver's ``multiplier`` (when it gave one), and the
    least-squares fit of Aᵀy to the subgradient P Qᵀ of the nuclear norm at the
    feasible ``Zf`` (independent of the solver's duals).
    """
    P, sv, Qt = np.linalg.svd(Zf, full_matrices=False)
    r = numerical_rank(sv)
    candidates = [(A @ (P[:, :r] @ Qt[:r]).ravel()) / counts]
    if multiplier is not None:
        candidates.append(np.asarray(multiplier, dtype=float).ravel())

    def adjoint(y: np.ndarray) -> np.ndarray:
        return (A.T @ y).reshape(Zf.shape)

    value = nuclear(Zf)
    return value * (1 - min(min_norm_gap(value, t, y, adjoint, spectral) for y in candidates))


def _squared_gap(Zf: np.ndarray, lower: float) -> float:
    """Relative gap of (7), the square of the nuclear norm: (P² − D²)/P² ≤ 2 (P − D)/P."""
    return min(1.0, 2 * relative_gap(nuclear(Zf), lower))


def _least_rank(Zf: np.ndarray, A: np.ndarray, channels: int) -> np.ndarray:
    """A minimiser of rank ≤ ``channels`` on the face of ``Zf``; refused when none is found."""
    Zr, found = least_rank_minimiser(Zf, A, channels)
    if not found:
        rank = numerical_rank(np.linalg.svd(Zr, compute_uv=False), rtol=RANK_RTOL)
        raise InvalidParameterError(
            f"`channels` = {channels}: no minimiser of (7) with rank <= {channels} was found "
            f"(the least rank found is {rank}), so with {channels} channels the induced "
            "regularizer may lie above the convex value (7); use channels >= "
            f"{rank}, where (7) is attained"
        )
    return Zr


def _shift_features(X: np.ndarray, k, hw) -> np.ndarray:
    """F[n, i, t, p]: input channel i shifted by the displacement of kernel entry t."""
    dh, dw = _axis_displacement(k[0], hw[0]), _axis_displacement(k[1], hw[1])
    # circular cross-correlation: y[p] = Σ_d w[d] x[p + d]  ->  x rolled by −d
    feats = [np.roll(X, shift=(-a, -b), axis=(2, 3)) for a in dh for b in dw]
    return np.stack(feats, axis=2).reshape(X.shape[0], X.shape[1], len(dh) * len(dw), -1)


_MODES = ("element", "channel")


@cites("mianjy2018implicit", "gunasekar2018implicit", "pataki1998rank", "burer2003nonlinear")
def solve_conv(
    X: ArrayLike,
    Y: ArrayLike,
    keep: float,
    channels: int,
    kernel_size: int,
    *,
    mode: Literal["element", "channel"] = "element",
    solver: str | None = None,
    solver_options: dict | None = None,
) -> ConvSolution:
    r"""Learn a circular conv map from data under the implied regularizer of conv dropout.

    .. math::

        \min_{Z}\ \frac1N\sum_n \|y_n - \mathcal A(Z) \ast x_n\|^2
            + \frac{\lambda n}{C}\|Z\|_*^2         \qquad (\text{mode="element"})

        \min_{w}\ \frac1N\sum_n \|y_n - w \ast x_n\|^2 + \frac{\lambda n}{C}\|w\|^2
            \qquad (\text{mode="channel"}, \text{the ridge relaxation})

    The data enter only through the Gram matrix of the shifted inputs, so the cvxpy problem has the
    size of the lifted kernel, not the image. The regularizers are exact for white input
    (:math:`\mathbb E xx^\top = I`); otherwise this is the problem with the white-input regularizer.

    Parameters
    ----------
    X : array (N, C_in, H, W) or (N, C_in, L)
        Input images (or 1-D signals), circularly padded by the convolutions.
    Y : array (N, C_out, H, W) or (N, C_out, L)
        Targets, with the samples and the spatial shape of ``X``.
    keep : float
        Retain probability θ in (0, 1] of the dropout on the hidden channels.
    channels : int
        Hidden channels C of the factored net.
    kernel_size : int
        Taps K per axis of each of the two kernels (odd).
    mode : {"element", "channel"}
        Dropout of single hidden units, or of whole hidden channels.
    solver : str, optional
        cvxpy solver; by default the package's ladder of solvers.
    solver_options : dict, optional
        Keyword arguments for ``problem.solve`` (one solve with exactly these).

    Returns
    -------
    ConvSolution
        ``gap`` bounds the relative sub-optimality of ``objective`` (a Fenchel duality gap).

    Raises
    ------
    InvalidParameterError
        If the data, ``keep``, ``channels``, ``kernel_size`` or ``mode`` are refused.
    SolverFailedError
        If no solver returns a solution whose certified gap is at most 1e-6.
    """
    lam = dropout_lambda(keep)
    channels = check_int(channels, "channels")
    X, Y, k = _check_conv_problem(X, Y, kernel_size, mode)
    one_d = X.ndim == 3
    if one_d:
        X, Y = X[:, :, None], Y[:, :, None]
    hw = X.shape[2:]
    c_in, c_out = X.shape[1], Y.shape[1]
    start = time.perf_counter()
    G, B, yy, R, T = _moments(X, Y, k, hw)
    n_pix = hw[0] * hw[1]
    c = lam * n_pix / channels
    # 2-homogeneous in (w, Y): solve for Y / s (O(1) numbers for the solver), scale back
    scale = float(np.sqrt(yy)) or 1.0
    Bs, yys = B / scale, yy / scale**2
    Z, Wm, reg, A = _unknowns(mode, k, hw, c_in, c_out, T, c)
    fit = cp.sum_squares(R @ Wm) - 2 * cp.sum(cp.multiply(Bs, Wm)) + yys
    problem = cp.Problem(cp.Minimize(fit + reg))
    certify = _certificate(Z, Wm, A, G, Bs, yys, c)
    solved = solve(problem, solver, solver_options, sdp=True, certify=certify)
    elapsed = time.perf_counter() - start
    Wv = scale * as_array(Wm.value)
    shape = (c_out, c_in, _axis_length(k[0], hw[0]), _axis_length(k[1], hw[1]))
    # Folded axes are indexed by displacement mod n; roll them to the centred layout that
    # conv2d / conv_matrix read (index j <-> displacement j - (n - 1)/2).
    w = centre_roll(Wv.T.reshape(shape), k, hw)
    if mode == "element":
        Zv = scale * as_array(Z.value)
        reg_value = c * nuclear(Zv) ** 2
    else:
        Zv = None
        reg_value = c * float(np.sum(Wv**2))
    fit_value = float(np.sum((R @ Wv) ** 2) - 2 * np.sum(B * Wv) + yy)
    return ConvSolution(
        w=w[:, :, 0] if one_d else w,
        Z=Zv,
        objective=fit_value + reg_value,
        regularizer=float(reg_value),
        solve_time=elapsed,
        fit=fit_value,
        **solved.fields(),
    )


def _check_conv_problem(
    X: ArrayLike, Y: ArrayLike, kernel_size: object, mode: object
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The data and the per-axis taps (1-D: height 1) of :func:`solve_conv`, checked."""
    kernel_size = check_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise InvalidParameterError(f"`kernel_size` must be odd, got {kernel_size}")
    if mode not in _MODES:
        raise InvalidParameterError(f"`mode` must be one of {_MODES}, got {mode!r}")
    X, Y = check_conv_data(X, Y)
    hw = X.shape[2:] if X.ndim == 4 else (1, X.shape[2])
    k = (1 if X.ndim == 3 else kernel_size, kernel_size)
    if k[0] > hw[0] or k[1] > hw[1]:
        raise InvalidParameterError(f"`kernel_size` {kernel_size} must fit the image {hw}")
    if any(2 * kk - 1 > n and n % 2 == 0 for kk, n in zip(k, hw)):
        raise InvalidParameterError(
            f"`kernel_size` {kernel_size}: the end-to-end kernel (2K - 1 taps) is wider than an "
            f"even image side {hw}, so it folds into an even-length kernel that a same-size "
            "convolution cannot represent; use an odd image side or a smaller kernel"
        )
    return X, Y, k


def _moments(
    X: np.ndarray, Y: np.ndarray, k: tuple[int, int], hw: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, int]:
    """Second moments of the shifted inputs, through which alone the data enter the problem.

    G = FᵀF/N, B = FᵀY/N, mean ‖y‖², R with RᵀR = G, and the number T of end-to-end taps.
    """
    N, c_in, c_out = X.shape[0], X.shape[1], Y.shape[1]
    F = _shift_features(X, k, hw)  # (N, C_in, T, P)
    T = F.shape[2]
    Fm = F.transpose(0, 3, 1, 2).reshape(N * F.shape[3], c_in * T)
    Ym = Y.transpose(0, 2, 3, 1).reshape(N * F.shape[3], c_out)
    G = Fm.T @ Fm / N
    B = Fm.T @ Ym / N
    yy = float(np.sum(Ym * Ym) / N)
    evals, evecs = np.linalg.eigh(G)
    R = (evecs * np.sqrt(np.clip(evals, 0, None))).T  # RᵀR = G
    return G, B, yy, R, T


def _unknowns(
    mode: str,
    k: tuple[int, int],
    hw: tuple[int, ...],
    c_in: int,
    c_out: int,
    T: int,
    c: float,
) -> tuple[Any, cp.Expression, cp.Expression, np.ndarray | None]:
    """The variable of :func:`solve_conv` and the kernel matrix W (C_in·T, C_out) it gives.

    Returns (Z, W, regularizer, A): element mode solves for the lifted kernel Z (a
    cvxpy Variable) with W = A(Z) and the squared nuclear norm; channel mode for W
    itself (Z and A None) with the ridge.
    """
    if mode == "element":
        K = k[0] * k[1]
        A = lifted_operator(k, hw, in_channels=c_in, out_channels=c_out)
        Z = cp.Variable((c_out * K, c_in * K))
        Wm = cp.reshape(A @ cp.vec(Z, order="C"), (c_out, c_in * T), order="C").T
        return Z, Wm, c * cp.square(cp.normNuc(Z)), A
    Wm = cp.Variable((c_in * T, c_out))
    return None, Wm, c * cp.sum_squares(Wm), None


def _certificate(
    Z: cp.Variable | None,
    Wm: cp.Expression,
    A: np.ndarray | None,
    G: np.ndarray,
    Bs: np.ndarray,
    yys: float,
    c: float,
) -> Callable[[], float]:
    """The certified relative gap of :func:`solve_conv`'s solution, a Fenchel bound.

    In the variable solved for: Z through the lifting A (element mode, ``Z`` given),
    else W; the fit is tr(WᵀGW) − 2⟨B, W⟩ + mean ‖y‖².
    """
    # The fit alone is minimised by least squares (A is onto, so Z reaches every w).
    fit_min = yys - float(np.sum(Bs * np.linalg.lstsq(G, Bs, rcond=None)[0]))

    def fit_and_gradient(W: np.ndarray) -> tuple[float, np.ndarray]:
        GW = G @ W
        return float(np.sum(GW * W) - 2 * np.sum(Bs * W) + yys), 2 * (GW - Bs)

    def certify() -> float:
        if Z is not None and A is not None:
            Zv = as_array(Z.value)
            c_out = Bs.shape[1]
            value, grad = fit_and_gradient((A @ Zv.ravel()).reshape(c_out, -1).T)
            gZ = (A.T @ grad.T.ravel()).reshape(Zv.shape)  # chain rule through the lifting
            value += c * nuclear(Zv) ** 2
            return squared_norm_gap(value, Zv, gZ, c, nuclear, spectral, fit_min)
        W = as_array(Wm.value)
        value, grad = fit_and_gradient(W)
        value += c * frobenius(W) ** 2
        return squared_norm_gap(value, W, grad, c, frobenius, frobenius, fit_min)

    return certify
