"""The convolution as an operator.

Same-size cross-correlation, its dense matrix, the columns each kernel tap appears in
and the probability that a tap gets no gradient (THEORY §2), and the squared column
norms of the matrix (formula (5)'s weights).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._convops import (
    ImageShape,
    KernelSize,
    Padding,
    same_conv,
)
from .._references import cites
from .._validation import (
    InvalidParameterError,
    check_array,
    check_conv_weight,
    check_image_shape,
    check_keep,
    check_kernel_fits,
    check_kernel_size,
    check_padding,
    check_spatial_shape,
)

__all__ = [
    "column_sq_norms",
    "conv2d",
    "conv_matrix",
    "diag_gram",
    "fc_no_gradient_probability",
    "no_gradient_probability",
    "tap_column_counts",
    "tap_indicator",
]


# ----------------------------------------------------------------------------- convolution


def conv2d(x: ArrayLike, weight: ArrayLike, *, padding: Padding = "zeros") -> np.ndarray:
    r"""Same-size 2-D (or 1-D) cross-correlation, identical to ``torch.nn.functional.conv2d``.

    .. math:: y[n, o, i, j] = \sum_{c}\sum_{a,b} w[o, c, a, b]\;
              \tilde x[n, c, i + a - \lfloor k_h/2\rfloor, j + b - \lfloor k_w/2\rfloor]

    where :math:`\tilde x` is ``x`` extended by zeros (``padding="zeros"``, torch's
    ``padding=k//2``) or periodically (``"circular"``, torch's
    ``F.pad(x, mode="circular")`` followed by an unpadded ``conv2d``). Stride 1,
    no bias.

    Vectorised as one matrix product per chunk of samples (im2col on the side with
    fewer channels); no loop over pixels or samples.

    Parameters
    ----------
    x : array (N, C_in, H, W), or (N, C_in, L) with a 1-D kernel
        Input images (or signals).
    weight : array (C_out, C_in, kh, kw), or (C_out, C_in, k)
        Kernel in PyTorch layout; odd kernel sizes, at most the image size.
    padding : {"zeros", "circular"}
        Zero padding (torch's ``padding=k//2``) or periodic images.

    Returns
    -------
    array (N, C_out, H, W), or (N, C_out, L)
        The same-size output, channel by channel.

    Raises
    ------
    InvalidParameterError
        If ``x`` or ``weight`` is not a finite real array of the right number of axes,
        the channels of ``x`` do not match ``weight``, a kernel size is even or larger
        than the image, or ``padding`` is unknown.

    References
    ----------
    PyTorch documentation of ``torch.nn.functional.conv2d`` (cross-correlation, not
    flipped convolution).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv2d(x, np.ones((1, 1, 3, 3)))[0, 0]
    array([[ 8., 15., 12.],
           [21., 36., 27.],
           [20., 33., 24.]])
    """
    circular = check_padding(padding)
    w, n_spatial = check_conv_weight(weight, "weight")
    x = check_array(x, "x", ndim=n_spatial + 2)
    if x.shape[1] != w.shape[1]:
        raise InvalidParameterError(
            f"`x` has {x.shape[1]} channels (axis 1) but `weight` expects in_ch = {w.shape[1]}"
        )
    spatial = x.shape[2:] if n_spatial == 2 else (1, x.shape[2])
    check_kernel_fits(w.shape[2:], spatial, "weight")
    return same_conv(x, w, circular)


# ----------------------------------------------------------------------------- the matrix (§2)


@cites("tds2019dropout")
def conv_matrix(
    weight: ArrayLike, image_shape: ImageShape, *, padding: Padding = "zeros"
) -> np.ndarray:
    r"""Dense matrix of the convolution ``x ↦ weight ∗ x`` on flattened images (THEORY §2).

    .. math:: \operatorname{vec}(w \ast x) = U \operatorname{vec}(x),\qquad
              U[(o,i,j),\,(c,i',j')] = \sum_{a,b:\ (i',j') \equiv (i+a-p_h,\ j+b-p_w)} w[o,c,a,b]

    with rows and columns flattened channel first, row-major (``c*H*W + i*W + j``),
    :math:`p = \lfloor k/2 \rfloor`, and the equivalence an equality inside the image
    for zero padding, modulo (H, W) for circular padding. For a 3×3 image and a
    3×3 kernel :math:`u_1 \dots u_9` (row-major) it is the 9×9 matrix of THEORY §2,
    whose top-left block is ``[[u5, u6, 0], [u4, u5, u6], [0, u4, u5]]``.

    Parameters
    ----------
    weight : array (C_out, C_in, kh, kw), or (C_out, C_in, k)
        Kernel in PyTorch layout; odd kernel sizes, at most the image size.
    image_shape : (H, W), or (L,) / L for a 1-D kernel
        Spatial size of the input image (or signal).
    padding : {"zeros", "circular"}
        Zero padding (torch's ``padding=k//2``) or periodic images.

    Returns
    -------
    array (C_out·H·W, C_in·H·W)
        The matrix U with ``U @ x.ravel() == conv2d(x, weight).ravel()`` for one image.

    Raises
    ------
    InvalidParameterError
        If ``weight`` is not a finite real array of 3 or 4 axes, ``image_shape`` does
        not match it, a kernel size is even or larger than the image, or ``padding``
        is unknown.

    References
    ----------
    [5] The seed, "Dropout on convolutional layers is weird" (2019).

    Examples
    --------
    >>> conv_matrix(np.arange(1.0, 4.0).reshape(1, 1, 3), 4)
    array([[2., 3., 0., 0.],
           [1., 2., 3., 0.],
           [0., 1., 2., 3.],
           [0., 0., 1., 2.]])
    """
    circular = check_padding(padding)
    w, n_spatial = check_conv_weight(weight, "weight")
    H, W = check_image_shape(image_shape, n_spatial, "weight")
    check_kernel_fits(w.shape[2:], (H, W), "weight")
    Co, Ci, kh, kw = w.shape
    M = np.zeros((Co, H, W, Ci, H, W))
    rows_i, rows_j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for a in range(kh):
        for b in range(kw):
            cols_i, cols_j = rows_i + a - kh // 2, rows_j + b - kw // 2
            if circular:
                cols_i, cols_j = cols_i % H, cols_j % W
            inside = (cols_i >= 0) & (cols_i < H) & (cols_j >= 0) & (cols_j < W)
            # advanced indices split by a slice: the indexed axis comes first, (P, Co, Ci)
            M[:, rows_i[inside], rows_j[inside], :, cols_i[inside], cols_j[inside]] += w[
                None, :, :, a, b
            ]
    return M.reshape(Co * H * W, Ci * H * W)


def _axis_counts(k: int, n: int, circular: bool) -> np.ndarray:
    """Per tap offset d = a - k//2: positions i with i + d inside an axis of length n."""
    if circular:
        return np.full(k, n)
    return n - np.abs(np.arange(k) - k // 2)


@cites("tds2019dropout")
def tap_column_counts(
    kernel_size: KernelSize, image_shape: ImageShape, *, padding: Padding = "zeros"
) -> np.ndarray:
    r"""For each kernel tap, the number of columns of the layer matrix in which it appears.

    A tap with offset :math:`d = (a - p_h, b - p_w)` multiplies hidden unit
    (column) :math:`q` for the output positions :math:`q - d`, so it appears in the
    columns :math:`q` with :math:`q - d` inside the image:

    .. math:: n_{ab} = (H - |a - p_h|)\,(W - |b - p_w|)\ \text{(zeros)},\qquad
              n_{ab} = HW\ \text{(circular)}.

    For a 3×3 kernel on a 3×3 image with zero padding: corners 4, edges 6, centre 9
    (THEORY §2). The count is the same for every (out, in) channel pair.

    Parameters
    ----------
    kernel_size : int or (kh, kw) or (k,)
        Odd kernel size; an int means a square kernel (or length k in 1-D).
    image_shape : (H, W), or (L,) / L for 1-D signals
        Spatial size of the image (or signal).
    padding : {"zeros", "circular"}
        Zero padding (torch's ``padding=k//2``) or periodic images.

    Returns
    -------
    int array of the kernel's shape (kh, kw), or (k,)
        :math:`n_{ab}`, the number of columns that tap (a, b) appears in.

    Raises
    ------
    InvalidParameterError
        If ``image_shape`` or ``kernel_size`` is not a positive int or tuple of 1 or 2
        of them, a kernel size is even or larger than the image, or ``padding`` is
        unknown.

    References
    ----------
    [5] The seed, "Dropout on convolutional layers is weird" (2019).

    Examples
    --------
    >>> tap_column_counts(3, (3, 3))
    array([[4, 6, 4],
           [6, 9, 6],
           [4, 6, 4]])
    """
    circular = check_padding(padding)
    spatial = check_spatial_shape(image_shape, "image_shape")
    n_spatial = len(spatial)
    H, W = spatial if n_spatial == 2 else (1, spatial[0])
    kernel = check_kernel_size(kernel_size, n_spatial)
    kh, kw = kernel if n_spatial == 2 else (1, kernel[0])
    check_kernel_fits((kh, kw), (H, W), "kernel_size")
    counts = np.multiply.outer(_axis_counts(kh, H, circular), _axis_counts(kw, W, circular))
    return counts if n_spatial == 2 else counts[0]


_NO_GRADIENT_MODES = ("element", "channel")


@cites("tds2019dropout")
def no_gradient_probability(
    kernel_size: KernelSize,
    image_shape: ImageShape,
    keep: float,
    *,
    padding: Padding = "zeros",
    mode: Literal["element", "channel"] = "element",
) -> np.ndarray:
    r"""Probability that a kernel tap of the layer after the mask gets no gradient.

    The gradient of tap :math:`w_{ab}` sums over the :math:`n_{ab}` columns
    (hidden units) it appears in (:func:`tap_column_counts`); for generic data it is
    zero exactly when all of them are dropped. Elementwise dropout drops hidden
    units independently, channel dropout drops all units of a channel together:

    .. math:: P_\text{element}(ab) = (1-\theta)^{n_{ab}},\qquad
              P_\text{channel}(ab) = 1-\theta ,

    against :math:`1-\theta` for a weight of a fully connected layer
    (:func:`fc_no_gradient_probability`). This is the quantitative form of
    "elementwise dropout on conv layers does not drop weights" (THEORY §2).

    Parameters
    ----------
    kernel_size : int or (kh, kw) or (k,)
        Odd kernel size; an int means a square kernel (or length k in 1-D).
    image_shape : (H, W), or (L,) / L
        Spatial size of the hidden feature map.
    keep : float
        Retain probability θ in (0, 1].
    padding : {"zeros", "circular"}
        Zero padding (torch's ``padding=k//2``) or periodic images.
    mode : {"element", "channel"}
        Elementwise dropout or channel dropout on the hidden map.

    Returns
    -------
    float array of the kernel's shape
        The probability for each tap (a, b).

    Raises
    ------
    InvalidParameterError
        If ``kernel_size`` or ``image_shape`` is refused (as in
        :func:`tap_column_counts`), ``keep`` is not in (0, 1], or ``mode`` is unknown.

    References
    ----------
    [5] The seed, "Dropout on convolutional layers is weird" (2019).

    Examples
    --------
    >>> no_gradient_probability(3, (3, 3), keep=0.5)[1]
    array([0.015625  , 0.00195312, 0.015625  ])
    """
    counts = tap_column_counts(kernel_size, image_shape, padding=padding)
    keep = check_keep(keep)
    if mode not in _NO_GRADIENT_MODES:
        raise InvalidParameterError(f"`mode` must be one of {_NO_GRADIENT_MODES}, got {mode!r}")
    if mode == "channel":
        return np.full(counts.shape, 1.0 - keep)
    return (1.0 - keep) ** counts


@cites("mianjy2018implicit", "srivastava2014dropout")
def fc_no_gradient_probability(keep: float) -> float:
    r"""Probability that a weight of a fully connected layer after the mask gets no gradient.

    Column :math:`u_i` of U multiplies hidden unit i only, so it gets no gradient
    exactly when that unit is dropped (THEORY §1, the seed's "r = e₁ keeps only
    column u₁"):

    .. math:: P_\text{FC} = \Pr[r_i = 0] = 1 - \theta ,

    the same for every weight, against :math:`(1-\theta)^{n_{ab}}` for a kernel
    tap under elementwise dropout (:func:`no_gradient_probability`).

    Parameters
    ----------
    keep : float
        Retain probability θ in (0, 1].

    Returns
    -------
    float
        1 − θ.

    Raises
    ------
    InvalidParameterError
        If ``keep`` is not a real number in (0, 1].

    References
    ----------
    [1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
    [2] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
        Dropout: A Simple Way to Prevent Neural Networks from Overfitting,
        JMLR 15, 2014.

    Examples
    --------
    >>> fc_no_gradient_probability(0.75)
    0.25
    """
    return 1.0 - check_keep(keep)


def tap_indicator(n: int, k: int, circular: bool) -> np.ndarray:
    """R[i, a] = 1 if position i - (a - k//2) lies inside an axis of length n."""
    if circular:
        return np.ones((n, k))
    i = np.arange(n)[:, None] - (np.arange(k) - k // 2)[None, :]
    return ((i >= 0) & (i < n)).astype(float)


def diag_gram(w: np.ndarray, spatial: tuple[int, int], circular: bool) -> np.ndarray:
    """diag(U_cᵀU_c) for every input channel c of ``w`` (A, C, kh, kw): shape (C, H, W).

    ‖U[:, (c, q)]‖² = Σ_d s_c[d] 1[q − d inside], s_c = Σ_o w[o, c]²: the squared
    kernel correlated with the valid-position mask, separable in the two axes.
    """
    kh, kw = w.shape[2:]
    s = np.einsum("ocab,ocab->cab", w, w)
    Ri = tap_indicator(spatial[0], kh, circular)
    Rj = tap_indicator(spatial[1], kw, circular)
    return np.einsum("ia,cab,jb->cij", Ri, s, Rj)


@cites("mianjy2018implicit")
def column_sq_norms(
    weight: ArrayLike, image_shape: ImageShape, *, padding: Padding = "zeros"
) -> np.ndarray:
    r"""Squared column norms :math:`\|U[:, (c, q)]\|^2` of the layer matrix, without building it.

    .. math:: \|U[:, (c,q)]\|^2 = \sum_{a,b} \Big(\sum_o w[o,c,a,b]^2\Big)\,
              \mathbb 1[q - (a - p_h, b - p_w) \in \text{image}]

    (the squared kernel correlated with the valid-position mask; constant
    :math:`\|w_{:,c}\|^2` for circular padding). The per-position weight of
    formula (5).

    Parameters
    ----------
    weight : array (C_out, C_in, kh, kw), or (C_out, C_in, k)
        Kernel in PyTorch layout; odd kernel sizes, at most the image size.
    image_shape : (H, W), or (L,) / L
        Spatial size of the input image (or signal).
    padding : {"zeros", "circular"}
        Zero padding (torch's ``padding=k//2``) or periodic images.

    Returns
    -------
    array (C_in, H, W), or (C_in, L)
        :math:`\|U[:, (c, q)]\|^2` for every input channel c and position q.

    Raises
    ------
    InvalidParameterError
        If ``weight`` is not a finite real array of 3 or 4 axes, ``image_shape`` does
        not match it, a kernel size is even or larger than the image, or ``padding``
        is unknown.

    Examples
    --------
    >>> column_sq_norms(np.ones((1, 1, 3)), 4)
    array([[2., 3., 3., 2.]])
    """
    circular = check_padding(padding)
    w, n_spatial = check_conv_weight(weight, "weight")
    spatial = check_image_shape(image_shape, n_spatial, "weight")
    check_kernel_fits(w.shape[2:], spatial, "weight")
    out = diag_gram(w, spatial, circular)
    return out if n_spatial == 2 else out[:, 0]
