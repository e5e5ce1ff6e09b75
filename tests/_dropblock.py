"""Exact DropBlock penalty for the tests: formula (4) with the mask's second moments computed
exactly from the block starts covering each position (dense matrices; small images only).

An independent reference for the Monte Carlo estimator with ``mode="block"``.
"""

import itertools

import numpy as np

from regtheory import conv
from regtheory.masks import DropBlock


def _cover_sets(length, block):
    """For each position of an axis, the set of block starts (0..length-block) covering it."""
    return [{s for s in range(length - block + 1) if s <= p < s + block} for p in range(length)]


def dropblock_penalty_exact(u, v, keep, image, padding, block):
    """Formula (4) for ideal-normalised DropBlock, mask second moments computed exactly.

    Position p is kept iff none of the block starts covering it fires (i.i.d. Bernoulli(γ)
    per channel), so P(p and q kept) = (1-γ)^{|S(p) ∪ S(q)|}; channels are independent.
    ``image`` is (H, W) or (L,), with 2-D or 1-D kernels to match.
    """
    image = (image,) if isinstance(image, int) else tuple(image)
    gamma = DropBlock(keep, block).gamma(image)
    axes = [_cover_sets(length, block) for length in image]
    S = [set(itertools.product(*(axes[a][i] for a, i in enumerate(p)))) for p in np.ndindex(image)]
    n = len(S)
    p1 = np.array([(1 - gamma) ** len(s) for s in S])
    p2 = np.array([[(1 - gamma) ** len(s | t) for t in S] for s in S])
    Em = p1 / keep  # E[m_p]
    same = p2 / keep**2 - Em[:, None] - Em[None, :] + 1  # E[(m_p-1)(m_q-1)], same channel
    e = Em - 1
    C = v.shape[0]
    cov = np.tile(np.outer(e, e), (C, C))
    for c in range(C):
        cov[c * n : (c + 1) * n, c * n : (c + 1) * n] = same
    U = conv.conv_matrix(u, image, padding)
    V = conv.conv_matrix(v, image, padding)
    return float(np.sum(cov * (U.T @ U) * (V @ V.T)))
