r"""The dropout penalty of a PyTorch model, through :mod:`regtheory.network`.

A researcher's ``nn.Sequential`` of linear and same-size convolution layers, ReLUs
and dropout is converted, weight for weight, into the layers of
:mod:`regtheory.network` (float64 NumPy copies), and its dropout penalty on data,

.. math::

    P = \mathbb{E}_r\, L(r) - L(\mathbf 1),\qquad
    L(r) = \frac1n \sum_{k=1}^{n} \|y_k - f_{r_k}(x_k)\|^2 ,

is computed exactly when every non-linearity comes before the first dropout layer
(moment propagation, THEORY.md §6) and by Monte Carlo over sampled masks otherwise.
``nn.Dropout`` is elementwise inverted dropout (:class:`~regtheory.masks.Bernoulli`),
``nn.Dropout1d``/``nn.Dropout2d`` drop whole channels
(:class:`~regtheory.masks.Channel`); both keep with probability 1 - p.

This module imports ``torch``; the rest of the package does not (install the
``torch`` extra to use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from . import network
from ._convops import Padding
from ._validation import InvalidParameterError, as_generator, check_array, check_int
from .masks import Bernoulli, Channel, DropBlock
from .montecarlo import Estimate

__all__ = ["DropBlock2d", "PenaltyReport", "dropout_penalty", "from_torch"]

_CHANNEL_RANK = {nn.Dropout1d: 2, nn.Dropout2d: 3}  # feature axes (C, L) and (C, H, W)


class DropBlock2d(nn.Module):
    r"""DropBlock for ``(N, C, H, W)`` maps with the exact block rate, as a training module.

    In training mode every channel of every sample gets its own mask of
    :class:`regtheory.masks.DropBlock` (``keep = 1 - p``, ideal normaliser): block starts
    fire i.i.d. with the exact rate :math:`\gamma` of
    :meth:`~regtheory.masks.DropBlock.gamma` on the :math:`(H-b+1)\times(W-b+1)` places
    where a :math:`b\times b` block fits, every covered position is zeroed, and the kept
    ones are scaled by 1/keep, so the expected kept fraction of a map is exactly
    ``keep``. γ is computed once per map size. In evaluation mode (or with ``p = 0``) the
    module is the identity. It draws from torch's random generator, as ``nn.Dropout`` does.

    :func:`from_torch` reads it as ``Dropout(DropBlock(1 - p, block_size))``, so its
    penalty is exact where the network after it is linear.

    Parameters
    ----------
    p : float
        Expected dropped fraction of each map, in [0, 1).
    block_size : int
        Side b of the square blocks; at most the map's height and width.

    Examples
    --------
    >>> import torch
    >>> drop = DropBlock2d(0.25, 3)
    >>> _ = torch.manual_seed(0)
    >>> out = drop(torch.ones(2000, 1, 8, 8))
    >>> round(float((out > 0).double().mean()), 2)  # kept fraction, 0.75 in expectation
    0.75
    """

    def __init__(self, p: float, block_size: int) -> None:
        super().__init__()
        self.masks = DropBlock(1.0 - _probability(p, "p"), check_int(block_size, "block_size"))
        self.p = float(p)
        self.block_size = int(block_size)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() != 4:
            raise InvalidParameterError(
                f"DropBlock2d expects (N, C, H, W) maps, got a tensor of shape {tuple(x.shape)}"
            )
        b = self.block_size
        gamma = self.masks.gamma(tuple(x.shape[2:]))  # refuses a block larger than the map
        starts_shape = (*x.shape[:2], x.shape[2] - b + 1, x.shape[3] - b + 1)
        starts = (torch.rand(starts_shape, device=x.device) < gamma).to(x.dtype)
        # position p is dropped iff a start lies in [p - b + 1, p] along both axes
        dropped = nn.functional.max_pool2d(
            nn.functional.pad(starts, (b - 1, b - 1, b - 1, b - 1)), b, stride=1
        )
        return x * (1.0 - dropped) / self.masks.keep


@dataclass(frozen=True)
class PenaltyReport:
    r"""The dropout penalty of a PyTorch model on data.

    Attributes
    ----------
    total : float
        :math:`P = \mathbb E_r L(r) - L(\mathbf 1)`, exact or its Monte Carlo estimate.
    stderr : float
        Standard error of ``total``; 0.0 when exact.
    method : str
        ``"exact"`` or ``"monte carlo"``.
    terms : network.PenaltyTerms or None
        The split over the dropout layers when exact, else ``None``.
    layers : tuple
        The converted :mod:`regtheory.network` layers.
    """

    total: float
    stderr: float
    method: str
    terms: network.PenaltyTerms | None
    layers: tuple


def _leaves(module: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential``, first to last, with their positions."""
    if not isinstance(module, nn.Sequential):
        return [(where, module)]
    found = []
    for i, child in enumerate(module):
        found += _leaves(child, f"{where}[{i}]")
    return found


def _weight(param: torch.Tensor) -> np.ndarray:
    weight = param.detach().cpu().to(torch.float64).numpy().copy()
    weight.setflags(write=False)
    return weight


def _conv(module: nn.Conv1d | nn.Conv2d, where: str) -> network.Conv:
    name = f"{where} ({type(module).__name__})"
    kernel = tuple(module.kernel_size)
    if module.bias is not None:
        raise InvalidParameterError(f"{name} has a bias; only bias=False is supported")
    if any(s != 1 for s in module.stride) or any(d != 1 for d in module.dilation):
        raise InvalidParameterError(f"{name} must have stride 1 and dilation 1")
    if module.groups != 1:
        raise InvalidParameterError(f"{name} must have groups=1, got {module.groups}")
    if any(k % 2 == 0 for k in kernel):
        raise InvalidParameterError(f"{name} must have an odd kernel, got {kernel}")
    same = tuple(k // 2 for k in kernel)
    padding = module.padding
    pads = same if padding == "same" else (0,) * len(kernel) if padding == "valid" else padding
    if tuple(pads) != same:  # 'valid' keeps the size only for 1-wide kernels
        raise InvalidParameterError(
            f"{name} must keep the size: padding='same' or {same}, got {module.padding!r}"
        )
    if module.padding_mode not in ("zeros", "circular"):
        raise InvalidParameterError(
            f"{name} must have padding_mode 'zeros' or 'circular', got {module.padding_mode!r}"
        )
    mode: Padding = "circular" if module.padding_mode == "circular" else "zeros"
    return network.Conv(_weight(module.weight), padding=mode)


def _probability(p: object, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
        raise InvalidParameterError(f"`{name}` must be a probability in [0, 1), got {p!r}")
    return float(p)


def _dropout(module: nn.Module, where: str) -> network.Dropout:
    p = float(module.p)  # type: ignore[arg-type]
    if not 0.0 <= p < 1.0:
        raise InvalidParameterError(f"{where} ({type(module).__name__}) must have p in [0, 1)")
    masks = Channel(1.0 - p) if type(module) in _CHANNEL_RANK else Bernoulli(1.0 - p)
    return network.Dropout(masks)


def _convert(where: str, module: nn.Module) -> Any:
    """One torch module as a network layer; ``None`` for a module that is skipped."""
    kind = type(module)
    if kind is nn.Linear:
        if module.bias is not None:
            raise InvalidParameterError(
                f"{where} (Linear) has a bias; only bias=False is supported"
            )
        return network.Linear(_weight(module.weight))
    if kind in (nn.Conv1d, nn.Conv2d):
        return _conv(module, where)  # type: ignore[arg-type]
    if kind is nn.ReLU:
        return network.ReLU()
    if kind is nn.Flatten:
        if (module.start_dim, module.end_dim) != (1, -1):
            raise InvalidParameterError(f"{where} (Flatten) must flatten from dim 1 to -1")
        return None  # network.Linear flattens channel first, as torch.flatten does
    if kind in (nn.Dropout, nn.Dropout1d, nn.Dropout2d):
        return _dropout(module, where)
    if kind is DropBlock2d:
        return network.Dropout(module.masks)  # type: ignore[arg-type]
    raise InvalidParameterError(f"{where} ({kind.__name__}) is not supported")


def _check_shapes(pairs, input_shape: tuple[int, ...], source: str) -> None:
    """Run the converted net once on zeros; every layer must fit the activation it gets.

    ``source`` names the argument the sample shape came from, for the messages."""
    z = np.zeros((1, *input_shape))
    for where, module, layer in pairs:
        name = f"{where} ({type(module).__name__})"
        rank = _CHANNEL_RANK.get(type(module))
        if rank is not None and z.ndim - 1 != rank:
            raise InvalidParameterError(
                f"{name} needs {rank} feature axes, got activations of shape {z.shape[1:]} "
                f"from {source} {input_shape}"
            )
        if isinstance(layer, network.Conv) and z.ndim != layer.weight.ndim:
            raise InvalidParameterError(
                f"{name} needs {layer.weight.ndim - 1} feature axes, got activations of shape "
                f"{z.shape[1:]} from {source} {input_shape}"
            )
        if layer is None:  # Flatten: later layers see the flat activations, as in torch
            z = z.reshape(1, -1)
            continue
        if isinstance(layer, network.Dropout):
            continue
        try:
            z = layer(z)
        except (ValueError, TypeError, IndexError) as exc:
            raise InvalidParameterError(
                f"{name} does not fit {source} {input_shape}: {exc}"
            ) from None


def from_torch(model: nn.Module, input_shape: Sequence[int]) -> list:
    """Convert a PyTorch ``nn.Sequential`` into :mod:`regtheory.network` layers.

    Supported modules: ``nn.Linear`` and ``nn.Conv1d``/``nn.Conv2d`` without bias (the
    convolutions same-size: stride 1, dilation 1, groups 1, odd kernels, padding
    ``'same'`` or k//2, padding_mode ``'zeros'`` or ``'circular'``), ``nn.ReLU``,
    ``nn.Flatten`` (dropped: :class:`~regtheory.network.Linear` flattens channel first,
    as torch does), ``nn.Dropout`` (:class:`~regtheory.masks.Bernoulli` with keep 1 - p)
    and ``nn.Dropout1d``/``nn.Dropout2d`` (:class:`~regtheory.masks.Channel`, keep 1 - p).
    Nested ``nn.Sequential`` modules are flattened. Weights are copied to float64.

    Parameters
    ----------
    model : torch.nn.Sequential
        The model; it is not modified.
    input_shape : sequence of int
        Shape of one sample, without the batch axis: ``(d,)``, ``(C, L)`` or ``(C, H, W)``.
        The converted net is run once on it to check that every layer fits.

    Returns
    -------
    list
        The layers, first to last, for :func:`regtheory.network.forward` and the penalties.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.ReLU(),
    ...                             torch.nn.Dropout(0.25), torch.nn.Linear(2, 1, bias=False))
    >>> [type(layer).__name__ for layer in from_torch(model, (3,))]
    ['Linear', 'ReLU', 'Dropout', 'Linear']
    >>> from_torch(model, (3,))[2].masks.keep
    0.75
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise InvalidParameterError(
            f"`input_shape` must be a sequence of positive ints, got {input_shape!r}"
        )
    shape = tuple(check_int(s, "input_shape") for s in input_shape)
    if not shape:
        raise InvalidParameterError("`input_shape` must have at least one entry")
    return _convert_model(model, shape, "`input_shape`")


def _convert_model(model: nn.Module, shape: tuple[int, ...], source: str) -> list:
    """The layers of ``model`` for samples of ``shape`` (taken from the argument ``source``)."""
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        )
    pairs = []
    for where, module in _leaves(model, "model"):
        pairs.append((where, module, _convert(where, module)))
    layers = [layer for _, _, layer in pairs if layer is not None]
    if not layers:
        raise InvalidParameterError("`model` has no layer to convert")
    _check_shapes(pairs, shape, source)
    return layers


def _as_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return check_array(x, name)


def dropout_penalty(
    model: nn.Module,
    X: ArrayLike | torch.Tensor,
    *,
    Y: ArrayLike | torch.Tensor | None = None,
    n_masks: int | None = None,
    seed: int | np.random.Generator = 0,
) -> PenaltyReport:
    r"""Dropout penalty :math:`\mathbb{E}_r L(r) - L(\mathbf 1)` of a PyTorch model on data.

    The model is converted by :func:`from_torch`. When every ReLU comes before the first
    dropout module the penalty is exact (:func:`regtheory.network.dropout_penalty_terms`);
    otherwise it is the Monte Carlo estimate of :func:`regtheory.network.dropout_penalty_mc`
    over real sampled masks, with its standard error.

    .. math::

        P = \mathbb{E}_r\, \frac1n \sum_{k} \|y_k - f_{r_k}(x_k)\|^2
            - \frac1n \sum_{k} \|y_k - f_{\mathbf 1}(x_k)\|^2 .

    Parameters
    ----------
    model : torch.nn.Sequential
        Supported modules as in :func:`from_torch`; at least one dropout module.
    X : array or torch.Tensor (n, ...)
        Inputs (float32 or float64; computed in float64).
    Y : array or torch.Tensor (n, ...), optional
        Targets, the model's output shape; ``None`` takes the model's own mask-free
        output (the penalty is then the perturbation energy).
    n_masks : int, optional
        Monte Carlo draws (default 2000); ignored when the penalty is exact.
    seed : int or numpy.random.Generator
        Source of the Monte Carlo masks.

    Returns
    -------
    PenaltyReport
        ``total``, ``stderr`` (0.0 when exact), ``method``, ``terms`` (exact only) and
        the converted ``layers``.

    Examples
    --------
    Dropout (keep 0.5, λ = 1) before a last layer u = (1, 2) on x = (1, 1): the penalty
    is :math:`\lambda \sum_i u_i^2 x_i^2 = 5`.

    >>> import numpy as np, torch
    >>> last = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = last.weight.copy_(torch.tensor([[1.0, 2.0]]))
    >>> report = dropout_penalty(torch.nn.Sequential(torch.nn.Dropout(0.5), last), np.ones((3, 2)))
    >>> report.total, report.method
    (5.0, 'exact')
    """
    X = _as_array(X, "X")
    layers = _convert_model(model, X.shape[1:], "the samples of `X`, of shape")
    if Y is not None:
        Y = _as_array(Y, "Y")
    drops = [i for i, layer in enumerate(layers) if isinstance(layer, network.Dropout)]
    if not drops:
        raise InvalidParameterError("`model` has no dropout module: its penalty is zero")
    if n_masks is not None:
        n_masks = check_int(n_masks, "n_masks")
    as_generator(seed)  # refuse a bad seed even where the penalty is exact
    exact = all(i < drops[0] for i, layer in enumerate(layers) if isinstance(layer, network.ReLU))
    if exact:
        terms = network.dropout_penalty_terms(layers, X, Y=Y)
        return PenaltyReport(terms.total, 0.0, "exact", terms, tuple(layers))
    if Y is None:
        Y = network.forward(layers, X)
    est: Estimate = network.dropout_penalty_mc(
        layers, X, Y, n_masks=2000 if n_masks is None else n_masks, seed=seed
    )
    return PenaltyReport(est.mean, est.stderr, "monte carlo", None, tuple(layers))
