r"""Dropout in matrix factorization and completion: closed forms and the convex problem.

A factorization :math:`M = UV^\top`, :math:`U \in \mathbb{R}^{m\times d}`,
:math:`V \in \mathbb{R}^{n\times d}`, is fitted to N observed entries
:math:`(i_t, j_t, y_t)` (:func:`observed`). Dropout on the shared factor draws a mask
:math:`r_t \in \{0, 1\}^d`, i.i.d. Bernoulli(θ) entries, for every observation, which
predicts :math:`\sum_k (r_{tk}/\theta)\, U_{i_tk} V_{j_tk}` (Cavazza et al. [1]). With
λ = (1 − θ)/θ the dropout objective is, exactly,

.. math:: \frac1N \sum_{t=1}^N \mathbb{E}_{r_t}\Big(y_t - \sum_k \frac{r_{tk}}{\theta}
          U_{i_tk}V_{j_tk}\Big)^2 = \frac1N \sum_{t=1}^N \big(y_t - (UV^\top)_{i_tj_t}\big)^2
          + \underbrace{\frac{\lambda}{N}\sum_{t=1}^N\sum_{k=1}^d U_{i_tk}^2V_{j_tk}^2}
          _{R_\Omega(U, V)} ,

the fit loss (:func:`fit_loss`) plus the penalty (:func:`dropout_penalty`, checked
against masks with ``method="mc"``). With the empirical marginals
:math:`p_i = \#\{t : i_t = i\}/N`, :math:`q_j = \#\{t : j_t = j\}/N` the product form

.. math:: R_{pq}(U, V) = \lambda \sum_{k=1}^d \|u_k\|_p^2\, \|v_k\|_q^2,
          \qquad \|u\|_p^2 = \sum_i p_i u_i^2,

is the expectation of :math:`R_\Omega` when the entries are drawn independently from
:math:`p \otimes q` (Arora et al. [2]); on a given set of entries the two differ
(:func:`explicit_regularizer` computes both). The minimum of the product form over the
factorizations of width :math:`d \ge \operatorname{rank} M`, for p, q > 0, is

.. math:: \Theta_{pq}(M) = \frac{\lambda}{d}\,\big\|\operatorname{diag}(\sqrt p)\, M\,
          \operatorname{diag}(\sqrt q)\big\|_*^2 ,

the squared weighted trace norm of Salakhutdinov & Srebro [3]
(:func:`induced_regularizer`), attained by :func:`equalize`: the FC result of Mianjy,
Arora & Vidal [4] with the weights :math:`\sqrt p, \sqrt q` in place of the input
covariance.

The convex problem this regularizer induces,

.. math:: \min_M\ \frac1N \sum_{t=1}^N \big(y_t - M_{i_tj_t}\big)^2
          + \frac{\lambda}{d}\,\big\|\operatorname{diag}(\sqrt p)\, M\,
          \operatorname{diag}(\sqrt q)\big\|_*^2 ,

is solved by :func:`solve_induced`, with cvxpy on the package's certified solver ladder for
moderate sizes and by accelerated proximal gradient on :math:`Z = \operatorname{diag}(\sqrt
p)\, M \operatorname{diag}(\sqrt q)` for large ones; either way the solution comes with a
duality gap computed in NumPy from it (:class:`CompletionSolution`).

Rows or columns without an observation are accepted by :func:`observed` but refused
where the marginals must be positive: the data do not determine them.

References
----------
[1] J. Cavazza, P. Morerio, B. Haeffele, C. Lane, V. Murino, R. Vidal, Dropout as a
    Low-Rank Regularizer for Matrix Factorization, AISTATS 2018.
[2] R. Arora, P. Bartlett, P. Mianjy, N. Srebro, Dropout: Explicit Forms and Capacity
    Control, ICML 2021.
[3] R. Salakhutdinov, N. Srebro, Collaborative Filtering in a Non-Uniform World:
    Learning with the Weighted Trace Norm, NeurIPS 2010.
[4] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._induced import equalize, induced_regularizer
from ._objective import (
    Observations,
    dropout_penalty,
    explicit_regularizer,
    fit_loss,
    observed,
)

# The convex solver needs cvxpy: its names load on first access, so that importing this
# module loads NumPy only (tests/test_imports.py), as ``import regtheory`` does for modules.
_LAZY = {
    "CompletionSolution": "_solve",
    "ObservedSolution": "_observed",
    "solve_observed": "_observed",
    "solve_induced": "_solve",
    "solve_weighted_trace_norm": "_solve",
}

if TYPE_CHECKING:
    from ._observed import ObservedSolution, solve_observed
    from ._solve import CompletionSolution, solve_induced, solve_weighted_trace_norm

__all__ = [
    "CompletionSolution",
    "ObservedSolution",
    "Observations",
    "dropout_penalty",
    "equalize",
    "explicit_regularizer",
    "fit_loss",
    "induced_regularizer",
    "observed",
    "solve_induced",
    "solve_observed",
    "solve_weighted_trace_norm",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
