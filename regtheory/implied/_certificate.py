r"""Certificates of optimality for the implied problems, computed in NumPy.

Every implied problem has the form :math:`\min_x F(x) = f(x) + g(x)` with f a
convex quadratic (the fit) and g a squared norm :math:`c\,\|x\|^2` (the induced
regularizer; for the singular-value problems the norm is restricted to
:math:`x \ge 0`). Fenchel's inequality gives, for any x and with the dual point
:math:`y = -\nabla f(x)`,

.. math::

    F^\star \;\ge\; f(x) - \langle \nabla f(x), x\rangle - g^*(-\nabla f(x)),
    \qquad g^*(s) = \frac{\|s\|_\circ^2}{4c},

where :math:`\|\cdot\|_\circ` is the dual norm (spectral for the nuclear norm,
ℓ∞ for ℓ1, the top-k ℓ2 norm for the k-support norm). The difference

.. math::

    F(x) - F^\star \le c\|x\|^2 + \langle\nabla f(x), x\rangle
                      + \frac{\|-\nabla f(x)\|_\circ^2}{4c}

vanishes exactly at the minimiser, is computed from x alone, and does not trust
the solver. Also :math:`F^\star \ge \min f` (g ≥ 0), the only bound left when
c = 0. The constrained problem (7) gets the classical bound of a dual point
scaled to feasibility instead (:func:`min_norm_gap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["min_norm_gap", "relative_gap", "squared_norm_gap"]


def relative_gap(value: float, lower: float) -> float:
    """(value − lower)/value: how far above a lower bound on the minimum ``value`` is.

    The problems are solved in units where the objective at zero is O(1) (the data
    are rescaled), so a value below 1e-8 counts as 1e-8: the objective of a
    near-perfect fit is rounding noise of size 1e-16, which no relative
    statement can be made about.
    """
    if not (math.isfinite(value) and math.isfinite(lower)):
        return math.inf
    return max(value - lower, 0.0) / max(value, 1e-8)


def squared_norm_gap(
    value: float,
    x: np.ndarray,
    grad: np.ndarray,
    c: float,
    norm: Callable[[np.ndarray], float],
    dual_norm: Callable[[np.ndarray], float],
    fit_min: float,
) -> float:
    """Certified relative gap of x for min f + c·norm², from ∇f(x) (module docstring).

    ``value`` is F(x), ``fit_min`` a lower bound on min f (the bound when c = 0).
    """
    lower = fit_min
    if c > 0:
        fit = value - c * norm(x) ** 2
        lower = max(lower, fit - float(np.vdot(grad, x)) - dual_norm(-grad) ** 2 / (4 * c))
    return relative_gap(value, lower)


def min_norm_gap(value: float, target: np.ndarray, y: np.ndarray, At, dual_norm) -> float:
    """Certified relative gap of ``value`` for min ‖Z‖ s.t. A(Z) = target.

    Any y gives the lower bound ⟨target, y⟩ / ‖Aᵀy‖_∘ (y scaled to dual feasibility;
    ``At(y)`` is the adjoint, ``dual_norm`` the dual norm). ``value`` must be the
    norm of an exactly feasible point.
    """
    scale = dual_norm(At(y))
    lower = abs(float(target @ y)) / scale if scale > 0 else 0.0
    return relative_gap(value, lower)


# Norms and their duals on vectors of singular values (x ≥ 0 in the spectral problems).


def l1_nonneg(m: np.ndarray) -> float:
    return float(np.sum(m))


def linf_positive(s: np.ndarray) -> float:
    """Dual of ℓ1 on the non-negative orthant: sup over m ≥ 0, Σm ≤ 1 of ⟨s, m⟩."""
    return float(max(np.max(s, initial=0.0), 0.0))


def nuclear(X: np.ndarray) -> float:
    return float(np.linalg.svd(X, compute_uv=False).sum())


def spectral(X: np.ndarray) -> float:
    return float(np.linalg.svd(X, compute_uv=False).max(initial=0.0))


def frobenius(X: np.ndarray) -> float:
    return float(np.linalg.norm(X))


def top_k_positive(k: int) -> Callable[[np.ndarray], float]:
    """Dual of the k-support norm on the non-negative orthant: ℓ2 of the k largest s₊."""

    def norm(s: np.ndarray) -> float:
        top = np.sort(np.clip(s, 0.0, None))[::-1][:k]
        return float(np.sqrt(np.sum(top * top)))

    return norm
