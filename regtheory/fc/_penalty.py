r"""The dropout penalty of an FC hidden layer: elementwise, structured and block masks.

Each penalty is computed exactly by its closed form, or estimated by Monte Carlo over
real sampled masks (``method="mc"``), which checks the closed form independently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._grammar import RngLike, check_method, deprecated_alias, transition_to_rng
from .._linalg import sqrtm_psd
from .._overflow import finite_result
from .._references import cites
from .._results import Penalty
from .._validation import (
    InvalidParameterError,
    check_array,
    check_block_size,
    check_cov,
    check_n_masks,
)
from ..masks import Bernoulli, Channel, dropout_lambda
from ..montecarlo import default_n_masks, estimate, min_draws
from ._factors import check_factors, input_energy

__all__ = [
    "block_dropout_penalty",
    "dropout_penalty",
    "dropout_penalty_mc",
    "structured_penalty",
]


def _input(
    X: ArrayLike | None, cov: ArrayLike | None, d_in: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The input as samples ``X`` (n, d_in) or as its second moment ``cov``, never both."""
    if X is not None and cov is not None:
        raise InvalidParameterError(
            "pass the input once: `X` (samples) or `cov` (their second moment E[x xᵀ])"
        )
    if X is None:
        return None, check_cov(cov, d_in)
    X = check_array(X, "X", ndim=2)
    if X.shape[1] != d_in:
        raise InvalidParameterError(f"`X` must have {d_in} columns (d_in of V), got {X.shape}")
    return X, None


def _resolve(method: object) -> str:
    """``"exact"`` or ``"mc"``: every FC penalty has a closed form, so "auto" is exact."""
    method = check_method(method)
    return "mc" if method == "mc" else "exact"


def _sampled(
    U: np.ndarray,
    V: np.ndarray,
    keep: float,
    block_size: int,
    inputs: tuple[np.ndarray | None, np.ndarray | None],
    *,
    n_masks: int | None,
    rng: RngLike,
    rtol: float | None,
    batch_size: int | None,
) -> Penalty:
    r"""Monte Carlo estimate of the (block) dropout penalty over real sampled masks.

    Each draw samples one mask ``r`` and returns the perturbation it causes,
    :math:`D(r) = e^\top (U^\top U \circ V^\top C V)\, e`, :math:`e = r/\theta - 1`: the
    data average :math:`\frac1n\sum_k \|U \operatorname{diag}(e) V^\top x_k\|^2` when C
    is the empirical moment of samples X (one w×w matrix, then O(w²) per mask).
    """
    X, cov = inputs
    width = U.shape[1]
    groups = width // check_block_size(block_size, width)
    masks = Bernoulli(keep) if block_size == 1 else Channel(keep)
    shape = (width,) if block_size == 1 else (groups, block_size)
    events = masks.event_probabilities(shape)
    need = min_draws(events)
    setting = f"keep = {masks.keep:g}" + (
        f", blocks of {block_size} units" if block_size > 1 else ""
    )
    n_masks = default_n_masks(events) if n_masks is None else check_n_masks(n_masks, need, setting)
    if X is not None:
        H = X @ V
        gram = (U.T @ U) * (H.T @ H) / X.shape[0]
    else:
        gram = (U.T @ U) * (V.T @ V if cov is None else V.T @ cov @ V)

    def draw(gen: np.random.Generator, size: int) -> np.ndarray:
        e = masks.sample(shape, size, gen).reshape(size, width) - 1.0
        return np.einsum("bi,bi->b", e @ gram, e)

    return estimate(
        draw,
        n_masks=n_masks,
        rng=rng,
        batch_size=batch_size,
        rtol=rtol,
        min_masks=max(1000, need),
    )


@cites("mianjy2018implicit")
@finite_result("the dropout penalty of the layer")
@transition_to_rng
def dropout_penalty(
    U: ArrayLike,
    V: ArrayLike,
    keep: float,
    *,
    cov: ArrayLike | None = None,
    X: ArrayLike | None = None,
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
) -> Penalty:
    r"""Expected dropout penalty of a fully connected layer, formula (1).

    .. math:: R(U, V) = \lambda \sum_{i=1}^{w} \|u_i\|^2\, v_i^\top C v_i,
              \qquad \lambda = \frac{1-\theta}{\theta}

    It is the exact gap :math:`\mathbb{E}_r \mathbb{E}_x\|y - f_r(x)\|^2 -
    \mathbb{E}_x\|y - UV^\top x\|^2` [1], whatever ``y`` is.

    With ``method="mc"`` it is estimated over real masks instead: each draw samples
    one Bernoulli mask ``r`` (:class:`regtheory.masks.Bernoulli`) and returns the
    output perturbation it causes,

    .. math:: D(r) = \frac1n \sum_{k=1}^n \|U \operatorname{diag}(r/\theta - 1) V^\top x_k\|^2,

    whose expectation over ``r`` is R with the empirical :math:`C = X^\top X/n`
    (with ``cov`` given, :math:`D(r) = e^\top (U^\top U \circ V^\top C V)\, e`,
    :math:`e = r/\theta - 1`, the same quadratic form).

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
        ``None`` (and no ``X``) means C = I (white input).
    X : array (n, d_in), optional
        Input samples instead of ``cov``: C = XᵀX/n. Not both.
    method : {"auto", "exact", "mc"}
        ``"exact"`` (and ``"auto"``: the closed form always exists) evaluates (1);
        ``"mc"`` estimates it over sampled masks.
    n_masks : int, optional
        Masks drawn by ``method="mc"`` (the maximum when ``rtol`` is given); default
        :func:`regtheory.montecarlo.default_n_masks` of ``keep``. At least
        :func:`regtheory.montecarlo.min_draws` of ``keep`` (56 at keep 0.5, 156 at 0.1
        or 0.9, 715 at 0.02), else ``InvalidParameterError``: with fewer masks the
        rarely kept (or dropped) units may not be drawn at all, and no interval is honest.
    rng : int, numpy.random.Generator or None
        Source of the masks (``method="mc"``); the same int gives the same estimate.
    rtol : float, optional
        ``method="mc"``: stop once the relative standard error is at most ``rtol``
        (not before 1000 masks, nor before the minimum above).
    batch_size : int, optional
        ``method="mc"``: masks per vectorised batch (default 4096).

    Returns
    -------
    Penalty
        A float. Exact: ``method="exact"``, standard error 0. Monte Carlo: its
        :meth:`~regtheory.Penalty.ci` is corrected for the skewed draws and covers
        92-98 % at every accepted ``n_masks``.

    Raises
    ------
    InvalidParameterError
        If an argument is refused: shapes that do not match, ``keep`` outside (0, 1],
        both ``X`` and ``cov``, an unknown ``method``, too few ``n_masks``.

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> dropout_penalty(np.eye(2), np.eye(2), keep=0.5)
    Penalty(2.0, method='exact')
    >>> est = dropout_penalty(np.eye(2), np.eye(2), keep=0.5, method="mc", n_masks=4000)
    >>> lo, hi = est.interval
    >>> bool(lo < 2.0 < hi), est.n_masks
    (True, 4000)
    """
    U, V = check_factors(U, V)
    lam = dropout_lambda(keep)
    X, cov = _input(X, cov, V.shape[0])
    if _resolve(method) == "mc":
        return _sampled(
            U, V, keep, 1, (X, cov), n_masks=n_masks, rng=rng, rtol=rtol, batch_size=batch_size
        )
    if X is not None:
        energy = np.einsum("ki,ki->i", X @ V, X @ V) / X.shape[0]
    else:
        energy = input_energy(V, cov)
    return Penalty.exact(lam * np.dot(np.einsum("ji,ji->i", U, U), energy))


@cites("mianjy2018implicit", "pal2020regularization")
@finite_result("the structured dropout penalty of the layer")
def structured_penalty(
    U: ArrayLike,
    V: ArrayLike,
    mask_cov: ArrayLike,
    *,
    cov: ArrayLike | None = None,
    method: str = "auto",
) -> Penalty:
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
    method : {"auto", "exact"}
        Only the exact value: a covariance does not say how to sample the masks, so
        there is no Monte Carlo estimate (``"mc"`` is refused).

    Returns
    -------
    Penalty
        The penalty R ≥ 0, exact.

    Raises
    ------
    InvalidParameterError
        If an argument is refused (shapes, a mask covariance that is not symmetric
        PSD, ``method="mc"``).

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
    Penalty(2.0, method='exact')
    """
    check_method(method, choices=("exact", "auto"))
    U, V = check_factors(U, V)
    Sigma = check_cov(mask_cov, U.shape[1], name="mask_cov")
    C = check_cov(cov, V.shape[0])
    VCV = V.T @ V if C is None else V.T @ C @ V
    return Penalty.exact(np.sum(Sigma * (U.T @ U) * VCV))


@cites("pal2020regularization", "mianjy2018implicit")
@finite_result("the block dropout penalty of the layer")
@transition_to_rng
def block_dropout_penalty(
    U: ArrayLike,
    V: ArrayLike,
    keep: float,
    block_size: int,
    *,
    cov: ArrayLike | None = None,
    X: ArrayLike | None = None,
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
) -> Penalty:
    r"""Dropout penalty of an FC layer whose hidden units are dropped in blocks of ``block_size``.

    DropBlock on an FC layer (Pal, Lane, Vidal & Haeffele [1]): the w hidden units
    form G = w/k groups of k consecutive units (group g = units gk, …, gk + k − 1),
    and one Bernoulli(θ) draw, scaled by 1/θ, keeps or drops each whole group.
    The mask covariance is :math:`\lambda\, I_G \otimes \mathbf 1_k\mathbf 1_k^\top`,
    so formula (4) (:func:`structured_penalty`) becomes

    .. math:: R = \lambda \sum_{g=1}^{G} \|U_g V_g^\top C^{1/2}\|_F^2 ,
              \qquad \lambda = \frac{1-\theta}{\theta},

    with :math:`U_g, V_g` the k columns of U and V that belong to group g.
    ``block_size=1`` is :func:`dropout_penalty`. With ``method="mc"`` it is
    estimated over real block masks (:class:`regtheory.masks.Channel` on the units
    viewed as (w/k, k)), as :func:`dropout_penalty` estimates (1).

    Parameters
    ----------
    U : array (d_out, width)
        Output weights; column ``u_i`` belongs to hidden unit i.
    V : array (d_in, width)
        Input weights; column ``v_i`` belongs to hidden unit i.
    keep : float
        Retain probability θ in (0, 1] of each group.
    block_size : int
        Units per group k; must divide the width (else ``InvalidParameterError``).
    cov : array (d_in, d_in), optional
        Uncentred second moment C = E[x xᵀ] of the input, symmetric PSD.
        ``None`` (and no ``X``) means C = I (white input).
    X : array (n, d_in), optional
        Input samples instead of ``cov``: C = XᵀX/n. Not both.
    method : {"auto", "exact", "mc"}
        ``"exact"`` (and ``"auto"``) evaluates the closed form; ``"mc"`` estimates it.
    n_masks : int, optional
        Masks drawn by ``method="mc"``, as in :func:`dropout_penalty` (the rare events
        are the groups kept, of probability ``keep``).
    rng : int, numpy.random.Generator or None
        Source of the masks (``method="mc"``).
    rtol : float, optional
        ``method="mc"``: stop once the relative standard error is at most ``rtol``.
    batch_size : int, optional
        ``method="mc"``: masks per vectorised batch.

    Returns
    -------
    Penalty
        The penalty R ≥ 0, exact or estimated.

    Raises
    ------
    InvalidParameterError
        If an argument is refused (shapes, ``keep``, a ``block_size`` that does not
        divide the width, both ``X`` and ``cov``, too few ``n_masks``).

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
    >>> float(block_dropout_penalty(U, V, 0.5, 2)), float(dropout_penalty(U, V, 0.5))
    (4.0, 2.0)
    """
    U, V = check_factors(U, V)
    lam = dropout_lambda(keep)
    k = check_block_size(block_size, U.shape[1])
    X, cov = _input(X, cov, V.shape[0])
    if _resolve(method) == "mc":
        return _sampled(
            U, V, keep, k, (X, cov), n_masks=n_masks, rng=rng, rtol=rtol, batch_size=batch_size
        )
    C = cov if X is None else X.T @ X / X.shape[0]
    G = U.shape[1] // k
    Ug = U.T.reshape(G, k, -1)  # (G, k, d_out)
    Vg = (V if C is None else sqrtm_psd(C) @ V).T.reshape(G, k, -1)
    blocks = np.einsum("gio,gij->goj", Ug, Vg)  # U_g V_gᵀ C^{1/2}
    return Penalty.exact(lam * np.sum(blocks**2))


def _sampled_penalty(
    U: ArrayLike,
    V: ArrayLike,
    keep: float,
    X: ArrayLike,
    *,
    block_size: int | None = None,
    **options: Any,
) -> Penalty:
    """The former ``dropout_penalty_mc(U, V, keep, X)``: a Monte Carlo penalty on samples."""
    if block_size is None or block_size == 1:
        return dropout_penalty(U, V, keep, X=X, **options)
    return block_dropout_penalty(U, V, keep, block_size, X=X, **options)


# the message names the function to call instead
_sampled_penalty.__name__ = "dropout_penalty"
dropout_penalty_mc = deprecated_alias(_sampled_penalty, "dropout_penalty_mc", method="mc")
dropout_penalty_mc.__doc__ = """Deprecated: Monte Carlo estimate of the dropout penalty on samples.

Call ``dropout_penalty(U, V, keep, X=X, method="mc", ...)`` instead (with
``block_size`` > 1, ``block_dropout_penalty(U, V, keep, block_size, X=X,
method="mc", ...)``); this name will be removed in a future minor release. The
number of masks now defaults to :func:`regtheory.montecarlo.default_n_masks`.

Parameters
----------
U, V : arrays (d_out, width), (d_in, width)
    The factors, as in :func:`dropout_penalty`.
keep : float
    Retain probability in (0, 1].
X : array (n, d_in)
    Input samples.
block_size : int, optional
    Units dropped together; ``None`` or 1 is ordinary dropout.
**options
    ``n_masks``, ``rng`` (or the former ``seed``), ``rtol``, ``batch_size``, as in
    :func:`dropout_penalty`.

Returns
-------
Penalty
    The Monte Carlo estimate (``method="mc"``).
"""
