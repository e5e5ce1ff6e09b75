r"""The dropout penalty of any PyTorch model, in any loss.

A model is read through ``torch.fx``: its real forward, custom modules, residual sums,
concatenation, pooling, strides, functional calls and a module called twice included,
becomes the package's one network description (:func:`from_torch`, float64 copies of
the weights, and back with :func:`to_torch`). Its dropout penalty on data,

.. math::

    P = \mathbb{E}_r\, L(r) - L(\mathbf 1),\qquad
    L(r) = \frac1n \sum_{k=1}^{n} \ell\big(f_{r_k}(x_k), y_k\big) ,

(:func:`dropout_penalty`) is exact for squared error when every non-linearity comes
before the first dropout site (moment propagation, THEORY.md §6), and otherwise a Monte
Carlo estimate through the same traced graph, on the model's device and in its dtype,
recomputing only what each mask changes. The report says which dropout site pays what,
and gives the second-order (delta-method) approximation beside it. A model that
``torch.fx`` cannot trace is estimated through its own forward, and the report says so.

``nn.Dropout`` and ``F.dropout`` are elementwise inverted dropout
(:class:`~regtheory.masks.Bernoulli`), ``nn.Dropout1d``/``nn.Dropout2d`` drop whole
channels (:class:`~regtheory.masks.Channel`), :class:`DropBlock2d` drops square blocks
with the exact rate (:class:`~regtheory.masks.DropBlock`), and stochastic depth
(torchvision's ``StochasticDepth(p, "row")``, timm's ``DropPath``) drops a residual
branch per sample (:class:`~regtheory.masks.PerSample`); all keep with probability 1 - p.

This module imports ``torch``; the rest of the package does not (install the
``torch`` extra to use it).
"""

# torch itself, as the former module held it (the command line reads pytorch.torch, .nn)
import torch as torch
from torch import nn as nn

from ._convert import from_torch, supported_modules
from ._explicit import ExplicitRegularizer, explicit_regularizer
from ._export import to_torch
from ._modules import DropBlock2d
from ._penalty import PenaltyReport, dropout_penalty
from ._training import train_classifier

__all__ = [
    "DropBlock2d",
    "ExplicitRegularizer",
    "PenaltyReport",
    "dropout_penalty",
    "explicit_regularizer",
    "from_torch",
    "supported_modules",
    "to_torch",
    "train_classifier",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)
