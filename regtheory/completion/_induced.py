r"""The induced regularizer of the product form: a squared weighted trace norm.

With :math:`P = \operatorname{diag}(\sqrt p)`, :math:`Q = \operatorname{diag}(\sqrt q)`,
the product form is the FC penalty of Mianjy, Arora & Vidal with C = I applied to the
factors (PU, QV) of PMQ; the minimum over the factorizations of M is therefore
:math:`(\lambda/d)\|PMQ\|_*^2`, attained by equalizing (PU, QV) as
:func:`regtheory.fc.equalize` does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._linalg import numerical_rank, rounding_rtol
from .._overflow import finite_result
from .._references import cites
from .._validation import InvalidParameterError, check_array, check_int
from ..fc import equalize as fc_equalize
from ..masks import dropout_lambda
from ._objective import Observations, check_covered, check_model, check_obs

__all__ = ["equalize", "induced_regularizer"]


@cites("arora2021dropout", "salakhutdinov2010collaborative", "mianjy2018implicit")
@finite_result("the induced regularizer of the product form")
def induced_regularizer(M: ArrayLike, obs: Observations, keep: float, width: int) -> float:
    r"""Smallest product-form regularizer over the width-d factorizations of M.

    .. math:: \Theta_{pq}(M) = \min_{UV^\top = M} \lambda \sum_{k=1}^d
              \|u_k\|_p^2\, \|v_k\|_q^2
              = \frac{\lambda}{d}\,\big\|\operatorname{diag}(\sqrt p)\, M\,
              \operatorname{diag}(\sqrt q)\big\|_*^2 ,

    λ = (1 − θ)/θ, for :math:`d \ge \operatorname{rank} M` and the empirical marginals
    p, q of ``obs`` (all positive). The nuclear norm on the right is the weighted trace
    norm of Salakhutdinov & Srebro [2]. Proof: the product form of (U, V) is the FC
    dropout penalty with white input of (PU, QV), which factor PMQ, and P, Q are
    invertible; so the minimum is formula (2) of the FC theory [3] at PMQ, and
    :func:`equalize` attains it. The statement is about the product form
    (:func:`explicit_regularizer` with ``form="product"``), the expected penalty under
    sampling from :math:`p \otimes q` [1]; the penalty on a given set of entries is
    another function of (U, V).

    Parameters
    ----------
    M : array (m, n)
        The matrix, of the shape of ``obs``.
    obs : Observations
        The observed entries (:func:`observed`); every row and column must have one.
    keep : float
        Retain probability θ in (0, 1].
    width : int
        Width d of the factorizations, at least rank(M).

    Returns
    -------
    float
        :math:`\Theta_{pq}(M) \ge 0`.

    Raises
    ------
    InvalidParameterError
        If ``M`` is not a finite real 2-D array of the shape of ``obs``, ``obs`` is not
        an :class:`Observations` or has an empty row or column, ``keep`` is outside
        (0, 1], or ``width`` is not an integer at least rank(M).

    See Also
    --------
    equalize : a factorization that attains the minimum.
    regtheory.fc.induced_regularizer : the same minimum for a fully connected layer.

    References
    ----------
    [1] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.
    [2] R. Salakhutdinov, N. Srebro, Collaborative Filtering in a Non-Uniform World:
        Learning with the Weighted Trace Norm, NeurIPS 2010.
    [3] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.completion import observed
    >>> obs = observed([0, 1], [0, 1], [1.0, 1.0], shape=(2, 2))  # p = q = (1/2, 1/2)
    >>> round(induced_regularizer(np.eye(2), obs, keep=0.5, width=2), 12)  # (1/2)·(1/2 + 1/2)²
    0.5
    """
    M = check_array(M, "M", ndim=2)
    obs = check_obs(obs)
    if M.shape != obs.shape:
        raise InvalidParameterError(
            f"`M` must have the shape of the observed matrix {obs.shape}, got {M.shape}"
        )
    lam = dropout_lambda(keep)
    width = check_int(width, "width")
    p, q = check_covered(obs)
    s = np.linalg.svd(M, compute_uv=False)
    rank = numerical_rank(s, rtol=rounding_rtol(M.shape))
    if width < rank:
        raise InvalidParameterError(
            f"`width` ({width}) must be at least rank(M) ({rank}): no narrower "
            "factorization represents M"
        )
    weighted = np.sqrt(p)[:, None] * M * np.sqrt(q)[None, :]
    return lam / width * float(np.linalg.svd(weighted, compute_uv=False).sum()) ** 2


@cites("mianjy2018implicit", "arora2021dropout")
def equalize(U: ArrayLike, V: ArrayLike, obs: Observations) -> tuple[np.ndarray, np.ndarray]:
    r"""A factorization of the same product and width that minimises the product form.

    With :math:`P = \operatorname{diag}(\sqrt p)`, :math:`Q = \operatorname{diag}(\sqrt q)`
    and the SVD :math:`PMQ = A\Sigma B^\top` of the weighted product (M = UVᵀ),

    .. math:: U' = P^{-1} A \Sigma^{1/2} G, \qquad V' = Q^{-1} B \Sigma^{1/2} G,

    padded with zero columns to the width d of U, with an orthogonal G that makes every
    :math:`\|u'_k\|_p\,\|v'_k\|_q` equal to :math:`\|PMQ\|_*/d`. Then
    :math:`U'V'^\top = M` and the product form :math:`R_{pq}(U', V')` equals
    :func:`induced_regularizer`. It is :func:`regtheory.fc.equalize` applied to
    (PU, QV), mapped back by :math:`P^{-1}, Q^{-1}`.

    Parameters
    ----------
    U : array (m, d)
        Row factor; row i belongs to row i of the matrix.
    V : array (n, d)
        Column factor; row j belongs to column j of the matrix.
    obs : Observations
        The observed entries (:func:`observed`); every row and column must have one.

    Returns
    -------
    (U', V') : arrays of the shapes of U and V
        The equalized factors, with :math:`U'V'^\top = UV^\top`.

    Raises
    ------
    InvalidParameterError
        If ``obs`` is not an :class:`Observations` or has an empty row or column, or the
        factors do not fit it (rows, widths).

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    [2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
        Capacity Control, ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.completion import explicit_regularizer, observed
    >>> obs = observed([0, 1, 1], [0, 0, 1], [1.0, 2.0, 3.0], shape=(2, 2))
    >>> U, V = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> U2, V2 = equalize(U, V, obs)
    >>> bool(np.allclose(U2 @ V2.T, U @ V.T))
    True
    >>> a = explicit_regularizer(U2, V2, obs, 0.5, form="product")
    >>> bool(np.isclose(a, induced_regularizer(U @ V.T, obs, 0.5, 2)))
    True
    """
    U, V, obs = check_model(U, V, obs)
    p, q = check_covered(obs)
    row_scale, col_scale = np.sqrt(p)[:, None], np.sqrt(q)[:, None]
    U1, V1 = fc_equalize(row_scale * U, col_scale * V)
    return U1 / row_scale, V1 / col_scale
