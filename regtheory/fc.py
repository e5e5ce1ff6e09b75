r"""Dropout on a fully connected hidden layer, in closed form (THEORY.md §1).

The network is :math:`f(x) = U \operatorname{diag}(r/\theta) V^\top x` with
:math:`U \in \mathbb{R}^{d_{out}\times w}`, :math:`V \in \mathbb{R}^{d_{in}\times w}`
and :math:`r_i \sim \mathrm{Bernoulli}(\theta)` i.i.d. With
:math:`C = \mathbb{E}[x x^\top]` (Mianjy, Arora & Vidal, ICML 2018):

.. math::

    \mathbb{E}_{x,y,r}\|y - f(x)\|^2 = \mathbb{E}\|y - UV^\top x\|^2
        + \lambda \sum_i \|u_i\|^2\, v_i^\top C v_i .                      \quad (1)

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix
    Factorization, AISTATS 2018.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from numpy.typing import ArrayLike

from ._linalg import numerical_rank, rounding_rtol, sqrtm_psd
from ._overflow import finite_result
from ._ties import TIE_RTOL, lowest_index
from ._validation import (
    InvalidParameterError,
    SeedLike,
    check_array,
    check_block_size,
    check_cov,
    check_int,
    check_n_masks,
    check_nonnegative,
)
from .masks import Bernoulli, Channel, dropout_lambda
from .montecarlo import Estimate, estimate, min_draws

__all__ = [
    "block_dropout_penalty",
    "block_induced_regularizer",
    "dropout_penalty",
    "dropout_penalty_mc",
    "equalize",
    "global_optimum",
    "has_equal_products",
    "induced_regularizer",
    "is_equalized",
    "spectral_k_support_norm",
    "structured_penalty",
    "unit_products",
]


def _check_factors(U: ArrayLike, V: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    U = check_array(U, "U", ndim=2)
    V = check_array(V, "V", ndim=2)
    if U.shape[1] != V.shape[1]:
        raise InvalidParameterError(
            f"`U` and `V` must have the same width (number of columns = hidden units), "
            f"got U {U.shape} and V {V.shape}"
        )
    return U, V


def _input_energy(V: np.ndarray, cov: np.ndarray | None) -> np.ndarray:
    """E[h_i^2] = v_i^T C v_i for each hidden unit."""
    if cov is None:
        return np.einsum("ji,ji->i", V, V)
    return np.einsum("ji,jk,ki->i", V, cov, V)


@finite_result("the dropout penalty of the layer")
def dropout_penalty(
    U: ArrayLike, V: ArrayLike, keep: float, *, cov: ArrayLike | None = None
) -> float:
    r"""Expected dropout penalty of a fully connected layer, formula (1).

    .. math:: R(U, V) = \lambda \sum_{i=1}^{w} \|u_i\|^2\, v_i^\top C v_i,
              \qquad \lambda = \frac{1-\theta}{\theta}

    It is the exact gap :math:`\mathbb{E}_r \mathbb{E}_x\|y - f_r(x)\|^2 -
    \mathbb{E}_x\|y - UV^\top x\|^2` [1], whatever ``y`` is.

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    keep : float
        Retain probability θ in (0, 1].
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> dropout_penalty(np.eye(2), np.eye(2), keep=0.5)
    2.0
    """
    U, V = _check_factors(U, V)
    lam = dropout_lambda(keep)
    cov = check_cov(cov, V.shape[0])
    return float(lam * np.dot(np.einsum("ji,ji->i", U, U), _input_energy(V, cov)))


@finite_result("the dropout penalty of the layer (Monte Carlo)")
def dropout_penalty_mc(
    U: ArrayLike,
    V: ArrayLike,
    keep: float,
    X: ArrayLike,
    *,
    n_masks: int = 100_000,
    seed: SeedLike = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
    block_size: int | None = None,
) -> Estimate:
    r"""Monte Carlo estimate of the dropout penalty on input samples, over real masks.

    Each draw samples one Bernoulli mask ``r`` (:class:`regtheory.masks.Bernoulli`;
    with ``block_size`` = k > 1, one Bernoulli draw per group of k consecutive
    units, :class:`regtheory.masks.Channel` on the units viewed as (w/k, k))
    and returns the data average of the output perturbation it causes,

    .. math:: D(r) = \frac1n \sum_{k=1}^n \|U \operatorname{diag}(r/\theta - 1) V^\top x_k\|^2,

    whose expectation over ``r`` is the penalty of :func:`dropout_penalty` with the
    empirical ``cov = XᵀX/n``. For speed the data average is computed as the exact
    quadratic form :math:`D(r) = e^\top (U^\top U \circ H^\top H/n)\, e`,
    :math:`e = r/\theta - 1`, :math:`H = XV`: one w×w matrix, then O(w²) per mask.

    Parameters
    ----------
    U, V : arrays (d_out, width), (d_in, width)
    keep : float
        Retain probability in (0, 1].
    X : array (n, d_in)
        Input samples.
    n_masks : int
        Number of masks (the maximum when ``rtol`` is given). At least
        :func:`regtheory.montecarlo.min_draws` of ``keep`` (56 at keep 0.5, 156 at
        0.1 or 0.9, 715 at 0.02), else ``ValueError``: with fewer masks the rarely
        kept (or dropped) units may not be drawn at all, and no interval is honest.
    seed : int or numpy.random.Generator
    rtol : float, optional
        Stop once the relative standard error is at most ``rtol`` (not before
        1000 masks, nor before the minimum above).
    batch_size : int, optional
        Masks per vectorised batch (default 4096).
    block_size : int, optional
        Units dropped together (DropBlock on an FC layer, Pal et al. 2020); must
        divide the width. ``None`` (default) or 1 is ordinary dropout.

    Returns
    -------
    Estimate
        Its :meth:`~regtheory.montecarlo.Estimate.ci` is corrected for the skewed
        draws and covers 92-98 % at every accepted ``n_masks`` (tests/test_coverage.py).
    """
    U, V = _check_factors(U, V)
    X = check_array(X, "X", ndim=2)
    if X.shape[1] != V.shape[0]:
        raise InvalidParameterError(
            f"`X` must have {V.shape[0]} columns (d_in of V), got {X.shape}"
        )
    width = U.shape[1]
    block_size = 1 if block_size is None else block_size
    groups = width // check_block_size(block_size, width)
    masks = Bernoulli(keep) if block_size == 1 else Channel(keep)
    shape = (width,) if block_size == 1 else (groups, block_size)
    need = min_draws(masks.event_probabilities(shape))
    setting = f"keep = {masks.keep:g}" + (
        f", blocks of {block_size} units" if block_size > 1 else ""
    )
    n_masks = check_n_masks(n_masks, need, setting)
    H = X @ V
    gram = (U.T @ U) * (H.T @ H) / X.shape[0]

    def draw(rng, size):
        e = masks.sample(shape, size, rng).reshape(size, width) - 1.0
        return np.einsum("bi,bi->b", e @ gram, e)

    return estimate(
        draw, n_masks, seed, batch_size=batch_size, rtol=rtol, min_samples=max(1000, need)
    )


@finite_result("the structured dropout penalty of the layer")
def structured_penalty(
    U: ArrayLike, V: ArrayLike, mask_cov: ArrayLike, *, cov: ArrayLike | None = None
) -> float:
    r"""Dropout penalty of an FC layer under any mask distribution, formula (4).

    For a multiplicative mask m on the hidden units with :math:`\mathbb{E}m = 1`
    and covariance :math:`\Sigma_m`, the expected excess loss
    :math:`\mathbb{E}_{x,m}\|U \operatorname{diag}(m) V^\top x - UV^\top x\|^2` is

    .. math:: R = \mathbb{E}_x\, h^\top (\Sigma_m \circ U^\top U)\, h
                = \operatorname{tr}\big((\Sigma_m \circ U^\top U)\, V^\top C V\big),
              \qquad h = V^\top x ,

    computed as the sum of the entries of
    :math:`\Sigma_m \circ U^\top U \circ V^\top C V`. Elementwise dropout is
    :math:`\Sigma_m = \lambda I` (formula (1), :func:`dropout_penalty`); groups of k
    units dropped together are :math:`\Sigma_m = \lambda\, I_G \otimes \mathbf 1_k
    \mathbf 1_k^\top` (:func:`block_dropout_penalty`).

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    mask_cov : array (width, width)
        Covariance :math:`\Sigma_m` of the mask (E m = 1), symmetric PSD.
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    float
        The penalty R ≥ 0.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018
        (the elementwise case, formula (1)).
    [2] A. Pal, C. Lane, R. Vidal, B. D. Haeffele, On the Regularization
        Properties of Structured Dropout, CVPR 2020 (structured masks).

    Examples
    --------
    >>> import numpy as np
    >>> structured_penalty(np.eye(2), np.eye(2), mask_cov=np.eye(2))  # = dropout at keep 1/2
    2.0
    """
    U, V = _check_factors(U, V)
    Sigma = check_cov(mask_cov, U.shape[1], name="mask_cov")
    C = check_cov(cov, V.shape[0])
    VCV = V.T @ V if C is None else V.T @ C @ V
    return float(np.sum(Sigma * (U.T @ U) * VCV))


@finite_result("the block dropout penalty of the layer")
def block_dropout_penalty(
    U: ArrayLike, V: ArrayLike, keep: float, block_size: int, *, cov: ArrayLike | None = None
) -> float:
    r"""Dropout penalty of an FC layer whose hidden units are dropped in blocks of ``block_size``.

    DropBlock on an FC layer (Pal, Lane, Vidal & Haeffele [1]): the w hidden units
    form G = w/k groups of k consecutive units (group g = units gk, …, gk + k − 1),
    and one Bernoulli(θ) draw, scaled by 1/θ, keeps or drops each whole group.
    The mask covariance is :math:`\lambda\, I_G \otimes \mathbf 1_k\mathbf 1_k^\top`,
    so formula (4) (:func:`structured_penalty`) becomes

    .. math:: R = \lambda \sum_{g=1}^{G} \|U_g V_g^\top C^{1/2}\|_F^2 ,
              \qquad \lambda = \frac{1-\theta}{\theta},

    with :math:`U_g, V_g` the k columns of U and V that belong to group g.
    ``block_size=1`` is :func:`dropout_penalty`.

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    keep : float
        Retain probability θ in (0, 1] of each group.
    block_size : int
        Units per group k; must divide the width (else ``ValueError``).
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` means C = I (white input).

    Returns
    -------
    float
        The penalty R ≥ 0.

    References
    ----------
    [1] A. Pal, C. Lane, R. Vidal, B. D. Haeffele, On the Regularization
        Properties of Structured Dropout, CVPR 2020.
    [2] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018
        (the case k = 1, formula (1)).

    Examples
    --------
    >>> import numpy as np
    >>> U, V = np.ones((1, 2)), np.ones((1, 2))
    >>> block_dropout_penalty(U, V, keep=0.5, block_size=2), dropout_penalty(U, V, keep=0.5)
    (4.0, 2.0)
    """
    U, V = _check_factors(U, V)
    lam = dropout_lambda(keep)
    k = check_block_size(block_size, U.shape[1])
    cov = check_cov(cov, V.shape[0])
    G = U.shape[1] // k
    Ug = U.T.reshape(G, k, -1)  # (G, k, d_out)
    Vg = (V if cov is None else sqrtm_psd(cov) @ V).T.reshape(G, k, -1)
    blocks = np.einsum("gio,gij->goj", Ug, Vg)  # U_g V_gᵀ C^{1/2}
    return float(lam * np.sum(blocks**2))


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
    large: at σ = (2.301, 2.029, 1.965), k = 2, G = 2 (w = 4) the factored minimum
    is 7.2 % above the bound (tests/test_fc.py). So the convex problem with this
    bound (:func:`regtheory.implied.solve_fc_block`) is a relaxation of block dropout.

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

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> unit_products(np.array([[1.0, 2.0]]), np.array([[3.0, 1.0]]))
    array([3., 2.])
    """
    U, V = _check_factors(U, V)
    cov = check_cov(cov, V.shape[0])
    return np.sqrt(np.einsum("ji,ji->i", U, U) * _input_energy(V, cov))


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
    U, V : arrays (d_out, width), (d_in, width)
    cov : array (d_in, d_in), optional
        Input second moment; must be positive definite when given.

    Returns
    -------
    (U', V') : arrays of the shapes of U and V

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    """
    U, V = _check_factors(U, V)
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


def _shrinkage(sigma: np.ndarray, lam: float, width: int) -> tuple[np.ndarray, int, float]:
    """Singular values of the optimum, formula (3), with the rank cap at ``width``."""
    kappa = np.cumsum(sigma)
    j = np.arange(1, sigma.size + 1)
    above = sigma > lam * kappa / (width + lam * j)
    rho = int(j[above].max()) if above.any() else 0
    rho = min(rho, width)
    if rho == 0:
        return np.zeros_like(sigma), 0, 0.0
    alpha = lam * kappa[rho - 1] / (width + lam * rho)
    m = np.zeros_like(sigma)
    m[:rho] = np.maximum(sigma[:rho] - alpha, 0.0)
    return m, rho, float(alpha)


def global_optimum(
    T: ArrayLike, keep: float, width: int, *, cov: ArrayLike | None = None
) -> np.ndarray:
    r"""Closed-form global optimum of the dropout objective, formula (3).

    Minimises :math:`\mathbb{E}\|y - Mx\|^2 + \frac{\lambda}{w}\|MC^{1/2}\|_*^2` over
    maps M of rank at most ``width`` (the maps a width-w network can represent),
    which is the global optimum :math:`UV^\top` of dropout training (Mianjy et al.
    [1, Thm 2.5]; Cavazza et al. [2, Thm 3] with γ = λ/w). For C = I and
    :math:`T = W_1 \operatorname{diag}(\sigma) W_2^\top`, :math:`\kappa_j = \sum_{i\le j}\sigma_i`:

    .. math::

        \rho = \max\{j : \sigma_j > \lambda\kappa_j/(w + \lambda j)\},\quad
        \alpha = \frac{\lambda \kappa_\rho}{w + \lambda\rho},\quad
        M^* = W_1 \operatorname{diag}((\sigma_i - \alpha)_+) W_2^\top,

    with ρ capped at w. For C ≻ 0 the formula is applied to :math:`TC^{-1/2}` and
    the result multiplied by :math:`C^{-1/2}` on the right.

    Parameters
    ----------
    T : array (d_out, d_in)
        Cross moment E[y xᵀ].
    keep : float
        Retain probability in (0, 1].
    width : int
        Number of hidden units.
    cov : array (d_in, d_in), optional
        E[x xᵀ], positive definite (default identity).

    Returns
    -------
    M : array (d_out, d_in)
    """
    T = check_array(T, "T", ndim=2)
    lam = dropout_lambda(keep)
    width = check_int(width, "width")
    cov = check_cov(cov, T.shape[1], require_pd=True)
    Tw = T if cov is None else T @ sqrtm_psd(cov, inverse=True)
    W1, sigma, W2t = np.linalg.svd(Tw, full_matrices=False)
    m, rho, _ = _shrinkage(sigma, lam, width)
    M = (W1[:, :rho] * m[:rho]) @ W2t[:rho]
    if cov is not None:
        M = M @ sqrtm_psd(cov, inverse=True)
    return M
