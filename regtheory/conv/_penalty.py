"""The one penalty function of the two-layer conv net.

Exact where the closed form exists, by Monte Carlo over real masks otherwise or on
request (``method=``).
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from .._convops import (
    ACTIVATIONS,
    Activation,
    ImageShape,
    Mode,
    Normalize,
    Padding,
    mask_distribution,
)
from .._grammar import RngLike, check_method, deprecated_alias, transition_to_rng
from .._overflow import finite_result
from .._references import cites
from .._results import Penalty
from .._validation import check_choice, check_padding
from ._closed_forms import exact_penalty, has_closed_form
from ._montecarlo import sampled_penalty
from ._twolayer import check_net, check_target

__all__ = ["dropout_penalty", "dropout_penalty_mc"]


@cites("mianjy2018implicit", "arora2021dropout", "tompson2015efficient", "ghiasi2018dropblock")
@finite_result("the dropout penalty of the conv layer")
@transition_to_rng
def dropout_penalty(
    u: ArrayLike,
    v: ArrayLike,
    keep: float,
    image_shape: ImageShape,
    *,
    padding: Padding = "zeros",
    mode: Mode = "element",
    x: ArrayLike | None = None,
    activation: Activation = None,
    block_size: int | None = None,
    y: ArrayLike | None = None,
    normalize: Normalize = "ideal",
    method: str = "auto",
    n_masks: int | None = None,
    rng: RngLike = 0,
    rtol: float | None = None,
    batch_size: int | None = None,
    dtype: str = "float64",
) -> Penalty:
    r"""Dropout loss gap of a two-layer conv net: formulas (5), (6) and DropBlock.

    The net :math:`f_m(x) = u \ast (m \circ a(v \ast x))` (``a`` the identity or a ReLU,
    ``m`` a dropout mask on the hidden map h, :math:`f = f_1`) has the expected loss gap

    .. math:: \Delta = \mathbb{E}_m \frac1N\sum_n \|y_n - f_m(x_n)\|^2 - \|y_n - f(x_n)\|^2 ,

    in closed form: (5) and (6) of the module docstring for inverted Bernoulli and channel
    masks, DropBlock's exact mask moments for blocks. ``method="mc"`` estimates it over
    real masks: a draw is :math:`\frac1N\sum_n \|d_n\|^2 - 2\langle y_n - f(x_n), d_n\rangle`,
    :math:`d_n = u \ast ((m - 1)\circ h_n)`, for one mask (and, with ``x=None``, one fresh
    standard normal input). ``method="auto"`` is exact where the closed form exists, else the
    estimate (``normalize="torchvision"``; a ReLU before channel or block masks on white input).

    Parameters
    ----------
    u, v : arrays (C_out, C_hid, k', k'), (C_hid, C_in, k, k), or 1-D kernels (·, ·, k)
        Kernels of the layers after and before the mask.
    keep : float
        Retain probability θ in (0, 1] (for DropBlock the expected kept fraction).
    image_shape : (H, W), or (L,) / L for 1-D kernels
        Spatial size of the input image (or signal); the hidden map has the same size.
    padding, mode : {"zeros", "circular"}, {"element", "channel", "block"}
        Padding of both layers; ``nn.Dropout``, ``nn.Dropout2d`` or DropBlock.
    x : array (N, C_in, H, W), optional
        Inputs (``None``: white input, :math:`\mathbb{E}[xx^\top] = I`, zero mean).
    activation, block_size : {None, "relu"}, int, optional
        Before the mask (exact on white input for ``mode="element"`` only); DropBlock's
        block side (``mode="block"`` only), at most the map's size.
    y : array (N, C_out, H, W), optional
        Targets of ``x`` (``None``: f(x), where Δ is the perturbation energy).
    normalize, method : {"ideal", "torchvision"}, {"auto", "exact", "mc"}
        DropBlock's normaliser: 1/θ, or torchvision's numel/sum(kept) (no closed form); the
        closed form (refused where there is none), the estimate, or either (above).
    n_masks : int, optional
        Masks of the estimate (the maximum with ``rtol``), at least ``min_draws`` of the
        masks; default ``default_n_masks`` (both in :mod:`regtheory.montecarlo`).
    rng, rtol, batch_size : int, numpy.random.Generator or None; float, int, optional
        Source of the estimate's masks and white inputs; stop at this relative standard
        error; masks per batch (about 64 MB of maps).
    dtype : {"float64", "float32"}
        The estimate's arithmetic (same masks and inputs; they differ by rounding).

    Returns
    -------
    Penalty
        A float; exact, or an estimate whose :meth:`~regtheory.Penalty.ci` is honest.

    Raises
    ------
    InvalidParameterError
        If an argument is refused (shapes, ``keep``, an option, too few ``n_masks``) or
        ``method="exact"`` has no closed form.
    NumericalOverflowError
        If finite inputs give a penalty beyond float64 (rescale a layer's weights).

    See Also
    --------
    position_penalty : where on the hidden map the elementwise penalty sits.

    References
    ----------
    [1] Mianjy et al., ICML 2018; [2] Arora et al., ICML 2021; [4] Ghiasi et al., NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> u, v = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3))
    >>> dropout_penalty(u, v, 0.5, (4, 4), padding="circular")
    Penalty(1296.0, method='exact')
    >>> dropout_penalty(u, v, 0.5, (4, 4), padding="circular", method="mc").n_masks
    2000
    """
    method = check_method(method)
    net = _checked(u, v, keep, image_shape, padding, mode, x, y, activation, block_size, normalize)
    masks, xc = net[0], net[6]
    if method == "mc" or (method == "auto" and not has_closed_form(masks, xc, activation, mode)):
        options = {"n_masks": n_masks, "rng": rng, "rtol": rtol, "batch_size": batch_size}
        return sampled_penalty(mode, *net, dtype=dtype, **options)
    return Penalty.exact(exact_penalty(mode, *net))


def _checked(
    u, v, keep, image_shape, padding, mode, x, y, activation, block_size, normalize
) -> tuple:
    """The checked net: (masks, u, v, (H, W), map shape, circular, x, y, activation).

    The kernels are 4-D and the data channel first.
    """
    circular = check_padding(padding)
    check_choice(activation, "activation", ACTIVATIONS)
    masks = mask_distribution(mode, keep, block_size, normalize)
    u4, v4, spatial, xc, map_shape = check_net(u, v, image_shape, x)
    yc = check_target(y, xc, u4, spatial, map_shape)
    return masks, u4, v4, spatial, map_shape, circular, xc, yc, activation


dropout_penalty_mc = deprecated_alias(dropout_penalty, "dropout_penalty_mc", method="mc")
dropout_penalty_mc.__doc__ = """Deprecated: Monte Carlo estimate of the conv net's dropout loss gap.

Call ``dropout_penalty(u, v, keep, image_shape, method="mc", ...)`` instead; this name
will be removed in a future minor release. The number of masks now defaults to
:func:`regtheory.montecarlo.default_n_masks` (it was 20,000).

Parameters
----------
u, v : arrays (C_out, C_hid, k', k'), (C_hid, C_in, k, k), or 1-D kernels (·, ·, k)
    Kernels of the layers after and before the mask.
keep : float
    Retain probability θ in (0, 1].
image_shape : (H, W), or (L,) / L for 1-D kernels
    Spatial size of the input image (or signal).
padding, mode : {"zeros", "circular"}, {"element", "channel", "block"}
    As in :func:`dropout_penalty`.
x : array (N, C_in, H, W), optional
    Inputs (``None``: white input).
activation : {None, "relu"}
    Before the mask.
block_size : int, optional
    DropBlock's block side (``mode="block"`` only).
y : array (N, C_out, H, W), optional
    Targets of ``x`` (``None``: f(x)).
normalize : {"ideal", "torchvision"}
    DropBlock's normaliser.
method : {"mc"}
    Only ``"mc"``; another value is refused.
n_masks : int, optional
    Masks of the estimate; default :func:`regtheory.montecarlo.default_n_masks`.
rng : int, numpy.random.Generator or None
    Source of the masks and white inputs (the former ``seed`` is still accepted).
rtol, batch_size : float, int, optional
    Stop at this relative standard error; masks per batch.
dtype : {"float64", "float32"}
    The estimate's arithmetic.

Returns
-------
Penalty
    The Monte Carlo estimate (``method="mc"``).

Raises
------
InvalidParameterError
    If an argument is refused, as in :func:`dropout_penalty`, or ``method`` is not
    ``"mc"``.
NumericalOverflowError
    If finite inputs give a penalty beyond the range of float64.
"""
