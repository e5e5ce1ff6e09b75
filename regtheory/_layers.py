"""The layers of a sequential network: what :mod:`regtheory.network` builds nets from.

Same-size convolutions (PyTorch layout, cross-correlation), fully connected layers
(``nn.Linear`` layout, flattening channel first as ``torch.flatten``), ReLU, dropout
with any :mod:`regtheory.masks` distribution, and DropConnect. They are shared by the
Monte Carlo estimator and the exact moment propagation of :mod:`regtheory.network`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._convops import Padding
from ._validation import (
    InvalidParameterError,
    as_generator,
    check_array,
    check_bias,
    check_keep,
)
from .conv import conv2d
from .masks import Bernoulli, MaskDistribution

__all__ = [
    "RANDOM",
    "Conv",
    "DropConnect",
    "Dropout",
    "Elementwise",
    "Layer",
    "Linear",
    "ReLU",
    "dropout_shapes",
    "mask_events",
]


@dataclass(frozen=True)
class Conv:
    """Same-size convolution, weight (C_out, C_in, k, k) or (C_out, C_in, k), and an
    optional bias (C_out,) added to every position of its channel."""

    weight: np.ndarray
    padding: Padding = field(default="zeros", kw_only=True)
    bias: np.ndarray | None = field(default=None, kw_only=True)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        out = conv2d(z, self.weight, padding=self.padding)
        if self.bias is not None:
            out += self.bias.reshape(-1, *(1,) * (out.ndim - 2))
        return out


@dataclass(frozen=True)
class Linear:
    """Fully connected layer ``z -> z W^T + b`` with W of shape (out, in) and an optional
    bias b (out,); flattens its input."""

    weight: np.ndarray
    bias: np.ndarray | None = field(default=None, kw_only=True)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        flat = z.reshape(z.shape[0], -1)
        if flat.shape[1] != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a Linear layer expects {self.weight.shape[1]} input features, got {flat.shape[1]}"
            )
        out = flat @ self.weight.T
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class ReLU:
    """Elementwise max(z, 0)."""

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0)


@dataclass(frozen=True)
class Elementwise:
    """Any elementwise non-linearity, given as a NumPy function of the activations.

    ``function`` maps an array to an array of the same shape, entry by entry (tanh, a
    sigmoid, GELU, a leaky ReLU...); ``name`` labels it in messages and tables. Like
    :class:`ReLU`, it makes a network non-linear in the masks of the dropout layers
    before it, whose penalty is then estimated by Monte Carlo.
    """

    function: Callable[[np.ndarray], np.ndarray]
    name: str = field(default="elementwise", kw_only=True)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        out = np.asarray(self.function(z), dtype=float)
        if out.shape != z.shape:
            raise InvalidParameterError(
                f"the {self.name} layer must keep the shape {z.shape}, returned {out.shape}"
            )
        return out


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


def check_layers(layers, *, require_random: bool = True) -> tuple:
    """The layers, each checked (weights and biases as finite float arrays); at least one
    Dropout or DropConnect layer unless ``require_random`` is False."""
    if isinstance(layers, (Conv, Linear, ReLU, Elementwise, *RANDOM)) or not isinstance(
        layers, Sequence
    ):
        raise InvalidParameterError(
            "`layers` must be a sequence of Conv, Linear, ReLU, Elementwise, Dropout and "
            "DropConnect layers"
        )
    checked = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv):
            weight = check_array(layer.weight, f"layers[{i}].weight", ndim=(3, 4))
            bias = check_bias(layer.bias, weight.shape[0], f"layers[{i}].bias")
            layer = Conv(weight, padding=layer.padding, bias=bias)
        elif isinstance(layer, Linear):
            weight = check_array(layer.weight, f"layers[{i}].weight", ndim=2)
            layer = Linear(
                weight, bias=check_bias(layer.bias, weight.shape[0], f"layers[{i}].bias")
            )
        elif isinstance(layer, Dropout):
            if not isinstance(layer.masks, MaskDistribution):
                raise InvalidParameterError(
                    f"`layers[{i}]` must hold a regtheory.masks distribution"
                )
        elif not isinstance(layer, (ReLU, Elementwise, DropConnect)):
            raise InvalidParameterError(
                f"`layers[{i}]` must be Conv, Linear, ReLU, Elementwise, Dropout or DropConnect, "
                f"got {type(layer).__name__}"
            )
        checked.append(layer)
    if require_random and not any(isinstance(layer, RANDOM) for layer in checked):
        raise InvalidParameterError(
            "`layers` has no Dropout layer: the penalty would be zero by definition"
        )
    return tuple(checked)


def dropout_shapes(layers, x) -> list[tuple[MaskDistribution, tuple[int, ...]]]:
    """Each random layer's mask distribution and the shape of what it masks.

    A DropConnect layer masks its weights, elementwise.
    """
    found, z = [], x
    for layer in layers:
        if isinstance(layer, Dropout):
            found.append((layer.masks, z.shape[1:]))
            continue
        if isinstance(layer, DropConnect):
            found.append((Bernoulli(layer.keep), layer.weight.shape))
        z = layer(z)
    return found


def mask_events(dropouts) -> tuple[list[float], str]:
    """The rare mask events a draw hinges on, and the words naming them.

    Every layer's own events, and, with several Dropout layers in series, a unit kept
    in all of them: a product of inverted masks scales like 1/Π keep², so that event,
    of probability Π kept_probability, can carry the penalty at small keep.
    """
    events = [q for masks, shape in dropouts for q in masks.event_probabilities(shape)]
    keeps = ", ".join(f"{masks.keep:g}" for masks, _ in dropouts)
    if len(dropouts) == 1:
        return events, f"keep = {keeps}"
    all_kept = float(np.prod([masks.kept_probability(shape) for masks, shape in dropouts]))
    events.append(all_kept)
    return events, (
        f"{len(dropouts)} dropout layers of keep {keeps} (a unit kept in all of them: "
        f"probability {all_kept:.3g})"
    )


Layer = Conv | Linear | ReLU | Elementwise | Dropout | DropConnect
