"""The losses a dropout penalty of a PyTorch model is measured in.

A loss is per sample: ``per_sample(output, target)`` gives one float64 loss per row of
the batch, and the penalty is the gap of their mean. Squared error sums over the output
entries (its penalty is exact where the network after its dropout is linear);
cross-entropy takes class indices or class probabilities, as ``torch.nn.functional.
cross_entropy`` does; any callable of ``(output, target)`` returning per-sample losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from .._validation import InvalidParameterError
from ._modules import _as_array


def _squared(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = target - out.to(torch.float64)
    return (diff * diff).reshape(len(out), -1).sum(dim=1)


def _cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    per = F.cross_entropy(out.to(torch.float64), target, reduction="none")
    return per.reshape(len(out), -1).mean(dim=1)


@dataclass(frozen=True)
class Loss:
    """A per-sample loss, by name."""

    name: str
    function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def per_sample(self, out: torch.Tensor, target: Any) -> torch.Tensor:
        """One float64 loss per row of ``out``."""
        per = self.function(out, target)
        if not isinstance(per, torch.Tensor) or per.shape != (len(out),):
            got = tuple(per.shape) if isinstance(per, torch.Tensor) else type(per).__name__
            raise InvalidParameterError(
                f"`loss` must return one loss per sample, a tensor of shape ({len(out)},); "
                f"got {got}"
            )
        return per.to(torch.float64)

    @staticmethod
    def repeat(target: Any, size: int) -> Any:
        """The targets of ``size`` stacked draws."""
        if size == 1:
            return target
        return target.repeat(size, *(1,) * (target.dim() - 1))


def as_loss(loss: object) -> Loss:
    """The loss named by ``loss``: "mse", "cross_entropy" or a callable."""
    if isinstance(loss, str):
        if loss == "mse":
            return Loss("mse", _squared)
        if loss == "cross_entropy":
            return Loss("cross_entropy", _cross_entropy)
    elif callable(loss):
        return Loss(getattr(loss, "__name__", type(loss).__name__), loss)
    raise InvalidParameterError(
        f"`loss` must be 'mse', 'cross_entropy' or a callable (output, target) -> one "
        f"loss per sample, got {loss!r}"
    )


def targets(loss: Loss, Y: Any, out: torch.Tensor) -> torch.Tensor:
    """``Y`` as the tensor ``loss`` takes for the model's clean output ``out``.

    Squared error: float64, the output's shape (None: the output itself). Cross-entropy:
    class indices (int64, one per sample) or class probabilities (float64, the output's
    shape). A callable gets float64 arrays, or int64 for integer ones.
    """
    n = len(out)
    if Y is None:
        if loss.name != "mse":
            raise InvalidParameterError(f"`Y` is needed for loss={loss.name!r}")
        return out.detach().to(torch.float64)
    integer = _is_integer(Y)
    if integer:
        array = Y.detach().cpu() if isinstance(Y, torch.Tensor) else torch.as_tensor(np.asarray(Y))
    else:  # real targets: finite numbers, checked as every array argument is
        array = torch.from_numpy(_as_array(Y, "Y"))
    if loss.name == "cross_entropy" and integer:
        labels = array.reshape(-1) if array.dim() == 2 and array.shape[1] == 1 else array
        if labels.shape != (n, *out.shape[2:]):
            raise InvalidParameterError(
                f"`Y` must hold one class index per sample ({n},), got shape {tuple(array.shape)}"
            )
        k = out.shape[1]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise InvalidParameterError(
                f"`Y` must hold class indices in [0, {k}) for the model's {k} outputs"
            )
        return labels.to(device=out.device, dtype=torch.int64)
    if loss.name == "mse" and integer and array.dim() == 1 and out.dim() == 2 and out.shape[1] > 1:
        raise InvalidParameterError(
            f"`Y` holds integer labels ({n},) but the loss is squared error on {out.shape[1]} "
            "outputs: for class labels pass loss='cross_entropy'"
        )
    if loss.name == "mse":
        integer = False  # squared error on integer targets: their values, as floats
    array = array.to(device=out.device, dtype=torch.int64 if integer else torch.float64)
    if loss.name in ("mse", "cross_entropy") and tuple(array.shape) != tuple(out.shape):
        want = "the model's output shape" if loss.name == "mse" else "class probabilities of shape"
        raise InvalidParameterError(
            f"`Y` must have {want} {tuple(out.shape)}, got {tuple(array.shape)}"
        )
    return array if integer else array.to(torch.float64)


def _is_integer(Y: Any) -> bool:
    if isinstance(Y, torch.Tensor):
        return not Y.is_floating_point() and not Y.is_complex() and Y.dtype != torch.bool
    return np.asarray(Y).dtype.kind in "iu"
