"""The penalty of a model that cannot be traced: Monte Carlo through its own forward.

The model runs as it trains (every module in training mode, functional dropout
included), except the normalisation layers that keep running statistics, which stay
in evaluation mode; draws are stacked along the batch axis. Each dropout module's own
penalty is measured with only that module in training mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .._events import mask_events
from .._results import Penalty
from .._validation import InvalidParameterError, check_n_masks
from ..masks import Bernoulli, Channel, PerSample
from ..montecarlo import default_n_masks, estimate, min_draws
from ._losses import Loss, targets
from ._modules import _placement
from ._trace import _is_dropout_module, where


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer with running statistics (eager or TorchScript)."""
    stats = getattr(module, "track_running_stats", False)
    return bool(stats) and getattr(module, "running_mean", None) is not None


_SCRIPTED = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "DropBlock2d"}


def _is_dropout(module: nn.Module) -> bool:
    """A dropout module, eager or TorchScript (read by its original class name)."""
    if _is_dropout_module(module):
        return True
    name = getattr(module, "original_name", None)
    return isinstance(module, torch.jit.ScriptModule) and (
        (name in _SCRIPTED and hasattr(module, "p"))
        or (name == "StochasticDepth" and getattr(module, "mode", "row") == "row")
        or (name == "DropPath" and hasattr(module, "drop_prob"))
    )


@contextmanager
def _running(model: nn.Module, active: Sequence[nn.Module] | None) -> Iterator[None]:
    """The model as it trains (``active`` None) or in evaluation mode but ``active``."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(active is None)
        for module in model.modules() if active is None else ():
            if _is_norm(module):
                module.eval()
        for module in active or ():
            module.train()
        yield
    finally:
        for module, mode in saved:
            module.train(mode)


def _law(module: nn.Module) -> Any:
    """The mask distribution of a dropout module (for the number of draws)."""
    name = getattr(module, "original_name", type(module).__name__)
    p = float(getattr(module, "drop_prob", getattr(module, "p", 0.5)))
    if name in ("Dropout1d", "Dropout2d", "Dropout3d"):
        return Channel(1.0 - p)
    if name in ("StochasticDepth", "DropPath"):
        return PerSample(1.0 - p)
    masks = getattr(module, "masks", None)
    return masks if masks is not None else Bernoulli(1.0 - p)


def own_forward_report(
    model: nn.Module, X: np.ndarray, Y: Any, loss: Loss, *, n_masks, rng, by_layer, reason
) -> Any:
    """The :class:`PenaltyReport` of an untraceable model (``how="own forward"``)."""
    from ._penalty import PenaltyReport

    found = [(name, m) for name, m in model.named_modules() if _is_dropout(m)]
    device, dtype = _placement(model)
    x = torch.from_numpy(X).to(device=device, dtype=dtype)
    with torch.no_grad(), _running(model, []):
        clean = model(x)
    if not isinstance(clean, torch.Tensor):
        raise InvalidParameterError(f"the model must return one tensor, got {type(clean).__name__}")
    target = targets(loss, Y, clean)
    base = loss.per_sample(clean, target).mean()
    events, words = mask_events([(_law(m), (1,)) for _, m in found] or [(Bernoulli(0.5), (1,))])
    need = min_draws(events)
    n_masks = check_n_masks(default_n_masks(events) if n_masks is None else n_masks, need, words)
    # draws stacked per call: about four million input entries
    batch = int(np.clip((1 << 24) // max(1, x[0].numel() * 4 * len(x)), 1, 4096))

    def run(active: Sequence[nn.Module] | None) -> Penalty:
        def draw(gen: np.random.Generator, size: int) -> np.ndarray:
            cuda = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda), torch.no_grad(), _running(model, active):
                torch.manual_seed(int(gen.integers(2**62)))
                out = model(x.repeat(size, *(1,) * (x.dim() - 1)))
            per = loss.per_sample(out, loss.repeat(target, size)).reshape(size, len(x))
            return (per.mean(dim=1) - base).cpu().numpy()

        return estimate(draw, n_masks=n_masks, rng=rng, batch_size=batch, min_masks=max(1000, need))

    total = run(None)
    names = tuple(
        f"{where(name)} ({getattr(m, 'original_name', type(m).__name__)}, p={1 - _law(m).keep:g})"
        for name, m in found
    )
    own = np.full(len(found), np.nan)
    own_se = np.full(len(found), np.nan)
    for k, (_, module) in enumerate(found if by_layer else []):
        est = run([module])
        own[k], own_se[k] = est.value, est.stderr
    return PenaltyReport(
        total.value,
        total.stderr,
        "mc",
        names or ("(dropout inside the forward)",),
        own if found else np.full(1, np.nan),
        own_se if found else np.full(1, np.nan),
        total.n_masks,
        None,
        None,
        loss=loss.name,
        how="own forward",
        own_method=("mc",) * len(found) if by_layer and found else ("",) * max(1, len(found)),
        reason=reason,
    )
