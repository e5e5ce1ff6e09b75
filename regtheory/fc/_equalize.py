r"""Equalized factorizations: every hidden unit carries the same product (THEORY §1).

A factorization attains the induced regularizer (2) exactly when its per-unit products
:math:`\|u_i\|\,\|C^{1/2}v_i\|` are equal and sum to :math:`\|MC^{1/2}\|_*`
(Mianjy, Arora & Vidal, ICML 2018); :func:`equalize` builds one.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from numpy.typing import ArrayLike

from .._linalg import numerical_rank, rounding_rtol, sqrtm_psd
from .._references import cites
from .._ties import TIE_RTOL, lowest_index
from .._validation import check_cov, check_nonnegative
from ._factors import check_factors, input_energy

__all__ = ["equalize", "has_equal_products", "is_equalized", "unit_products"]


@cites("mianjy2018implicit")
def unit_products(U: ArrayLike, V: ArrayLike, *, cov: ArrayLike | None = None) -> np.ndarray:
    r"""Per-unit products :math:`\|u_i\|\,\|C^{1/2} v_i\|` of a factorization.

    .. math:: p_i = \|u_i\|\,\|C^{1/2} v_i\| = \sqrt{\|u_i\|^2\, v_i^\top C v_i},
              \qquad i = 1, \dots, w ,

    so the dropout penalty (1) is :math:`\lambda \sum_i p_i^2`. All :math:`p_i`
    are equal when the factorization is equalized (:func:`is_equalized`).

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    array (width,)
        The products :math:`p_i \ge 0`, in the order of the hidden units.

    Raises
    ------
    InvalidParameterError
        If ``U`` or ``V`` is not a finite real 2-D array, their widths differ, or
        ``cov`` is not a symmetric PSD matrix of shape (d_in, d_in).

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> unit_products(np.array([[1.0, 2.0]]), np.array([[3.0, 1.0]]))
    array([3., 2.])
    """
    U, V = check_factors(U, V)
    cov = check_cov(cov, V.shape[0])
    return np.sqrt(np.einsum("ji,ji->i", U, U) * input_energy(V, cov))


@cites("mianjy2018implicit, Def. 2.2")
def has_equal_products(
    U: ArrayLike, V: ArrayLike, *, rtol: float = 1e-6, cov: ArrayLike | None = None
) -> bool:
    r"""Whether every hidden unit has the same product :math:`\|u_i\|\,\|C^{1/2}v_i\|`.

    The *equal products* condition of Mianjy et al. [1, Def. 2.2], with a relative
    tolerance: for the products :math:`p_i` of :func:`unit_products`,

    .. math:: \max_i p_i - \min_i p_i \le \mathrm{rtol} \cdot \frac1w \sum_i p_i .

    (All-zero products count as equal.) Necessary for a factorization to attain the
    induced regularizer (2), not sufficient: columns of unit norm have equal
    products whatever the map. :func:`is_equalized` tests the full condition.

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    rtol : float
        Relative tolerance, ≥ 0 (else ``ValueError``).
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    bool
        True if the inequality above holds.

    Raises
    ------
    InvalidParameterError
        If ``U`` or ``V`` is not a finite real 2-D array, their widths differ, ``cov``
        is not a symmetric PSD matrix of shape (d_in, d_in), or ``rtol`` is negative.

    See Also
    --------
    is_equalized : equal products *and* a factorization that attains the nuclear norm.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> has_equal_products(np.array([[1.0, 2.0]]), np.array([[3.0, 1.5]]))  # products 3 and 3
    True
    """
    rtol = check_nonnegative(rtol, "rtol")
    p = unit_products(U, V, cov=cov)
    return bool(p.max() - p.min() <= rtol * p.mean())


@cites("mianjy2018implicit")
def is_equalized(
    U: ArrayLike, V: ArrayLike, *, rtol: float = 1e-6, cov: ArrayLike | None = None
) -> bool:
    r"""Whether the factorization attains the induced regularizer (2): its penalty is minimal.

    By Cauchy–Schwarz and the triangle inequality, for the products
    :math:`p_i = \|u_i\|\,\|C^{1/2}v_i\|` of :func:`unit_products`,

    .. math:: \sum_i p_i^2 \;\ge\; \frac1w\Big(\sum_i p_i\Big)^2
              \;\ge\; \frac1w\,\|UV^\top C^{1/2}\|_*^2 ,

    so the penalty (1) equals (2) exactly when both hold with equality: the
    products are equal (:func:`has_equal_products`) *and* their sum is the nuclear
    norm of :math:`MC^{1/2}` (the units split M along a decomposition that attains
    it). This function checks both, each to relative tolerance ``rtol``. Equal
    products alone are not enough: unit-norm columns have them for any map.
    :func:`equalize` builds a factorization for which this is True.

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    rtol : float
        Relative tolerance, ≥ 0 (else ``ValueError``).
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    bool
        True if the products are equal and sum to :math:`\|UV^\top C^{1/2}\|_*`,
        each within ``rtol`` (a zero map with zero products counts as equalized).

    Raises
    ------
    InvalidParameterError
        If ``U`` or ``V`` is not a finite real 2-D array, their widths differ, ``cov``
        is not a symmetric PSD matrix of shape (d_in, d_in), or ``rtol`` is negative.

    See Also
    --------
    has_equal_products : the necessary condition alone.
    induced_regularizer : the value (2) an equalized factorization pays.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> is_equalized(np.array([[1.0, 2.0]]), np.array([[3.0, 1.5]]))  # one direction, equal shares
    True
    >>> is_equalized(np.eye(2), np.eye(2))  # identity map split over its singular vectors
    True
    >>> is_equalized(np.eye(2), np.array([[1.0, 1.0], [0.0, 0.0]]))  # equal products, rank 1 map
    False
    """
    if not has_equal_products(U, V, rtol=rtol, cov=cov):
        return False
    p = unit_products(U, V, cov=cov)
    M = np.asarray(U, dtype=float) @ np.asarray(V, dtype=float).T
    C = check_cov(cov, M.shape[1])
    if C is not None:
        M = M @ sqrtm_psd(C)
    nuc = float(np.linalg.svd(M, compute_uv=False).sum())
    return bool(p.sum() - nuc <= rtol * max(nuc, p.sum()))


# equalize makes discrete choices (tied singular values, the Givens planes) with the
# ties of regtheory._ties: numbers within TIE_RTOL of the scale are equal, the lowest
# index wins, so the factors do not depend on rounding (see that module for why).
# Products within SETTLED_RTOL of their mean count as equal: rotating two units that
# differ by less would only mix them (by 45°, however small the difference), and
# whether it happened would depend on rounding.
SETTLED_RTOL = 1e-10


def _equalizing_rotation(S: np.ndarray) -> np.ndarray:
    """Orthogonal Q with constant diagonal of QᵀSQ, from at most w−1 Givens rotations.

    ``S`` is symmetric PSD. Each rotation acts in the plane of the currently largest
    and smallest free diagonal entries (one above, one below the mean t = tr S / w)
    and sets the first of them to t, which is then frozen; a 2×2 block
    [[a, b], [b, c]] rotated by φ/2 has first diagonal entry
    (a+c)/2 + (a−c)/2 cos φ + b sin φ, which sweeps [c, a] ∋ t. Entries within
    TIE_RTOL · max diag S of the largest (smallest) tie, and the lowest index wins;
    the loop stops once the free entries agree to SETTLED_RTOL · t.
    """
    w = S.shape[0]
    A = S.copy()
    Q = np.eye(w)
    target = np.trace(S) / w
    free = np.ones(w, dtype=bool)
    tie = TIE_RTOL * max(float(np.max(np.diag(S))), np.finfo(float).tiny)
    settled = SETTLED_RTOL * max(abs(target), np.finfo(float).tiny)
    for _ in range(w - 1):
        d = np.diag(A)
        high, low = np.max(d[free]), np.min(d[free])
        if high - low <= settled:
            break
        i = lowest_index(free & (d > target) & (d >= high - tie))
        j = lowest_index(free & (d < target) & (d <= low + tie))
        a, b, c = A[i, i], A[i, j], A[j, j]
        mid, half = 0.5 * (a + c), 0.5 * (a - c)
        radius = np.hypot(half, b)
        phi = np.arctan2(b, half) + np.arccos(np.clip((target - mid) / radius, -1.0, 1.0))
        cs, sn = np.cos(phi / 2), np.sin(phi / 2)
        G = np.array([[cs, -sn], [sn, cs]])
        idx = [i, j]
        A[:, idx] = A[:, idx] @ G
        A[idx, :] = G.T @ A[idx, :]
        Q[:, idx] = Q[:, idx] @ G
        A[i, i] = target  # exact up to rounding; freeze it
        free[i] = False
    return Q


def _tied_runs(s: np.ndarray) -> list[slice]:
    """Runs of consecutive (descending) singular values within TIE_RTOL · s[0] of each other."""
    if s.size == 0:
        return []
    breaks = np.flatnonzero(s[:-1] - s[1:] > TIE_RTOL * s[0]) + 1
    edges = [0, *breaks.tolist(), s.size]
    return [slice(a, b) for a, b in pairwise(edges)]


# A fixed generic frame (the same on every machine: NumPy's PCG64 and normal sampler
# are bit-reproducible) that picks one basis in each space of tied singular vectors.
_FRAME_SEED = 20180710


def _canonical_basis(A: np.ndarray, runs: list[slice]) -> np.ndarray:
    """Per run of tied singular values, the orthogonal R_c that fixes its basis.

    Singular vectors of tied singular values are determined only up to a rotation
    inside their space, and LAPACK's choice depends on rounding. R_c is the polar
    factor of A_cᵀZ_c for a fixed frame Z, so A_c R_c = P_c Z_c (Z_cᵀ P_c Z_c)^{-1/2}
    depends on the projector P_c = A_c A_cᵀ only; a run of one value gets the sign
    that makes a_cᵀz_c positive.
    """
    r = A.shape[1]
    Z = np.random.default_rng(_FRAME_SEED).standard_normal((A.shape[0], r))
    R = np.zeros((r, r))
    for run in runs:
        W, _, Yt = np.linalg.svd(A[:, run].T @ Z[:, run])
        R[run, run] = W @ Yt
    return R


@cites("mianjy2018implicit, Thm 2.4")
def equalize(
    U: ArrayLike, V: ArrayLike, *, cov: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""An equalized factorization of the same map with the same width.

    Returns :math:`(U', V')` with :math:`U'V'^\top = UV^\top`, the same width, and
    :math:`\|u'_i\|\,\|C^{1/2}v'_i\| = \|MC^{1/2}\|_*/w` for every unit, so the
    dropout penalty equals :func:`induced_regularizer` (THEORY §1, [1, Thm 2.4]).

    Construction: balanced SVD factors of :math:`MC^{1/2} = A\,\mathrm{diag}(s)B^\top`
    (singular values below the numerical rank dropped), padded with zero columns to
    width w, rotated by an orthogonal Q (at most w − 1 Givens rotations) that makes
    the diagonal of :math:`Q^\top \operatorname{diag}(s) Q` constant.

    The result depends continuously on the input, not on rounding: singular values
    within ``TIE_RTOL`` (1e-9) of :math:`s_1` count as tied and their singular
    vectors are put in one fixed basis (their SVD basis is arbitrary), and the
    Givens planes are chosen with ties broken by the lowest index. The same input
    gives the same factors on every machine up to rounding, and an input changed by
    1e-12 gives factors changed by about that much, so Monte Carlo estimates on them
    do not move.

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    cov : array (d_in, d_in), optional
        Input second moment; must be positive definite when given.

    Returns
    -------
    (U', V') : arrays of the shapes of U and V
        The equalized factors, with :math:`U'V'^\top = UV^\top`.

    Raises
    ------
    InvalidParameterError
        If ``U`` or ``V`` is not a finite real 2-D array, their widths differ, or
        ``cov`` is not a symmetric positive definite matrix of shape (d_in, d_in).

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    """
    U, V = check_factors(U, V)
    cov = check_cov(cov, V.shape[0], require_pd=True)
    width = U.shape[1]
    M = U @ V.T
    if cov is not None:
        M = M @ sqrtm_psd(cov)
    A, s, Bt = np.linalg.svd(M, full_matrices=False)
    # rank(UVᵀ) <= width; the values past the numerical rank are rounding noise whose
    # singular vectors are arbitrary, so they are dropped rather than equalized.
    r = min(width, numerical_rank(s, rtol=rounding_rtol(M.shape)))
    A, s, B = A[:, :r], s[:r], Bt[:r].T
    R = _canonical_basis(A, _tied_runs(s))
    root = np.sqrt(s)[:, None] * R  # S^{1/2} R: A S^{1/2} R (B S^{1/2} R)ᵀ = A S Bᵀ
    U0 = np.zeros((U.shape[0], width))
    V0 = np.zeros((V.shape[0], width))
    U0[:, :r] = A @ root
    V0[:, :r] = B @ root
    gram = np.zeros((width, width))
    gram[:r, :r] = root.T @ root  # U0ᵀU0 = V0ᵀV0: the factors are balanced
    Q = _equalizing_rotation(gram)
    U1, V1 = U0 @ Q, V0 @ Q
    if cov is not None:
        V1 = sqrtm_psd(cov, inverse=True) @ V1
    return U1, V1
