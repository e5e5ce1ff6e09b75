"""Torch modules and conversions the other parts of :mod:`regtheory.pytorch` share:
the exact-rate DropBlock module, the tables of supported modules, tensors to arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import (
    InvalidParameterError,
    check_array,
    check_int,
)
from ..masks import DropBlock

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


# elementwise activations: evaluated by torch itself (a float64 copy) when converted
_ELEMENTWISE = (
    nn.CELU,
    nn.ELU,
    nn.GELU,
    nn.Hardshrink,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.LogSigmoid,
    nn.Mish,
    nn.ReLU6,
    nn.RReLU,
    nn.SELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softshrink,
    nn.Softsign,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Threshold,
)


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, DropBlock2d)


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _leaves(module: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential``, first to last, with their positions."""
    if not isinstance(module, nn.Sequential):
        return [(where, module)]
    found = []
    for i, child in enumerate(module):
        found += _leaves(child, f"{where}[{i}]")
    return found


def _array(param: Any) -> np.ndarray:
    """A float64, read-only NumPy copy of a tensor."""
    array = param.detach().cpu().to(torch.float64).numpy().copy()
    array.setflags(write=False)
    return array


def _maybe(param: Any) -> np.ndarray | None:
    return None if param is None else _array(param)


def _probability(p: object, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
        raise InvalidParameterError(f"`{name}` must be a probability in [0, 1), got {p!r}")
    return float(p)


_POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


def _as_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):  # a complex tensor stays complex, for check_array to refuse
        x = x.detach().cpu()
        x = (x.to(torch.float64) if x.is_floating_point() else x).numpy()
    return check_array(x, name)


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's parameters (torch's defaults if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()
