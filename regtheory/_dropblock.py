"""Exact first and second moments of DropBlock masks on a map.

A DropBlock mask (Ghiasi et al., NeurIPS 2018, with the ideal normaliser 1/keep) keeps
a position p unless one of the c(p) block starts covering p fires, each independently
with probability γ. Positions p and q are both kept unless one of the starts covering
either fires; the starts covering both factorise per axis. These counts give the mean
and the covariance of the mask in closed form, which the exact DropBlock penalties of
:mod:`regtheory.conv` and of deep networks use.
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_overlap", "block_starts", "dropblock_moments", "shift_inside", "shifted_map"]


def block_starts(n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last block start (0 .. n − b) covering each position of an axis."""
    i = np.arange(n)
    return np.maximum(0, i - b + 1), np.minimum(i, n - b)


def shift_inside(n: int, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index i + δ (clipped) and whether it is inside the axis: two (len(deltas), n) arrays."""
    j = np.arange(n)[None, :] + deltas[:, None]
    return np.clip(j, 0, n - 1), (j >= 0) & (j < n)


def block_overlap(n: int, b: int, deltas: np.ndarray) -> np.ndarray:
    """O[δ, i] = number of block starts covering both i and i + δ (0 if i + δ is outside)."""
    lo, hi = block_starts(n, b)
    j, inside = shift_inside(n, deltas)
    common = np.minimum(hi[None, :], hi[j]) - np.maximum(lo[None, :], lo[j]) + 1
    return np.where(inside, np.maximum(common, 0), 0)


def shifted_map(a: np.ndarray, deltas) -> np.ndarray:
    """a[p + δ] as (len(δ_H), len(δ_W), H, W), 0 where p + δ is outside the map."""
    (j1, in1), (j2, in2) = (shift_inside(n, d) for n, d in zip(a.shape, deltas))
    inside = in1[:, None, :, None] & in2[None, :, None, :]
    return np.where(inside, a[j1[:, None, :, None], j2[None, :, None, :]], 0.0)


def dropblock_moments(keep, gamma, spatial, blocks, deltas):
    """ē = E[m] − 1 of shape (H, W), and Cov(m_p, m_{p+δ}) of shape (δ_H, δ_W, H, W).

    p is kept iff none of the c(p) = c_H(i) c_W(j) starts covering it fires; p and q are
    both kept iff none of the c(p) + c(q) − o(p, q) starts covering either fires, where the
    shared starts o = o_H(i, i') o_W(j, j') factorise per axis. With β = 1 − γ:
    E[m_p] = β^c(p)/θ and Cov(m_p, m_q) = β^(c(p) + c(q) − o) (1 − β^o)/θ².
    """
    log_beta = np.log1p(-gamma)
    zero = np.zeros(1, dtype=int)
    count = np.multiply.outer(*(block_overlap(n, b, zero)[0] for n, b in zip(spatial, blocks)))
    shared = np.einsum(
        "xi,yj->xyij", *(block_overlap(n, b, d) for n, b, d in zip(spatial, blocks, deltas))
    )
    union = count + shifted_map(count, deltas) - shared
    cov = np.exp(union * log_beta) * -np.expm1(shared * log_beta) / keep**2  # 0 if o = 0
    return np.exp(count * log_beta) / keep - 1.0, cov
