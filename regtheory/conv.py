r"""Convolutional layers as matrices, and dropout on a conv feature map (THEORY.md §2–§3).

Conventions (exactly those of ``torch.nn.functional.conv2d``): weights in PyTorch
layout ``(out_ch, in_ch, kh, kw)``, cross-correlation, stride 1, odd kernels,
"same" output size, padding ``"zeros"`` (``padding=k//2``) or ``"circular"``
(periodic image). Images ``(N, C, H, W)`` are flattened channel first, row-major:
index ``c*H*W + i*W + j``. 1-D kernels ``(out_ch, in_ch, k)`` on 1-D signals
``(N, C, L)`` are accepted everywhere and treated as images of height 1.

The model of §3 is the two-layer linear conv net with dropout on the hidden map,

.. math::

    g(x) = u \ast \big(m \circ (v \ast x)\big)
         = \sum_c U_c \operatorname{diag}(m_c)\, V_c\, x ,

``v`` of shape ``(C_hid, C_in, k, k)``, ``u`` of shape ``(C_out, C_hid, k', k')``,
:math:`U_c, V_c` the blocks of the expanded matrices (:func:`conv_matrix`) that
belong to hidden channel c, and ``m`` an inverted dropout mask (E m = 1). Its
expected squared deviation from the mask-free net is formula (1) applied column
by column of U (h = V x the hidden map, λ = (1 − θ)/θ):

.. math::

    \text{elementwise:}\quad \lambda \sum_j \|U[:, j]\|^2\, \mathbb{E}[h_j^2]      \quad (5)

    \text{channel:}\quad \lambda \sum_c \mathbb{E}\|U_c h_c\|^2                     \quad (6)

Neither needs a dense matrix: :func:`column_sq_norms` is a correlation of the
squared kernel with the image's valid-position mask.

DropBlock [4] with the ideal 1/θ normaliser (THEORY §3.2) drops square blocks whose
starts fire independently at rate γ, independently per channel. Its masks are neither
independent nor of mean one. Position p is kept iff none of the :math:`c(p)` block
starts covering it fires, p and q iff none of the :math:`c(p) + c(q) - o(p,q)` starts
covering either does (:math:`o` = starts covering both; β = 1 − γ):

.. math::

    \mathbb{E}[m_p] = \frac{\beta^{c(p)}}{\theta},\qquad
    \operatorname{Cov}(m_p, m_q) = \frac{\beta^{c(p)+c(q)-o(p,q)}\,(1-\beta^{o(p,q)})}
                                        {\theta^2},

so with :math:`e = m - 1`, :math:`\mathbb{E}[ee^\top] = \bar e\bar e^\top +
\operatorname{blockdiag}_c \operatorname{Cov}(m)`, :math:`\bar e = \mathbb{E}m - 1`, and
the loss gap Δ of :func:`dropout_penalty` is

.. math::

    \Delta = \frac1N\sum_n \Big(\|U(\bar e\circ h_n) - r_n\|^2 - \|r_n\|^2
             + \sum_c \sum_{p,q} \operatorname{Cov}(m_p, m_q)\,
               (U_c^\top U_c)_{pq}\, h_{c,p} h_{c,q}\Big),
    \quad r_n = y_n - f(x_n):

the loss change of the mean mask plus the mask's variance. :math:`\bar e \ne 0` at the
border (:math:`c(p)` is smaller there), so the cross term is real: with a target, Δ is
not the perturbation energy, and without one (the target f(x)) it is Δ only at f(x).
Cost: :math:`o(p,q) = o_H o_W` factorises per axis and vanishes unless p and q are closer
than b along both axes, and the Gram matrices are banded, so only pairs (p, p + δ) with
a few offsets δ enter: :math:`n_\delta \le (2\min(b, k') - 1)^2` with data,
:math:`(2\min(k, k') - 1)^2` with white input (k', k the kernel sides of u and v;
circular padding adds the wrapped copies of these offsets). With data the cost is three
convolutions plus O(N·C_hid·HW·n_δ); with white input
O(n_δ·C_hid²·(C_out k'² + C_in k² + k'²k²) + n_δ·k'²k²·HW), independent of N. Both are
linear in the number of pixels; no (C·H·W)² matrix is formed. The torchvision normaliser
(the random numel/sum(kept)) has no closed form here: its moments need the distribution
of the kept count, a sum over all :math:`2^{\#\text{starts}}` start patterns; only
:func:`dropout_penalty_mc` estimates it.

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and
    Capacity Control, ICML 2021.
[3] J. Tompson et al., Efficient Object Localization Using Convolutional
    Networks, CVPR 2015 (SpatialDropout).
[4] G. Ghiasi, T.-Y. Lin, Q. V. Le, DropBlock: A regularization method for
    convolutional networks, NeurIPS 2018.
[5] "Dropout on convolutional layers is weird", Towards Data Science, 2019
    (the seed of THEORY §2).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ._bits import kept_bits
from ._convops import (
    ACTIVATIONS,
    Activation,
    Grid,
    ImageShape,
    KernelSize,
    Mode,
    Normalize,
    Padding,
    conv_cn,
    fill_border,
    flipped_transpose,
    grid_conv,
    mask_distribution,
    pad_kernel,
)
from ._dropblock import dropblock_moments, shift_inside, shifted_map
from ._overflow import finite_result
from ._parallel import BATCH_ENTRIES, CHUNK_ENTRIES, Chunks
from ._validation import (
    InvalidParameterError,
    check_array,
    check_choice,
    check_conv_weight,
    check_dtype,
    check_image_shape,
    check_keep,
    check_kernel_fits,
    check_kernel_size,
    check_n_masks,
    check_padding,
    check_spatial_shape,
)
from .masks import Bernoulli, DropBlock, dropout_lambda
from .montecarlo import Estimate, estimate, min_draws

__all__ = [
    "column_sq_norms",
    "conv2d",
    "conv_matrix",
    "dropout_penalty",
    "dropout_penalty_mc",
    "fc_no_gradient_probability",
    "no_gradient_probability",
    "position_penalty",
    "tap_column_counts",
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

    Returns
    -------
    array (N, C_out, H, W), or (N, C_out, L)

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
    N, C = x.shape[:2]
    spatial = x.shape[2:] if n_spatial == 2 else (1, x.shape[2])
    check_kernel_fits(w.shape[2:], spatial, "weight")
    y = conv_cn(x.reshape(N, C, *spatial).transpose(1, 0, 2, 3), w, circular)
    return y.transpose(1, 0, 2, 3).reshape(N, w.shape[0], *x.shape[2:])


# ----------------------------------------------------------------------------- the matrix (§2)


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
    image_shape : (H, W), or (L,) / L for a 1-D kernel
    padding : {"zeros", "circular"}

    Returns
    -------
    array (C_out·H·W, C_in·H·W)

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
    padding : {"zeros", "circular"}

    Returns
    -------
    int array of the kernel's shape (kh, kw), or (k,)

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
    image_shape : (H, W), or (L,) / L
    keep : float
        Retain probability θ in (0, 1].
    padding : {"zeros", "circular"}
    mode : {"element", "channel"}

    Returns
    -------
    float array of the kernel's shape

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


# ----------------------------------------------------------------------------- closed forms (§3)


def _tap_indicator(n: int, k: int, circular: bool) -> np.ndarray:
    """R[i, a] = 1 if position i - (a - k//2) lies inside an axis of length n."""
    if circular:
        return np.ones((n, k))
    i = np.arange(n)[:, None] - (np.arange(k) - k // 2)[None, :]
    return ((i >= 0) & (i < n)).astype(float)


def _diag_gram(w: np.ndarray, spatial: tuple[int, int], circular: bool) -> np.ndarray:
    """diag(U_cᵀU_c) for every input channel c of ``w`` (A, C, kh, kw): shape (C, H, W).

    ‖U[:, (c, q)]‖² = Σ_d s_c[d] 1[q − d inside], s_c = Σ_o w[o, c]²: the squared
    kernel correlated with the valid-position mask, separable in the two axes.
    """
    kh, kw = w.shape[2:]
    s = np.einsum("ocab,ocab->cab", w, w)
    Ri = _tap_indicator(spatial[0], kh, circular)
    Rj = _tap_indicator(spatial[1], kw, circular)
    return np.einsum("ia,cab,jb->cij", Ri, s, Rj)


def _tap_pair_lags(w: np.ndarray) -> np.ndarray:
    """L[c, a, b, x, y] = Σ_o w[o, c, a, b] w[o, c, (a, b) + δ], lag δ = (x − kh + 1, y − kw + 1).

    The entries of U_cᵀU_c (``w`` of shape (A, C, kh, kw)) are sums of these products
    over the taps that fit; shape (C, kh, kw, 2kh − 1, 2kw − 1), zero where the
    second tap (a, b) + δ is not a tap.
    """
    C, (kh, kw) = w.shape[1], w.shape[2:]
    pair = np.einsum("ocab,ocxy->cabxy", w, w)
    lag = np.zeros((C, kh, kw, 2 * kh - 1, 2 * kw - 1))
    for a in range(kh):
        for b in range(kw):
            lag[:, a, b, kh - 1 - a : 2 * kh - 1 - a, kw - 1 - b : 2 * kw - 1 - b] = pair[:, a, b]
    return lag


def _fold(n: int, k: int) -> np.ndarray:
    """F[r, s] = 1 if lag s − k + 1 ≡ r (mod n): circular lags that alias are added up."""
    fold = np.zeros((n, 2 * k - 1))
    fold[(np.arange(2 * k - 1) - k + 1) % n, np.arange(2 * k - 1)] = 1.0
    return fold


def _band_overlap(n: int, k: int) -> np.ndarray:
    """T[x, a, a'] = #{i : i − (a − k//2) and i − (a' − k//2) inside, i + δ_x inside}.

    The number of positions (of one axis of length n) at which tap a of the first
    Gram factor and tap a' of the second are both in range and the lag δ_x = x − k + 1
    keeps the second position inside; zero padding only.
    """
    R = _tap_indicator(n, k, False)
    Q = _tap_indicator(n, 2 * k - 1, False)[:, ::-1]  # Q[i, x] = 1[i + δ_x inside]
    return np.einsum("ix,ia,ib->xab", Q, R, R)


def _white_element(u, v, spatial, circular) -> float:
    # Σ_q ‖U[:, q]‖² E[h_q²] with E[h_q²] = ‖V[q, :]‖², the column norms of the adjoint
    # Vᵀ. Both are squared kernels correlated with separable range indicators, so the
    # sum over positions q reduces to tap-by-tap overlap counts P = RᵤᵀR_v per axis.
    vt = flipped_transpose(v)
    su, sv = np.einsum("ocab->cab", u * u), np.einsum("ocab->cab", vt * vt)
    overlap = [
        _tap_indicator(n, ku, circular).T @ _tap_indicator(n, kv, circular)
        for n, ku, kv in zip(spatial, u.shape[2:], v.shape[2:])
    ]
    return float(np.einsum("cab,cde,ad,be->", su, sv, *overlap, optimize=True))


def _white_channel(u, v, spatial, circular) -> float:
    # E‖U_c V_c x‖² = tr(U_cᵀU_c · V_c V_cᵀ) for E xxᵀ = I. Both factors are banded
    # (circulant for circular padding): entry (q, q + δ) is a sum over tap pairs at lag
    # δ of the tap products (_tap_pair_lags) restricted to the taps in range at q. The
    # range indicators are separable, so summing over positions first leaves a
    # contraction over taps and lags only: the cost does not grow with the image.
    kh = max(u.shape[2], v.shape[2])
    kw = max(u.shape[3], v.shape[3])
    lag_u = _tap_pair_lags(pad_kernel(u, kh, kw))
    lag_v = _tap_pair_lags(flipped_transpose(pad_kernel(v, kh, kw)))
    H, W = spatial
    if circular:
        fold_i, fold_j = _fold(H, kh), _fold(W, kw)
        gu = fold_i @ lag_u.sum(axis=(1, 2)) @ fold_j.T
        gv = fold_i @ lag_v.sum(axis=(1, 2)) @ fold_j.T
        return float(H * W * np.sum(gu * gv))
    Ti, Tj = _band_overlap(H, kh), _band_overlap(W, kw)
    return float(np.einsum("cabxy,cdexy,xad,ybe->", lag_u, lag_v, Ti, Tj, optimize=True))


def _data_element(u, h, circular) -> float:
    # h (C_hid, N, H, W): λ Σ_q ‖U[:, q]‖² mean_n h_q²
    return float(np.sum(_diag_gram(u, h.shape[2:], circular) * np.mean(h * h, axis=1)))


def _data_channel(u, h, circular) -> float:
    total = 0.0
    for c in range(h.shape[0]):  # each hidden channel through its own slice u[:, c]
        y = conv_cn(h[c : c + 1], u[:, c : c + 1], circular)
        total += float(np.einsum("onij,onij->", y, y)) / h.shape[1]
    return total


# DropBlock with the ideal 1/keep normaliser (THEORY §3). Its masks are neither independent
# nor of mean one: with e = m − 1, E[e] = ē ≠ 0 at the border, and E[e eᵀ] = ē ēᵀ plus
# Cov(m) within a channel (channels are independent). Cov(m) is local: positions further
# apart than the block along either axis share no block start. Every sum below runs over the
# pairs (p, p + δ) of a few offsets δ per axis, never over a dense (C·H·W)² matrix.


def _gram_axis(n: int, k: int, circular: bool, deltas: np.ndarray):
    """One axis of the column Gram WᵀW of a conv layer whose kernel has length k there.

    Column i holds tap a in output row t = i − a + k//2 (mod n if circular); column i + δ
    holds tap a' ≡ a + δ (mod n) in that row. Returns R[δ, i, a] = 1 when t is inside, a'
    is a tap and i + δ is inside, and a' (clipped to a tap) of shape (len(deltas), k):

        (WᵀW)[(c, p), (c', p + δ)] = Σ_{a, b} Σ_o w[o, c, a, b] w[o, c', a'_H, b'_W]
                                      R_H[δ_H, i, a] R_W[δ_W, j, b].
    """
    taps = np.arange(k)
    row = np.arange(n)[:, None] - taps[None, :] + k // 2
    row_inside = np.full(row.shape, True) if circular else (row >= 0) & (row < n)
    partner = taps[None, :] + deltas[:, None]
    if circular:
        partner = partner % n  # k <= n: at most one tap is congruent to a + δ
    is_tap = (partner >= 0) & (partner < k)
    _, col_inside = shift_inside(n, deltas)
    R = row_inside[None] & is_tap[:, None, :] & col_inside[:, :, None]
    return R.astype(float), np.where(is_tap, partner, 0)


def _gram_axes(spatial, kernels, circular, reaches):
    """Offsets δ per axis (|δ| <= reach) at which every kernel's Gram can be nonzero, and
    for each kernel its (R_H, R_W) and tap partners (a'_H, a'_W) on those offsets."""
    deltas: list[np.ndarray] = []
    per_kernel: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in kernels]
    for axis, (n, reach) in enumerate(zip(spatial, reaches)):
        d = np.arange(-min(n - 1, reach), min(n - 1, reach) + 1)
        found = [_gram_axis(n, w.shape[2 + axis], circular, d) for w in kernels]
        used = np.logical_and.reduce([R.any(axis=(1, 2)) for R, _ in found])
        deltas.append(d[used])
        for (rows, partners), (R, partner) in zip(per_kernel, found):
            rows.append(R[used])
            partners.append(partner[used])
    return deltas, per_kernel


def _lag_products(w: np.ndarray, partners, diagonal: bool) -> np.ndarray:
    """Σ_o w[o, c, a, b] w[o, c', a'_H(δ_H, a), b'_W(δ_W, b)] of shape
    (δ_H, δ_W, kh, kw, C, C), or (C, δ_H, δ_W, kh, kw) for c = c' only (``diagonal``)."""
    if diagonal:
        shifted = w[:, :, partners[0]][..., partners[1]]  # (O, C, δ_H, kh, δ_W, kw)
        return np.einsum("ocab,ocxayb->cxyab", w, shifted)
    O, C, kh, kw = w.shape
    nx, ny = len(partners[0]), len(partners[1])
    out = np.empty((nx, ny, kh, kw, C, C))
    for a in range(kh):  # one (C, O) @ (O, C·δ_H·δ_W) product per tap
        for b in range(kw):
            partner = w[:, :, partners[0][:, a]][:, :, :, partners[1][:, b]]  # (O, C, δ_H, δ_W)
            prod = w[:, :, a, b].T @ partner.reshape(O, -1)
            out[:, :, a, b] = prod.reshape(C, C, nx, ny).transpose(2, 3, 0, 1)
    return out


def _pair_sums(weight: np.ndarray, rows_u, rows_v) -> np.ndarray:
    """Position sums of a weighted product of two separable Grams, one axis at a time:

        Z[x, a, e, y, b, f] = Σ_{i,j} weight[x, y, i, j] R_H[x, i, a] S_H[x, i, e]
                                                          R_W[y, j, b] S_W[y, j, f]

    for ``rows_u`` = (R_H, R_W) and ``rows_v`` = (S_H, S_W).
    """
    nx, ny, H, W = weight.shape
    t_h = rows_u[0][:, :, :, None] * rows_v[0][:, :, None, :]  # (x, i, a, e)
    t_w = rows_u[1][:, :, :, None] * rows_v[1][:, :, None, :]  # (y, j, b, f)
    ka, ke = t_h.shape[2:]
    kb, kf = t_w.shape[2:]
    rows = weight.transpose(1, 0, 2, 3).reshape(ny, nx * H, W)
    over_j = rows @ t_w.reshape(ny, W, kb * kf)  # (y, x·i, b·f)
    over_j = over_j.reshape(ny, nx, H, kb * kf).transpose(1, 2, 0, 3).reshape(nx, H, -1)
    z = t_h.reshape(nx, H, ka * ke).transpose(0, 2, 1) @ over_j
    return z.reshape(nx, ka, ke, ny, kb, kf)


def _block_white(u, v, keep, gamma, spatial, blocks, circular) -> float:
    # E_x‖U diag(e) V x‖² = Σ E[e eᵀ] ∘ UᵀU ∘ VVᵀ for E xxᵀ = I, where VVᵀ is the column
    # Gram of the adjoint kernel. Both Grams are banded (mod n if circular), so only the
    # offsets where both can be nonzero enter; the sums over channels are taken on the
    # lag products, before the sums over positions.
    vt = flipped_transpose(v)
    deltas, ((ru, pu), (rv, pv)) = _gram_axes(spatial, (u, vt), circular, spatial)
    mean_dev, cov = dropblock_moments(keep, gamma, spatial, blocks, deltas)
    # Offsets congruent mod n (circular wrap-around) pair the same taps: their lag
    # products are computed once. The mask moments still see the true offset.
    first, seen = [], []
    for axis in range(2):
        pairs = np.concatenate([pu[axis], pv[axis]], axis=1)
        _, index, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
        first.append(index)
        seen.append(inverse.ravel())
    lu = _lag_products(u, [p[i] for p, i in zip(pu, first)], diagonal=False)  # (x, y, a, b, c, c')
    lv = _lag_products(vt, [p[i] for p, i in zip(pv, first)], diagonal=False)  # (x, y, e, f, c, c')
    nx, ny, ka, kb, C, _ = lu.shape
    ke, kf = lv.shape[2:4]
    flat_u = lu.reshape(nx * ny, ka * kb, C * C)
    flat_v = lv.reshape(nx * ny, ke * kf, C * C)
    across = flat_u @ flat_v.transpose(0, 2, 1)  # Σ over every channel pair
    diag_u = np.diagonal(lu, axis1=-2, axis2=-1).reshape(nx * ny, ka * kb, C)
    diag_v = np.diagonal(lv, axis1=-2, axis2=-1).reshape(nx * ny, ke * kf, C)
    within = diag_u @ diag_v.transpose(0, 2, 1)  # Σ over c = c'
    rank_one = mean_dev * shifted_map(mean_dev, deltas)  # ē_p ē_{p+δ}
    total = 0.0
    for lags, weight in ((across, rank_one), (within, cov)):
        lags = lags.reshape(nx, ny, ka, kb, ke, kf)[seen[0]][:, seen[1]]
        total += np.einsum("xyabef,xaeybf->", lags, _pair_sums(weight, ru, rv))
    return float(total)


def _block_data(u, h, keep, gamma, spatial, blocks, circular, residual) -> float:
    # mean_n [‖U(ē∘h_n)‖² − 2⟨r_n, U(ē∘h_n)⟩] by one convolution (the mean mask's loss change),
    # plus the covariance part Σ_c Σ_{p,δ} Cov(m_p, m_{p+δ}) (U_cᵀU_c)_{p,p+δ} mean_n h_p h_{p+δ}
    # over offsets shorter than the block where U's Gram is nonzero.
    N = h.shape[1]
    reaches = [b - 1 for b in blocks]
    deltas, ((rows, partners),) = _gram_axes(spatial, (u,), circular, reaches)
    mean_dev, cov = dropblock_moments(keep, gamma, spatial, blocks, deltas)
    dev = conv_cn(h * mean_dev, u, circular)
    gap = float(np.einsum("onij,onij->", dev, dev if residual is None else dev - 2 * residual))
    gram = np.einsum(
        "cxyab,xia,yjb->cxyij", _lag_products(u, partners, diagonal=True), *rows, optimize=True
    )
    weight = gram * cov
    H, W = spatial
    for x, d1 in enumerate(deltas[0]):
        p1, q1 = slice(max(0, -d1), min(H, H - d1)), slice(max(0, d1), min(H, H + d1))
        for y, d2 in enumerate(deltas[1]):
            p2, q2 = slice(max(0, -d2), min(W, W - d2)), slice(max(0, d2), min(W, W + d2))
            products = np.einsum("cnij,cnij->cij", h[:, :, p1, p2], h[:, :, q1, q2])
            gap += float(np.sum(products * weight[:, x, y, p1, p2]))
    return gap / N


_WHITE_PENALTIES = {"element": _white_element, "channel": _white_channel}
_DATA_PENALTIES = {"element": _data_element, "channel": _data_channel}


def _check_net(u, v, image_shape, x):
    """Validate the two kernels (and data); return 4-D u, v, (H, W), CN-layout x, spatial shape."""
    v4, nv = check_conv_weight(v, "v")
    u4, nu = check_conv_weight(u, "u")
    if nu != nv:
        raise InvalidParameterError(
            f"`u` and `v` must both be 2-D kernels or both 1-D kernels, got u {np.shape(u)} "
            f"and v {np.shape(v)}"
        )
    if u4.shape[1] != v4.shape[0]:
        raise InvalidParameterError(
            f"`u` has {u4.shape[1]} input channels (axis 1) but `v` has {v4.shape[0]} output "
            f"channels (axis 0); both must equal the number of hidden channels, got u "
            f"{np.shape(u)} and v {np.shape(v)}"
        )
    spatial = check_image_shape(image_shape, nv, "v")
    check_kernel_fits(v4.shape[2:], spatial, "v")
    check_kernel_fits(u4.shape[2:], spatial, "u")
    map_shape = spatial if nv == 2 else spatial[1:]
    xc = None
    if x is not None:
        x = check_array(x, "x", ndim=nv + 2)
        if x.shape[1] != v4.shape[1] or x.shape[2:] != map_shape:
            raise InvalidParameterError(
                f"`x` must have shape (N, {v4.shape[1]}, {', '.join(map(str, map_shape))}) "
                f"(in_ch of `v`, then `image_shape`), got {x.shape}"
            )
        xc = x.reshape(x.shape[0], x.shape[1], *spatial).transpose(1, 0, 2, 3)
    return u4, v4, spatial, xc, map_shape


def _check_target(y, xc, u4, spatial, map_shape):
    """Targets ``y`` (N, C_out, *map) in CN layout (C_out, N, H, W), or None."""
    if y is None:
        return None
    if xc is None:
        raise InvalidParameterError(
            "`y` (targets) needs the inputs `x` they belong to; with white input (x=None) "
            "the target is the clean output f(x)"
        )
    y = check_array(y, "y", ndim=len(map_shape) + 2)
    expected = (xc.shape[1], u4.shape[0], *map_shape)
    if y.shape != expected:
        raise InvalidParameterError(
            f"`y` must have shape {expected} (N of `x`, out_ch of `u`, then `image_shape`), "
            f"got {y.shape}"
        )
    return y.reshape(expected[0], expected[1], *spatial).transpose(1, 0, 2, 3)


def _check_white_activation(activation: str | None, mode: str) -> None:
    if activation is not None and mode != "element":
        raise InvalidParameterError(
            f"`activation` with mode={mode!r} needs data `x`: E[relu(h_p) relu(h_q)] is not "
            "determined by white input E[xxᵀ] = I"
        )


def _block_penalty(u4, v4, masks, spatial, map_shape, circular, xc, yc, activation) -> float:
    """DropBlock's exact loss gap (module docstring), with data ``xc`` or white input."""
    gamma = masks.gamma(map_shape)  # raises if the block does not fit the map
    if masks.normalize != "ideal":
        raise InvalidParameterError(
            "`normalize`='torchvision' (the random normaliser numel/sum(kept)) has no "
            "closed form; estimate it with dropout_penalty_mc(..., normalize='torchvision')"
        )
    blocks = (1, masks.block_size) if len(map_shape) == 1 else (masks.block_size,) * 2
    if xc is not None:
        h = ACTIVATIONS[activation](conv_cn(xc, v4, circular))
        residual = None if yc is None else yc - conv_cn(h, u4, circular)
        return _block_data(u4, h, masks.keep, gamma, spatial, blocks, circular, residual)
    _check_white_activation(activation, "block")
    return _block_white(u4, v4, masks.keep, gamma, spatial, blocks, circular)


@finite_result("the dropout penalty of the conv layer")
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
) -> float:
    r"""Exact dropout loss gap of a two-layer conv net: formulas (5), (6) and DropBlock.

    The net :math:`f_m(x) = u \ast (m \circ a(v \ast x))` (``a`` the identity or a ReLU,
    ``m`` a dropout mask on the hidden map h, :math:`f = f_1`): with :math:`e = m - 1`, U the
    matrix of ``u ∗ ·``, :math:`f_m(x) - f(x) = U(e \circ h)`, so the expected loss gap is

    .. math::

        \Delta = \mathbb{E}_m \frac1N\sum_n \|y_n - f_m(x_n)\|^2 - \|y_n - f(x_n)\|^2
               = \frac1N\sum_n \Big( \langle \mathbb{E}[e e^\top],\;
                 U^\top U \circ h_n h_n^\top \rangle
                 - 2\,\langle y_n - f(x_n),\; U(\mathbb{E}[e] \circ h_n) \rangle \Big),

    formula (4) with the second moment of e, plus a first-moment cross term. For
    inverted Bernoulli and channel masks E e = 0: Δ does not depend on ``y`` and is
    (5) or (6) of the module docstring, λ = (1 − θ)/θ,

    .. math:: \lambda \sum_{c,q} \|U[:, (c,q)]\|^2\, \mathbb{E}[h_{c,q}^2],
              \qquad \lambda \sum_c \mathbb{E}\|U_c h_c\|^2 ,

    with :math:`\|U[:,(c,q)]\|^2` from :func:`column_sq_norms`. DropBlock (``mode="block"``,
    1/θ normaliser; correlated masks, not of mean one at the border): the exact Δ and its
    cost, linear in the pixels, are derived in the module docstring.

    Parameters
    ----------
    u, v : arrays (C_out, C_hid, k', k'), (C_hid, C_in, k, k), or 1-D kernels (·, ·, k)
        Kernels of the layers after and before the mask.
    keep : float
        Retain probability θ in (0, 1] (for DropBlock the expected kept fraction).
    image_shape : (H, W), or (L,) / L for 1-D kernels
    padding : {"zeros", "circular"}
        Padding of both layers (DropBlock's blocks never wrap around).
    mode : {"element", "channel", "block"}
        ``nn.Dropout``, ``nn.Dropout2d`` or DropBlock (needs ``block_size``).
    x : array (N, C_in, H, W), optional
        Input samples (expectations over the data are means over them); ``None`` is
        white input, :math:`\mathbb{E}[xx^\top] = I` over the pixels, zero mean.
    activation : {None, "relu"}
        On the hidden map before the mask ([2]: the formulas hold for any features). With
        white input only ``mode="element"``, for symmetric input (E[relu(h)²] = E[h²]/2).
    block_size : int, optional
        DropBlock's block side b (``mode="block"`` only), at most the map's size.
    y : array (N, C_out, H, W), optional
        Targets of ``x``; ``None`` is f(x), where Δ is the perturbation energy
        :math:`\mathbb{E}\|f_m(x) - f(x)\|^2` (for element and channel masks, at any target).
    normalize : {"ideal", "torchvision"}
        DropBlock's normaliser; only ``"ideal"`` (1/θ) has a closed form.

    Returns
    -------
    float

    See Also
    --------
    dropout_penalty_mc : the same Δ by Monte Carlo over real masks.
    position_penalty : where on the hidden map the elementwise penalty sits.

    References
    ----------
    [1] Mianjy et al., ICML 2018; [2] Arora et al., ICML 2021; [4] Ghiasi et al., NeurIPS 2018.

    Examples
    --------
    >>> u, v = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3))
    >>> dropout_penalty(u, v, keep=0.5, image_shape=(4, 4), padding="circular")
    1296.0
    >>> dropout_penalty(u, v, 0.5, (4, 4), padding="circular", mode="block", block_size=1)
    1296.0
    """
    circular = check_padding(padding)
    check_choice(activation, "activation", ACTIVATIONS)
    masks = mask_distribution(mode, keep, block_size, normalize)
    u4, v4, spatial, xc, map_shape = _check_net(u, v, image_shape, x)
    yc = _check_target(y, xc, u4, spatial, map_shape)
    if isinstance(masks, DropBlock):
        return _block_penalty(u4, v4, masks, spatial, map_shape, circular, xc, yc, activation)
    if xc is not None:
        h = ACTIVATIONS[activation](conv_cn(xc, v4, circular))
        return float(masks.lam * _DATA_PENALTIES[mode](u4, h, circular))
    _check_white_activation(activation, mode)
    energy = _WHITE_PENALTIES[mode](u4, v4, spatial, circular)
    if activation == "relu":
        energy *= 0.5  # symmetric input: h_q and -h_q equally likely
    return float(masks.lam * energy)


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
    image_shape : (H, W), or (L,) / L
    padding : {"zeros", "circular"}

    Returns
    -------
    array (C_in, H, W), or (C_in, L)

    Examples
    --------
    >>> column_sq_norms(np.ones((1, 1, 3)), 4)
    array([[2., 3., 3., 2.]])
    """
    circular = check_padding(padding)
    w, n_spatial = check_conv_weight(weight, "weight")
    spatial = check_image_shape(image_shape, n_spatial, "weight")
    check_kernel_fits(w.shape[2:], spatial, "weight")
    out = _diag_gram(w, spatial, circular)
    return out if n_spatial == 2 else out[:, 0]


@finite_result("the per-position dropout penalty")
def position_penalty(
    u: ArrayLike, v: ArrayLike, keep: float, image_shape: ImageShape, *, padding: Padding = "zeros"
) -> np.ndarray:
    r"""Where on the hidden map the dropout penalty sits: the per-position terms of formula (5).

    For white input (:math:`\mathbb E[xx^\top] = I`, so :math:`\mathbb E[h_{c,q}^2] =
    \|V[(c,q), :]\|^2`) and elementwise dropout, the penalty (5) is a sum over hidden
    positions q of

    .. math:: P[q] = \lambda \sum_c \|U[:, (c, q)]\|^2\, \|V[(c, q), :]\|^2 ,
              \qquad \lambda = \frac{1-\theta}{\theta}.

    Both factors are column norms (:func:`column_sq_norms`): of u, and of the adjoint
    kernel of v (spatially flipped, channels swapped), whose layer matrix is Vᵀ. With
    circular padding P is constant; with zero padding it drops in a border band as deep
    as the two kernels' radii (THEORY §3). The map sums to :func:`dropout_penalty`.

    Parameters
    ----------
    u : array (C_out, C_hid, k', k'), or (C_out, C_hid, k')
        Kernel of the layer after the mask.
    v : array (C_hid, C_in, k, k), or (C_hid, C_in, k)
        Kernel of the layer before the mask.
    keep : float
        Retain probability θ in (0, 1].
    image_shape : (H, W), or (L,) / L for 1-D kernels
    padding : {"zeros", "circular"}
        Padding of both layers.

    Returns
    -------
    array (H, W), or (L,)

    See Also
    --------
    dropout_penalty : the sum of this map (``mode="element"``, ``x=None``).

    Examples
    --------
    >>> u, v = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    >>> position_penalty(u, v, keep=0.5, image_shape=4)
    array([4., 9., 9., 4.])
    >>> dropout_penalty(u, v, keep=0.5, image_shape=4)
    26.0
    """
    circular = check_padding(padding)
    lam = dropout_lambda(keep)
    u4, v4, spatial, _, map_shape = _check_net(u, v, image_shape, None)
    col_u = _diag_gram(u4, spatial, circular)
    row_v = _diag_gram(flipped_transpose(v4), spatial, circular)
    out = lam * np.sum(col_u * row_v, axis=0)
    return out if len(map_shape) == 2 else out[0]


# ----------------------------------------------------------------------------- Monte Carlo


def _mc_draw(masks, u4, v4, spatial, map_shape, circular, xc, yc, activation, dtype):
    """The draw of :func:`dropout_penalty_mc`: draw(rng, size) -> the loss gaps of size masks.

    Each chunk of masks runs on a padded grid (``_convops.Grid``), channel first, on a
    pool of threads (``_parallel.Chunks``): the hidden maps of its (mask, datum) images,
    their deviation (m − 1) ∘ h, and u ∗ of it. Bernoulli masks are written
    (kept − keep) ∘ h with u/keep: the same deviation, one pass less.
    """
    act = ACTIVATIONS[activation]
    c_hid, c_in = v4.shape[:2]
    c_out = u4.shape[0]
    H, W = spatial
    ph, pw = max(v4.shape[2], u4.shape[2]) // 2, max(v4.shape[3], u4.shape[3]) // 2
    n_data = 1 if xc is None else xc.shape[1]
    bernoulli = isinstance(masks, Bernoulli)
    u_w = (u4 / masks.keep if bernoulli else u4).astype(dtype)
    v_w = v4.astype(dtype)
    rows = max(c_in * v4.shape[2] * v4.shape[3], c_out * u4.shape[2] * u4.shape[3], c_hid)
    per_mask = n_data * (rows + 2 * c_hid) * (H + 2 * ph) * (W + 2 * pw)
    chunks = Chunks(max(1, CHUNK_ENTRIES // per_mask))
    residual = h0 = None
    if xc is not None:  # the same data under every mask
        h0 = act(conv_cn(xc, v4, circular))
        if yc is not None:  # y − f(x): (C_out, N, H, W)
            residual = (yc - conv_cn(h0, u4, circular)).astype(dtype)
        h0 = h0.astype(dtype)

    def chunk(start, stop, rng, work):
        n_masks = stop - start
        grid = Grid(n_masks * n_data, H, W, ph, pw)
        # the masks first, then the input: the order in which the generator is used
        if bernoulli:
            e = work("e", (c_hid, n_masks, 1, grid.Hp, grid.Wp), dtype)
            np.copyto(e, kept_bits(masks.keep, e.shape, rng))  # 0/1 first: a cast, no buffers
            np.subtract(e, dtype(masks.keep), out=e)
        else:
            m = masks.sample((c_hid, *map_shape), n_masks, rng).reshape(n_masks, c_hid, 1, H, W)
            e = np.subtract(m.transpose(1, 0, 2, 3, 4), 1.0, dtype=dtype)
        if h0 is None:  # a fresh white input per mask, at every grid position (the
            # border is overwritten by the padding), float64 numbers in any dtype
            x = grid.new(work, "x", c_in, dtype)
            for row in grid.mid(x):  # contiguous rows
                if dtype is np.float64:
                    rng.standard_normal(out=row)
                else:
                    row[...] = rng.standard_normal(grid.size)
            h = grid_conv(x, v_w, grid, circular, work, "h")
            act(grid.mid(h))
        else:
            h = grid.new(work, "h", c_hid, dtype)
            fill_border(grid.maps(h), ph, pw, False)  # every entry finite
            inner = grid.inner(h).reshape(c_hid, n_masks, n_data, H, W)
            inner[...] = h0[:, None]
        # the deviation (kept − keep) ∘ h, in place (ufuncs on 2-D views: NumPy's
        # iterator copies a 3-D view that it writes in place, three times slower)
        if bernoulli and n_data == 1:
            np.multiply(grid.mid(h), e.reshape(c_hid, -1), out=grid.mid(h))
        elif bernoulli:
            view = grid.mid(h).reshape(c_hid, n_masks, n_data, -1)
            np.multiply(view, e.reshape(c_hid, n_masks, 1, -1), out=view)
        else:
            view = grid.inner(h).reshape(c_hid, n_masks, n_data, H, W)
            np.multiply(view, e, out=view)
        dev = h
        d = grid.inner(grid_conv(dev, u_w, grid, circular, work, "d"))
        sq = work("sq", d.shape, dtype)
        energy = np.square(d, out=sq).sum(axis=(0, 2, 3), dtype=np.float64)
        if residual is not None:  # ‖r − d‖² − ‖r‖² = ‖d‖² − 2⟨r, d⟩
            prod = np.multiply(
                d.reshape(c_out, n_masks, n_data, H, W),
                residual[:, None],
                out=sq.reshape(c_out, n_masks, n_data, H, W),
            )
            energy -= 2.0 * prod.sum(axis=(0, 3, 4), dtype=np.float64).ravel()
        return energy if n_data == 1 else energy.reshape(n_masks, n_data).mean(axis=1)

    def draw(rng, size):
        return chunks.run(chunk, size, rng)

    return draw


@finite_result("the dropout penalty of the conv layer (Monte Carlo)")
def dropout_penalty_mc(
    u: ArrayLike,
    v: ArrayLike,
    keep: float,
    image_shape: ImageShape,
    *,
    padding: Padding = "zeros",
    mode: Mode = "element",
    block_size: int | None = None,
    n_masks: int = 20_000,
    seed: int | np.random.Generator = 0,
    x: ArrayLike | None = None,
    activation: Activation = None,
    rtol: float | None = None,
    batch_size: int | None = None,
    y: ArrayLike | None = None,
    normalize: Normalize = "ideal",
    dtype: str = "float64",
) -> Estimate:
    r"""Monte Carlo estimate, over real sampled masks, of the loss gap of :func:`dropout_penalty`.

    Each draw samples one mask ``m`` (:class:`~regtheory.masks.Bernoulli`,
    :class:`~regtheory.masks.Channel` or :class:`~regtheory.masks.DropBlock`) and
    returns the loss gap it causes on the data (:math:`h_n = a(v \ast x_n)`,
    :math:`f_m(x) = u \ast (m \circ h)`, :math:`f = f_1`):

    .. math:: G(m) = \frac1N\sum_{n=1}^N \Big(\|y_n - f_m(x_n)\|^2 - \|y_n - f(x_n)\|^2\Big)
              = \frac1N\sum_n \Big(\|d_n\|^2 - 2\langle y_n - f(x_n), d_n\rangle\Big),
              \quad d_n = u \ast ((m - 1)\circ h_n).

    Without targets (``y=None``) the target is f(x), and G is the perturbation energy
    :math:`\frac1N\sum_n\|d_n\|^2`; with ``x=None`` every draw uses one fresh standard
    normal input (:math:`\mathbb{E}[xx^\top] = I`, symmetric) and that energy. So
    :math:`\mathbb{E}G` is exactly the Δ of :func:`dropout_penalty` for the same ``x``
    and ``y``, computed here with convolutions on batches of masks, independently of the
    closed forms. With ``normalize="torchvision"`` (no closed form) it is the only tool.

    Parameters
    ----------
    u, v, keep, image_shape, padding, mode, block_size, x, activation, y
        As in :func:`dropout_penalty`.
    n_masks : int
        Number of masks (the maximum when ``rtol`` is given). At least
        :func:`regtheory.montecarlo.min_draws` of the masks' rarest events, else
        ``ValueError``: ``keep`` for element and channel masks (56 at keep 0.5,
        715 at 0.02); for DropBlock a block start and the most covered position
        kept, far rarer than ``keep`` at small keep (about 4,800 masks at keep
        0.02 for blocks of 2 on a 6-long map).
    seed : int or numpy.random.Generator
    rtol : float, optional
        Stop once the relative standard error is at most ``rtol`` (not before
        1000 masks, nor before the minimum above).
    batch_size : int, optional
        Masks per batch (default: about 64 MB of hidden maps, which are never held at
        once: a batch runs in chunks that fit in the cache, on every core).
    normalize : {"ideal", "torchvision"}
        DropBlock's normaliser: 1/keep, or torchvision's numel/sum(kept) per mask.
    dtype : {"float64", "float32"}
        Arithmetic of the convolutions: float32 is about twice as fast; each draw's
        energy is summed in float64, and the inputs and masks are the same as in
        float64 for the same seed, so the two differ by rounding only.

    Returns
    -------
    Estimate
        Its :meth:`~regtheory.montecarlo.Estimate.ci` is corrected for the skewed
        draws and covers 92-98 % at every accepted ``n_masks`` (tests/test_coverage.py).

    See Also
    --------
    dropout_penalty : the exact value of the same Δ (not for the torchvision normaliser).

    References
    ----------
    [1] Mianjy, Arora & Vidal, ICML 2018; [4] Ghiasi et al., NeurIPS 2018.
    """
    circular = check_padding(padding)
    check_choice(activation, "activation", ACTIVATIONS)
    masks = mask_distribution(mode, keep, block_size, normalize)
    u4, v4, spatial, xc, map_shape = _check_net(u, v, image_shape, x)
    yc = _check_target(y, xc, u4, spatial, map_shape)
    if isinstance(masks, DropBlock):
        masks.gamma(map_shape)  # raises early if the block does not fit the map
    need = min_draws(masks.event_probabilities((v4.shape[0], *map_shape)))
    setting = f"keep = {masks.keep:g}, {mode} masks" + (
        f" of side {block_size} on a {'×'.join(map(str, map_shape))} map" if mode == "block" else ""
    )
    n_masks = check_n_masks(n_masks, need, setting)
    arithmetic = check_dtype(dtype)
    if batch_size is None:
        n_data = 1 if xc is None else xc.shape[1]
        per_mask = n_data * max(v4.shape[1], v4.shape[0], u4.shape[0]) * spatial[0] * spatial[1]
        batch_size = int(np.clip(BATCH_ENTRIES // per_mask, 1, 4096))
    draw = _mc_draw(
        masks, u4, v4, spatial, map_shape, circular, xc, yc, activation, arithmetic.type
    )
    return estimate(
        draw, n_masks, seed, batch_size=batch_size, rtol=rtol, min_samples=max(1000, need)
    )
