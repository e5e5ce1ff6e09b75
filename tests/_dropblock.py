"""Exact DropBlock loss gap for the tests: formula (4) with the mask's second moments, plus the
first-moment cross term with a target, on dense matrices (small images only).

The mask moments are computed from the *sets* of block starts covering each position,
built by brute force: nothing here shares code with the banded closed form of
:func:`regtheory.conv.dropout_penalty`. An independent reference for it and for the Monte
Carlo estimator with ``mode="block"``.
"""

import numpy as np

from regtheory import conv
from regtheory.masks import DropBlock


def _cover_sets(length, block):
    """For each position of an axis, the set of block starts (0..length-block) covering it."""
    return [{s for s in range(length - block + 1) if s <= p < s + block} for p in range(length)]


def dropblock_mask_moments(keep, image, block):
    """E[m_p] (n,) and E[m_p m_q] (n, n) of one channel of an ideal-normalised DropBlock mask.

    Position p is kept iff none of the block starts covering it fires (i.i.d. Bernoulli(γ)),
    so P(p kept) = (1-γ)^|S(p)| and P(p and q kept) = (1-γ)^|S(p) ∪ S(q)|. ``image`` is
    (H, W) or (L,) (a 1-D map: segments of ``block`` positions).
    """
    gamma = DropBlock(keep, block).gamma(image)
    H, W = image if len(image) == 2 else (1, image[0])
    rows = _cover_sets(H, block if len(image) == 2 else 1)
    cols = _cover_sets(W, block)
    S = [{(a, b) for a in rows[i] for b in cols[j]} for i in range(H) for j in range(W)]
    first = np.array([(1 - gamma) ** len(s) for s in S]) / keep
    second = np.array([[(1 - gamma) ** len(s | t) for t in S] for s in S]) / keep**2
    return first, second


def dropblock_penalty_exact(u, v, keep, image, padding, block, x=None, y=None):
    """E_m mean_n ‖y_n − f_m(x_n)‖² − mean_n ‖y_n − f(x_n)‖² for ideal-normalised DropBlock.

    f_m(x) = U diag(m) V x on the dense layer matrices; with e = m − 1, f_m − f = U diag(e) h,
    so the gap is Σ E[e eᵀ] ∘ UᵀU ∘ mean_n h hᵀ − 2 mean_n ⟨y − f(x), U (E[e] ∘ h)⟩, with the
    second moment E[e eᵀ] (not the covariance: E[e] ≠ 0 at the border). Channels are
    independent. ``x=None``: white input, E[h hᵀ] = V Vᵀ; ``y=None``: the target f(x), so the
    cross term vanishes and the gap is the perturbation energy E‖f_m(x) − f(x)‖².
    """
    first, second = dropblock_mask_moments(keep, image, block)
    n = first.size
    e = first - 1
    same = second - first[:, None] - first[None, :] + 1  # E[(m_p - 1)(m_q - 1)], one channel
    C = v.shape[0]
    moment = np.tile(np.outer(e, e), (C, C))
    for c in range(C):
        moment[c * n : (c + 1) * n, c * n : (c + 1) * n] = same
    U = conv.conv_matrix(u, image, padding=padding)
    V = conv.conv_matrix(v, image, padding=padding)
    if x is None:
        assert y is None, "a target needs inputs"
        return float(np.sum(moment * (U.T @ U) * (V @ V.T)))
    h = x.reshape(len(x), -1) @ V.T  # (N, C n)
    gap = float(np.sum(moment * (U.T @ U) * (h.T @ h / len(x))))
    if y is not None:
        residual = y.reshape(len(x), -1) - h @ U.T
        gap -= 2 * float(np.mean(np.sum(residual * ((h * np.tile(e, C)) @ U.T), axis=1)))
    return gap
