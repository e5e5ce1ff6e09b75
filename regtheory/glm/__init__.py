r"""Dropout on the inputs of a generalized linear model, exactly (THEORY.md §8).

A generalized linear model with canonical link has the negative log-likelihood (up to
terms free of the parameters), averaged over the samples,

.. math:: L(\beta, b) = \frac1n \sum_{i=1}^n A(x_i\cdot\beta + b) - y_i (x_i\cdot\beta + b),

with the cumulant function :math:`A(z) = z^2/2` (``"gaussian"``, squared loss),
:math:`\log(1 + e^z)` (``"logistic"``, labels in {0, 1}) or :math:`e^z` (``"poisson"``,
counts). Inverted dropout on the inputs replaces :math:`x_i` by
:math:`\tilde x_i = x_i \circ r_i/\theta`, :math:`r_{ij}` i.i.d. Bernoulli(θ) (θ =
``keep``), and leaves the intercept b alone. As :math:`\mathbb E\tilde x_i = x_i` and the
labels enter linearly, the expected dropout objective is the plain one plus a penalty
that does not see the labels (Wager, Wang & Liang [1]):

.. math:: \mathbb E_r L_r(\beta, b) = L(\beta, b) + R(\beta, b), \qquad
          R(\beta, b) = \frac1n \sum_i \mathbb E_r A(\tilde x_i\cdot\beta + b)
                        - A(x_i\cdot\beta + b) \;\ge 0 .

:math:`R` is an expectation of convex functions minus a function that the data fix, and
:math:`L + R` is an expectation of convex functions of :math:`(\beta, b)`: the dropout
problem is convex, and :func:`solve_dropout` solves it with cvxpy.

* :func:`dropout_penalty` -- R exactly, by enumerating the :math:`2^{d'}` masks of the
  :math:`d' \le 16` features that reach the score (a nonzero :math:`\beta_j` and a nonzero
  column), or by Monte Carlo over real masks with an honest interval at any d;
* :func:`quadratic_penalty` -- Wager et al.'s second-order approximation, the "adaptive
  L2" :math:`\tfrac12\lambda\frac1n\sum_i A''(x_i\cdot\beta + b)\sum_j x_{ij}^2\beta_j^2`,
  λ = (1 − θ)/θ: exact for the Gaussian family; otherwise second order in the
  contributions :math:`x_{ij}\beta_j`, not in λ (its relative error does not vanish as
  keep → 1);
* :func:`gaussian_penalty` -- the "fast dropout" approximation of Wang & Manning [2]:
  :math:`\tilde x_i\cdot\beta` replaced by a normal of the same mean and variance,
  integrated by Gauss–Hermite quadrature;
* :func:`solve_dropout` -- the dropout problem (exact, a sample average over fixed masks,
  or the quadratic approximation by reweighted ridge to a fixed point), solved down the
  package's one solver ladder and certified by the gradient norm at the solution; a
  problem without a minimiser (labels separated by one feature, constant labels, counts
  all 0, ...) is found on the data first and raises :class:`NoMinimiserError` with the
  direction along which its objective keeps decreasing;
* :func:`dropout_sgd` -- stochastic gradient descent with real masks, which lands on the
  solution of :func:`solve_dropout`.

Budgets. The exact penalty enumerates at most :data:`MAX_EXACT_FEATURES` = 16 features
(65,536 masks; with 569 samples about 2.5 s). The exact problem has one cvxpy term per
sample and mask, :math:`n 2^d`; more than :data:`MAX_EXACT_TERMS` are refused (use
``method="saa"``).

References
----------
[1] S. Wager, S. Wang, P. Liang, Dropout Training as Adaptive Regularization, NeurIPS 2013.
[2] S. Wang, C. Manning, Fast dropout training, ICML 2013.
"""

from ._design import MAX_EXACT_TERMS
from ._families import FAMILIES
from ._penalty import MAX_EXACT_FEATURES, dropout_penalty, gaussian_penalty, quadratic_penalty
from ._solve import (
    FIXED_POINT_TOL,
    GRADIENT_TOL,
    LBFGS_GTOL,
    MAX_FIXED_POINT_STEPS,
    GLMSolution,
    NoMinimiserError,
    solve_dropout,
)
from ._training import GLMTrainingResult, dropout_sgd

__all__ = [
    "FAMILIES",
    "FIXED_POINT_TOL",
    "GRADIENT_TOL",
    "LBFGS_GTOL",
    "MAX_EXACT_FEATURES",
    "MAX_EXACT_TERMS",
    "MAX_FIXED_POINT_STEPS",
    "GLMSolution",
    "GLMTrainingResult",
    "NoMinimiserError",
    "dropout_penalty",
    "dropout_sgd",
    "gaussian_penalty",
    "quadratic_penalty",
    "solve_dropout",
]
