"""The dropout objective of a GLM as a weighted sum of terms, one per sample and mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import InvalidParameterError
from ._families import cumulant, mean_function
from ._penalty import mask_matrix, mask_probabilities

#: The most terms (samples × masks) of the exact problem given to cvxpy. Measured
#: (Clarabel 0.11, tolerances 1e-10, a shared 2-core machine): logistic, 2^14 terms in
#: 5-10 s, 2^15 in 8-20 s (d = 11 on 16 samples: 9.6 s; d = 9 on 64 samples: 8.0 s).
MAX_EXACT_TERMS = 1 << 15


@dataclass(frozen=True)
class Design:
    """The solved objective as weighted terms: Σ_k w_k A(rows_k·β + b) − c·β − ȳ b."""

    rows: np.ndarray  # (terms, d): x̃ of each sample under each mask
    weights: np.ndarray  # (terms,)
    linear: np.ndarray  # (d,): mean_i y_i x_i
    y_mean: float
    draw: np.ndarray | None  # (terms,): which mask draw a term belongs to (saa)

    def objective(self, beta: np.ndarray, b: float, family: str) -> float:
        expected = self.weights @ cumulant(self.rows @ beta + b, family)
        return float(expected - self.linear @ beta - self.y_mean * b)

    def gradient(self, beta: np.ndarray, b: float, family: str, intercept: bool) -> np.ndarray:
        resid = self.weights * mean_function(self.rows @ beta + b, family)
        grad = resid @ self.rows - self.linear
        if intercept:
            grad = np.append(grad, resid.sum() - self.y_mean)
        return grad


def plain_design(X: np.ndarray, y: np.ndarray) -> Design:
    """The mask-free objective L (one term per sample)."""
    n = X.shape[0]
    return Design(X, np.full(n, 1.0 / n), y @ X / n, float(np.mean(y)), None)


def exact_design(X: np.ndarray, y: np.ndarray, keep: float) -> Design:
    """Every sample under every mask of positive probability, weighted by it."""
    n, d = X.shape
    masks = mask_matrix(d)
    p = mask_probabilities(masks, keep)
    keep_rows = p > 0.0  # keep = 1: the one mask of ones
    masks, p = masks[keep_rows], p[keep_rows]
    if n * len(masks) > MAX_EXACT_TERMS:
        raise InvalidParameterError(
            f"`method`='exact' needs n·2^d = {n}·{len(masks)} = {n * len(masks)} terms, "
            f"more than the {MAX_EXACT_TERMS} given to cvxpy: use method='saa' (any d), "
            "or fewer samples or features"
        )
    rows = (X[:, None, :] * masks[None, :, :] / keep).reshape(-1, d)
    weights = np.tile(p, n) / n
    return Design(rows, weights, y @ X / n, float(np.mean(y)), None)


def saa_design(X: np.ndarray, y: np.ndarray, keep: float, n_masks: int, rng) -> Design:
    """``n_masks`` draws, each a fresh mask for every sample; the linear term stays exact."""
    n, d = X.shape
    kept = rng.random((n_masks, n, d)) < keep  # draw k: a fresh mask for every sample
    rows = (kept * X[None] / keep).reshape(-1, d)
    weights = np.full(n_masks * n, 1.0 / (n_masks * n))
    draw = np.repeat(np.arange(n_masks), n)
    return Design(rows, weights, y @ X / n, float(np.mean(y)), draw)
