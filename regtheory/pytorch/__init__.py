r"""The dropout penalty of a PyTorch model, through :mod:`regtheory.network`.

A researcher's ``nn.Sequential`` of linear and convolution layers (with or without
biases), pooling, elementwise activations, evaluation-mode batch normalisation and
dropout is converted, weight for weight, into the one network description of
:mod:`regtheory.layers` (float64 NumPy copies; :func:`from_torch`, and back with
:func:`to_torch`), and its dropout penalty on data,

.. math::

    P = \mathbb{E}_r\, L(r) - L(\mathbf 1),\qquad
    L(r) = \frac1n \sum_{k=1}^{n} \|y_k - f_{r_k}(x_k)\|^2 ,

is computed exactly when the network is linear after its first dropout layer
(moment propagation, THEORY.md §6: every non-linearity, max pooling included, comes
before it), and otherwise estimated by Monte Carlo with the
model's own modules: its dropout modules in training mode, on the model's device and
dtype, the losses taken in float64 (:func:`dropout_penalty`). The report says which
dropout layer pays what.

``nn.Dropout`` is elementwise inverted dropout (:class:`~regtheory.masks.Bernoulli`),
``nn.Dropout1d``/``nn.Dropout2d`` drop whole channels
(:class:`~regtheory.masks.Channel`), and :class:`DropBlock2d` drops square blocks with
the exact rate (:class:`~regtheory.masks.DropBlock`); all keep with probability 1 - p.

This module imports ``torch``; the rest of the package does not (install the
``torch`` extra to use it).
"""

# torch itself, as the former module held it (the command line reads pytorch.torch, .nn)
import torch as torch
from torch import nn as nn

from ._convert import from_torch, supported_modules
from ._export import to_torch
from ._modules import DropBlock2d
from ._penalty import PenaltyReport, dropout_penalty
from ._training import train_classifier

__all__ = [
    "DropBlock2d",
    "PenaltyReport",
    "dropout_penalty",
    "from_torch",
    "supported_modules",
    "to_torch",
    "train_classifier",
]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)
