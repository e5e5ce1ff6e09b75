r"""Induced regularizers of FC dropout: the smallest penalty over the factorizations of a map.

Elementwise dropout induces the squared nuclear norm, formula (2); block dropout is
bounded below by the squared spectral k-support norm (Pal et al., CVPR 2020).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._linalg import numerical_rank, rounding_rtol, sqrtm_psd
from .._references import cites
from .._validation import (
    InvalidParameterError,
    check_array,
    check_block_size,
    check_cov,
    check_int,
)
from ..masks import dropout_lambda

__all__ = ["block_induced_regularizer", "induced_regularizer", "spectral_k_support_norm"]


@cites("argyriou2012sparse, Prop. 2.1", "mcdonald2014spectral")
def spectral_k_support_norm(M: ArrayLike, k: int) -> float:
    r"""Spectral k-support norm :math:`\|M\|_{(k)}` of a matrix.

    The gauge of the convex hull of the matrices of rank ≤ k and unit Frobenius
    norm (McDonald, Pontil & Stamos [2]), i.e. the k-support norm (Argyriou,
    Foygel & Srebro [1, Prop. 2.1]) of the singular values
    :math:`\sigma_1 \ge \dots \ge \sigma_d`, d = min(m, n):

    .. math:: \|M\|_{(k)}^2 = \sum_{i=1}^{k-r-1}\sigma_i^2
              + \frac{1}{r+1}\Big(\sum_{i=k-r}^{d}\sigma_i\Big)^2 ,

    r ∈ {0, …, k−1} the unique integer with
    :math:`\sigma_{k-r-1} > \frac{1}{r+1}\sum_{i\ge k-r}\sigma_i \ge \sigma_{k-r}`
    (σ₀ = ∞). k = 1 gives the nuclear norm, k ≥ rank M the Frobenius norm (for
    k ≥ d it is returned directly).

    Parameters
    ----------
    M : array (m, n)
        The matrix.
    k : int
        Rank parameter, k ≥ 1.

    Returns
    -------
    float
        :math:`\|M\|_{(k)}` (not squared).

    Raises
    ------
    InvalidParameterError
        If ``M`` is not a finite real 2-D array or ``k`` is not a positive integer.

    References
    ----------
    [1] A. Argyriou, R. Foygel, N. Srebro, Sparse Prediction with the k-Support
        Norm, NeurIPS 2012.
    [2] A. M. McDonald, M. Pontil, D. Stamos, Spectral k-Support Norm
        Regularization, NeurIPS 2014.

    Examples
    --------
    >>> import numpy as np
    >>> spectral_k_support_norm(np.diag([3.0, 4.0]), 1)  # nuclear norm
    7.0
    >>> spectral_k_support_norm(np.diag([3.0, 4.0]), 2)  # Frobenius norm
    5.0
    """
    M = check_array(M, "M", ndim=2)
    k = check_int(k, "k")
    s = np.linalg.svd(M, compute_uv=False)
    d = s.size
    if k >= d:
        return float(np.sqrt(np.sum(s**2)))
    tail = np.cumsum(s[::-1])[::-1]  # tail[j] = Σ_{i≥j} s_i (0-based)
    for r in range(k):
        j = k - r - 1  # 0-based index of σ_{k-r}
        avg = tail[j] / (r + 1)
        head_ok = j == 0 or s[j - 1] > avg
        if head_ok and avg >= s[j] * (1 - 1e-12):
            return float(np.sqrt(np.sum(s[:j] ** 2) + tail[j] ** 2 / (r + 1)))
    raise AssertionError("no valid r in the k-support norm")  # pragma: no cover


@cites("pal2020regularization", "mcdonald2014spectral", "mianjy2018implicit")
def block_induced_regularizer(
    M: ArrayLike, keep: float, width: int, block_size: int, *, cov: ArrayLike | None = None
) -> float:
    r"""Convex lower bound of the induced regularizer of block dropout on an FC layer.

    .. math:: \Theta_k(M) = \min_{UV^\top = M} \lambda\sum_g \|U_gV_g^\top C^{1/2}\|_F^2
              \;\ge\; \frac{\lambda}{G}\,\|M C^{1/2}\|_{(k)}^2,\qquad G = w/k ,

    the squared spectral k-support norm (Pal et al., CVPR 2020; THEORY §1). Proof of
    the bound: the G blocks :math:`M_g = U_gV_g^\top` have rank ≤ k, so by
    Cauchy–Schwarz :math:`\sum_g\|M_g\|_F^2 \ge (\sum_g\|M_g\|_F)^2/G \ge
    \|M\|_{(k)}^2/G`. This function returns the bound. k = 1 is formula (2), which is
    attained (:func:`equalize`); for k > 1 it is attained when an optimal k-support
    decomposition fits into G blocks of equal norm -- often, not always. A
    counterexample: w = 4, k = 2 (G = 2) and rank M = 4 with singular values that
    cannot be paired into two pairs of equal sums: equality would need
    :math:`M = c\,(P_1 + P_2)` in M's singular basis with rank-2 projections P_g,
    whose eigenvalues come in pairs summing to 2c (Jordan's lemma). The gap can be
    large: at σ = (2.301, 2.029, 1.965), k = 2, G = 2 (w = 4) the factored minimum,
    found by a search over all width-4 factorizations, is 7.2 % above the bound. So the
    convex problem with this bound (:func:`regtheory.implied.solve_fc_block`) is a
    relaxation of block dropout.

    Parameters
    ----------
    M : array (d_out, d_in)
        End-to-end map.
    keep : float
        Retain probability θ in (0, 1] of each block.
    width : int
        Hidden units w, a multiple of ``block_size`` (else ``ValueError``). Unlike
        :func:`induced_regularizer`, it is not checked against rank(M).
    block_size : int
        Units per block k.
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    float
        The bound :math:`\frac{\lambda}{G}\|MC^{1/2}\|_{(k)}^2`, λ = (1 − θ)/θ.

    Raises
    ------
    InvalidParameterError
        If ``M`` is not a finite real 2-D array, ``keep`` is not in (0, 1], ``width``
        is not a positive integer, ``block_size``
        does not divide it, or ``cov`` is not a symmetric PSD matrix
        of shape (d_in, d_in).

    References
    ----------
    [1] A. Pal, C. Lane, R. Vidal, B. D. Haeffele, On the Regularization
        Properties of Structured Dropout, CVPR 2020.
    [2] A. M. McDonald, M. Pontil, D. Stamos, Spectral k-Support Norm
        Regularization, NeurIPS 2014.
    [3] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018
        (k = 1, formula (2)).

    Examples
    --------
    >>> import numpy as np
    >>> M = np.diag([3.0, 4.0])
    >>> block_induced_regularizer(M, 0.5, width=2, block_size=1)  # (1/2) * 7**2, as formula (2)
    24.5
    """
    M = check_array(M, "M", ndim=2)
    lam = dropout_lambda(keep)
    width = check_int(width, "width")
    k = check_block_size(block_size, width)
    cov = check_cov(cov, M.shape[1])
    Mc = M if cov is None else M @ sqrtm_psd(cov)
    return lam / (width // k) * spectral_k_support_norm(Mc, k) ** 2


def _nuclear_norm(A: np.ndarray) -> float:
    return float(np.linalg.svd(A, compute_uv=False).sum())


@cites("mianjy2018implicit, Thm 2.4")
def induced_regularizer(
    M: ArrayLike, keep: float, width: int, *, cov: ArrayLike | None = None
) -> float:
    r"""Induced regularizer of FC dropout, formula (2).

    The smallest dropout penalty over all width-``w`` factorizations
    :math:`M = UV^\top` [1, Thm 2.4]:

    .. math:: \Theta(M) = \min_{UV^\top = M} R(U, V)
                        = \frac{\lambda}{w}\, \|M C^{1/2}\|_*^2 ,

    attained by equalized factorizations (see :func:`equalize`).

    Parameters
    ----------
    M : array (d_out, d_in)
        End-to-end map.
    keep : float
        Retain probability in (0, 1].
    width : int
        Number of hidden units w; must be at least rank(M).
    cov : array (d_in, d_in), optional
        Input second moment (default identity).

    Returns
    -------
    float
        :math:`\Theta(M) \ge 0`.

    Raises
    ------
    InvalidParameterError
        If ``M`` is not a finite real 2-D array, ``keep`` is not in (0, 1], ``width``
        is not a positive integer at least rank(M), or ``cov`` is not a symmetric PSD matrix
        of shape (d_in, d_in).
    """
    M = check_array(M, "M", ndim=2)
    lam = dropout_lambda(keep)
    width = check_int(width, "width")
    cov = check_cov(cov, M.shape[1])
    s = np.linalg.svd(M, compute_uv=False)
    rank = numerical_rank(s, rtol=rounding_rtol(M.shape))
    if width < rank:
        raise InvalidParameterError(
            f"`width` ({width}) must be at least rank(M) ({rank}): a narrower network "
            "cannot represent M"
        )
    Mc = M if cov is None else M @ sqrtm_psd(cov)
    return lam / width * _nuclear_norm(Mc) ** 2
