"""The layers of a sequential network: what :mod:`regtheory.network` builds nets from.

Same-size convolutions (PyTorch layout, cross-correlation), fully connected layers
(``nn.Linear`` layout, flattening channel first as ``torch.flatten``), ReLU, dropout
with any :mod:`regtheory.masks` distribution, and DropConnect. They are shared by the
Monte Carlo estimator and the exact moment propagation of :mod:`regtheory.network`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._convops import Padding
from ._validation import InvalidParameterError, as_generator, check_array, check_keep
from .conv import conv2d
from .masks import MaskDistribution

__all__ = ["RANDOM", "Conv", "DropConnect", "Dropout", "Layer", "Linear", "ReLU"]


@dataclass(frozen=True)
class Conv:
    """Same-size convolution, weight (C_out, C_in, k, k) or (C_out, C_in, k)."""

    weight: np.ndarray
    padding: Padding = field(default="zeros", kw_only=True)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return conv2d(z, self.weight, padding=self.padding)


@dataclass(frozen=True)
class Linear:
    """Fully connected layer ``z -> z W^T`` with W of shape (out, in); flattens its input."""

    weight: np.ndarray

    def __call__(self, z: np.ndarray) -> np.ndarray:
        flat = z.reshape(z.shape[0], -1)
        if flat.shape[1] != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a Linear layer expects {self.weight.shape[1]} input features, got {flat.shape[1]}"
            )
        return flat @ self.weight.T


@dataclass(frozen=True)
class ReLU:
    """Elementwise max(z, 0)."""

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0)


@dataclass(frozen=True)
class Dropout:
    """Multiply the features by a mask drawn from ``masks`` (one mask per sample)."""

    masks: MaskDistribution


@dataclass(frozen=True)
class DropConnect:
    r"""Fully connected layer with DropConnect: ``z -> z (W ∘ R)^T`` (Wan et al. 2013).

    Every weight is kept independently with probability ``keep`` and scaled by 1/keep
    (inverted, :math:`\mathbb E[R] = 1`), with a fresh mask :math:`R` per sample. Its
    mean is the layer W; its fluctuation adds, to the second moment of the output,

    .. math:: \lambda\, \mathrm{Diag}\big((W \circ W)\, \operatorname{diag} S\big),
              \qquad S = \mathbb E[z z^\top],\ \lambda = (1 - \theta)/\theta .

    Parameters
    ----------
    weight : array (out, in)
        ``nn.Linear`` layout; the input is flattened (channel first) as by ``Linear``.
    keep : float
        Retain probability of each weight.

    References
    ----------
    [2] L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, Regularization of Neural
        Networks using DropConnect, ICML 2013.
    """

    weight: np.ndarray
    keep: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_array(self.weight, "weight", ndim=2))
        object.__setattr__(self, "keep", check_keep(self.keep))

    @property
    def lam(self) -> float:
        """λ = (1 − keep)/keep, the variance of one weight mask entry."""
        return (1.0 - self.keep) / self.keep

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The layer at its mean mask: ``Linear(weight)``."""
        return Linear(self.weight)(z)

    def sample(self, z: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
        """Apply the layer to ``z`` (n, ...) with a fresh weight mask per sample (Monte Carlo);
        ``seed`` is an int or a ``numpy.random.Generator``."""
        flat = z.reshape(z.shape[0], -1)
        rng = as_generator(seed)
        kept = rng.random((flat.shape[0], *self.weight.shape)) < self.keep
        return np.einsum("noi,ni->no", kept * (self.weight / self.keep), flat)


RANDOM = (Dropout, DropConnect)  # layers that draw a mask
Layer = Conv | Linear | ReLU | Dropout | DropConnect
