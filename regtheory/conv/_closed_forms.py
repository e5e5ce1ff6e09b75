"""The exact dropout loss gap of the two-layer conv net.

Formulas (5) and (6), DropBlock's exact mask moments (THEORY §3.2), and where on the
hidden map the penalty sits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._convops import (
    ACTIVATIONS,
    ImageShape,
    Padding,
    conv_cn,
    flipped_transpose,
    pad_kernel,
)
from .._dropblock import dropblock_moments, shift_inside, shifted_map
from .._overflow import finite_result
from .._references import cites
from .._validation import (
    InvalidParameterError,
    check_padding,
)
from ..masks import DropBlock, dropout_lambda
from ._operator import diag_gram, tap_indicator
from ._twolayer import check_net

__all__ = ["exact_penalty", "has_closed_form", "position_penalty"]


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
    R = tap_indicator(n, k, False)
    Q = tap_indicator(n, 2 * k - 1, False)[:, ::-1]  # Q[i, x] = 1[i + δ_x inside]
    return np.einsum("ix,ia,ib->xab", Q, R, R)


def _white_element(u, v, spatial, circular) -> float:
    # Σ_q ‖U[:, q]‖² E[h_q²] with E[h_q²] = ‖V[q, :]‖², the column norms of the adjoint
    # Vᵀ. Both are squared kernels correlated with separable range indicators, so the
    # sum over positions q reduces to tap-by-tap overlap counts P = RᵤᵀR_v per axis.
    vt = flipped_transpose(v)
    su, sv = np.einsum("ocab->cab", u * u), np.einsum("ocab->cab", vt * vt)
    overlap = [
        tap_indicator(n, ku, circular).T @ tap_indicator(n, kv, circular)
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
    return float(np.sum(diag_gram(u, h.shape[2:], circular) * np.mean(h * h, axis=1)))


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
    """Offsets δ per axis (|δ| <= reach) at which every kernel's Gram can be nonzero.

    Also, for each kernel, its (R_H, R_W) and tap partners (a'_H, a'_W) on those offsets.
    """
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
    """Σ_o w[o, c, a, b] w[o, c', a'_H(δ_H, a), b'_W(δ_W, b)], the lag products of a kernel.

    Of shape (δ_H, δ_W, kh, kw, C, C), or (C, δ_H, δ_W, kh, kw) for c = c' only
    (``diagonal``).
    """
    if diagonal:
        shifted = w[:, :, partners[0]][..., partners[1]]  # (O, C, δ_H, kh, δ_W, kw)
        return np.einsum("ocab,ocxayb->cxyab", w, shifted)
    n_out, C, kh, kw = w.shape
    nx, ny = len(partners[0]), len(partners[1])
    out = np.empty((nx, ny, kh, kw, C, C))
    for a in range(kh):  # one (C, O) @ (O, C·δ_H·δ_W) product per tap
        for b in range(kw):
            partner = w[:, :, partners[0][:, a]][:, :, :, partners[1][:, b]]  # (O, C, δ_H, δ_W)
            prod = w[:, :, a, b].T @ partner.reshape(n_out, -1)
            out[:, :, a, b] = prod.reshape(C, C, nx, ny).transpose(2, 3, 0, 1)
    return out


def _pair_sums(weight: np.ndarray, rows_u, rows_v) -> np.ndarray:
    """Position sums of a weighted product of two separable Grams, one axis at a time.

    They are

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


def _check_white_activation(activation: str | None, mode: str) -> None:
    if activation is not None and mode != "element":
        raise InvalidParameterError(
            f"`activation` with mode={mode!r} needs data `x` for an exact value: "
            "E[relu(h_p) relu(h_q)] is not determined by white input E[xxᵀ] = I; estimate "
            "it with method='mc'"
        )


def _block_penalty(u4, v4, masks, spatial, map_shape, circular, xc, yc, activation) -> float:
    """DropBlock's exact loss gap (module docstring), with data ``xc`` or white input."""
    gamma = masks.gamma(map_shape)  # raises if the block does not fit the map
    if masks.normalize != "ideal":
        raise InvalidParameterError(
            "`normalize`='torchvision' (the random normaliser numel/sum(kept)) has no "
            "closed form; estimate it with method='mc'"
        )
    blocks = (1, masks.block_size) if len(map_shape) == 1 else (masks.block_size,) * 2
    if xc is not None:
        h = ACTIVATIONS[activation](conv_cn(xc, v4, circular))
        residual = None if yc is None else yc - conv_cn(h, u4, circular)
        return _block_data(u4, h, masks.keep, gamma, spatial, blocks, circular, residual)
    _check_white_activation(activation, "block")
    return _block_white(u4, v4, masks.keep, gamma, spatial, blocks, circular)


def has_closed_form(masks, xc, activation, mode: str) -> bool:
    """Whether :func:`exact_penalty` computes the loss gap.

    It does for all but the torchvision normaliser and, with white input, a ReLU before
    channel or block masks.
    """
    if isinstance(masks, DropBlock) and masks.normalize != "ideal":
        return False
    return xc is not None or activation is None or mode == "element"


def exact_penalty(mode, masks, u4, v4, spatial, map_shape, circular, xc, yc, activation) -> float:
    """The exact loss gap Δ of :func:`regtheory.conv.dropout_penalty` (checked arguments)."""
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


@cites("mianjy2018implicit", "arora2021dropout")
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
        Spatial size of the input image (or signal) and of the hidden map.
    padding : {"zeros", "circular"}
        Padding of both layers.

    Returns
    -------
    array (H, W), or (L,)
        P[q] for every hidden position q.

    Raises
    ------
    InvalidParameterError
        If a kernel or ``image_shape`` is refused (as in :func:`dropout_penalty`),
        ``keep`` is not in (0, 1], or ``padding`` is unknown.
    NumericalOverflowError
        If finite kernels give a map beyond the range of float64 (a subclass of
        InvalidParameterError and OverflowError).

    See Also
    --------
    dropout_penalty : the sum of this map (``mode="element"``, ``x=None``).

    Examples
    --------
    >>> u, v = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    >>> position_penalty(u, v, keep=0.5, image_shape=4)
    array([4., 9., 9., 4.])
    >>> from regtheory.conv import dropout_penalty
    >>> dropout_penalty(u, v, 0.5, 4)
    Penalty(26.0, method='exact')
    """
    circular = check_padding(padding)
    lam = dropout_lambda(keep)
    u4, v4, spatial, _, map_shape = check_net(u, v, image_shape, None)
    col_u = diag_gram(u4, spatial, circular)
    row_v = diag_gram(flipped_transpose(v4), spatial, circular)
    out = lam * np.sum(col_u * row_v, axis=0)
    return out if len(map_shape) == 2 else out[0]
