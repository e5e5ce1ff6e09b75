r"""Dropout on a fully connected hidden layer, in closed form (THEORY.md §1).

The network is :math:`f(x) = U \operatorname{diag}(r/\theta) V^\top x` with
:math:`U \in \mathbb{R}^{d_{out}\times w}`, :math:`V \in \mathbb{R}^{d_{in}\times w}`
and :math:`r_i \sim \mathrm{Bernoulli}(\theta)` i.i.d. With
:math:`C = \mathbb{E}[x x^\top]` (Mianjy, Arora & Vidal, ICML 2018):

.. math::

    \mathbb{E}_{x,y,r}\|y - f(x)\|^2 = \mathbb{E}\|y - UV^\top x\|^2
        + \lambda \sum_i \|u_i\|^2\, v_i^\top C v_i .                      \quad (1)

What it computes:

* the penalty (1) and its structured and block forms, exact or Monte Carlo
  (:func:`dropout_penalty`, :func:`structured_penalty`, :func:`block_dropout_penalty`);
* the induced regularizers, formula (2) and its k-support bound
  (:func:`induced_regularizer`, :func:`block_induced_regularizer`);
* equalized factorizations (:func:`equalize`, :func:`is_equalized`);
* the global optimum, formula (3) (:func:`global_optimum`).

References
----------
[1] P. Mianjy, R. Arora, R. Vidal, On the Implicit Bias of Dropout, ICML 2018.
[2] J. Cavazza et al., Dropout as a Low-Rank Regularizer for Matrix
    Factorization, AISTATS 2018.
"""

from ._equalize import equalize, has_equal_products, is_equalized, unit_products
from ._induced import block_induced_regularizer, induced_regularizer, spectral_k_support_norm
from ._optimum import global_optimum
from ._penalty import (
    block_dropout_penalty,
    dropout_penalty,
    dropout_penalty_mc,
    structured_penalty,
)

__all__ = [
    "block_dropout_penalty",
    "block_induced_regularizer",
    "dropout_penalty",
    "dropout_penalty_mc",
    "equalize",
    "global_optimum",
    "has_equal_products",
    "induced_regularizer",
    "is_equalized",
    "spectral_k_support_norm",
    "structured_penalty",
    "unit_products",
]
