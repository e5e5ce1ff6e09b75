r"""The global optimum of dropout training of one FC hidden layer, formula (3)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._linalg import sqrtm_psd
from .._references import cites
from .._validation import check_array, check_cov, check_int
from ..masks import dropout_lambda

__all__ = ["global_optimum"]


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


@cites("mianjy2018implicit, Thm 2.5", "cavazza2018dropout, Thm 3")
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
        The optimal end-to-end map :math:`M^*`, of rank at most ``width``.

    Raises
    ------
    InvalidParameterError
        If ``T`` is not a finite real 2-D array, ``keep`` is not in (0, 1], ``width``
        is not a positive integer, or ``cov`` is not a symmetric positive definite
        matrix of shape (d_in, d_in).
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
