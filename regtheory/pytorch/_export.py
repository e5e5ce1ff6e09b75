"""A :class:`regtheory.layers.Graph` as a PyTorch module (the way back from :func:`from_torch`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import InvalidParameterError
from ..layers import (
    AdaptiveAvgPool,
    AvgPool,
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Flatten,
    Graph,
    Linear,
    MaxPool,
    Node,
    ReLU,
    Reshape,
    as_graph,
)
from ..masks import Bernoulli, Channel, DropBlock
from ._convert import _TorchFunction
from ._modules import DropBlock2d


def _spatial_rank(node: Any, rank: int | None, where: str) -> int:
    """Number of spatial axes of a pooling node: its kernel's, else the features'."""
    size = getattr(node, "kernel_size", getattr(node, "output_size", (1,)))
    if len(size) > 1:
        return len(size)
    if rank is None or rank < 2:
        raise InvalidParameterError(
            f"{where} ({node.name}) has no PyTorch module here without the rank of its maps: "
            "give its size per spatial axis"
        )
    return rank - 1


def _torch_pool(node: Any, where: str, rank: int | None) -> nn.Module:
    n = _spatial_rank(node, rank, where)
    if isinstance(node, AdaptiveAvgPool):
        cls = nn.AdaptiveAvgPool1d if n == 1 else nn.AdaptiveAvgPool2d
        size = node.output_size
        return cls(size[0] if len(size) == 1 else size)  # type: ignore[arg-type,index]
    name = "AvgPool" if isinstance(node, AvgPool) else "MaxPool"
    cls = getattr(nn, f"{name}{n}d")

    def one(v: tuple) -> Any:
        return v[0] if len(v) == 1 else v

    return cls(one(node.kernel_size), stride=one(node.stride), padding=one(node.pad))


def _torch_conv(layer: Conv, dtype: torch.dtype) -> nn.Module:
    out, c_in, *kernel = layer.weight.shape
    cls = nn.Conv1d if len(kernel) == 1 else nn.Conv2d
    conv = cls(
        c_in * layer.groups,
        out,
        tuple(kernel),
        stride=layer.stride,  # type: ignore[arg-type]
        padding="same" if layer.same_size else layer.pad,  # type: ignore[arg-type]
        dilation=layer.dilation,  # type: ignore[arg-type]
        groups=layer.groups,
        padding_mode=layer.padding,
        bias=layer.bias is not None,
        dtype=dtype,
    )
    _load(conv, layer)
    return conv


def _torch_layer(layer: Any, where: str, rank: int | None, dtype: torch.dtype) -> list[nn.Module]:
    """One node as torch modules (a Flatten before a Linear that reads maps).

    ``rank`` is the number of feature axes the node reads, when known.
    """
    if isinstance(layer, Linear):
        out, d_in = layer.weight.shape
        module = nn.Linear(d_in, out, bias=layer.bias is not None, dtype=dtype)
        _load(module, layer)
        return [module] if rank == 1 else [nn.Flatten(), module]
    if isinstance(layer, Conv):
        return [_torch_conv(layer, dtype)]
    if isinstance(layer, (AvgPool, MaxPool, AdaptiveAvgPool)):
        return [_torch_pool(layer, where, rank)]
    if isinstance(layer, Flatten):
        return [nn.Flatten()]
    if isinstance(layer, Reshape) and rank == 1:
        return [nn.Unflatten(1, layer.shape)]
    if isinstance(layer, ReLU):
        return [nn.ReLU()]
    if isinstance(layer, Elementwise) and isinstance(layer.function, _TorchFunction):
        return [copy.deepcopy(layer.function.module).to(dtype)]
    if isinstance(layer, Dropout):
        masks, p = layer.masks, 1.0 - layer.masks.keep
        if type(masks) is Bernoulli:
            return [nn.Dropout(p)]
        if type(masks) is Channel:
            return [{1: nn.Dropout(p), 2: nn.Dropout1d(p), 3: nn.Dropout2d(p)}[rank or 1]]
        if isinstance(masks, DropBlock) and masks.normalize == "ideal":
            return [DropBlock2d(p, masks.block_size)]
    raise InvalidParameterError(
        f"{where} ({type(layer).__name__}) has no PyTorch module here"
        + (" (a NumPy function)" if isinstance(layer, Elementwise) else "")
    )


def _load(module: Any, layer: Any) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias)))


def _ranks(graph: Graph) -> list[int | None]:
    """The number of feature axes each node reads, as far as the weights tell.

    A conv's kernel fixes it, a Linear, DropConnect or Flatten makes vectors; a channel
    mask on the input of a conv net is read from the conv after it.
    """
    ranks: list[int | None] = []
    rank: int | None = None
    for node in graph:
        ranks.append(rank)
        if isinstance(node, Conv):
            rank = node.weight.ndim - 1
        elif isinstance(node, (Linear, DropConnect, Flatten)):
            rank = 1
        elif isinstance(node, Reshape):
            rank = len(node.shape)
    first_conv = next((n for n in graph if isinstance(n, Conv)), None)
    if ranks and ranks[0] is None and first_conv is not None:
        fill = first_conv.weight.ndim - 1
        for i, r in enumerate(ranks):
            if r is not None:
                break
            ranks[i] = fill
    return ranks


def to_torch(
    layers: Graph | Sequence[Node], *, dtype: str | torch.dtype = "float64"
) -> nn.Sequential:
    """Build the PyTorch ``nn.Sequential`` of a chain of :mod:`regtheory.layers` nodes.

    The inverse of :func:`from_torch`: ``Linear`` → ``nn.Linear`` (after an
    ``nn.Flatten`` when it reads maps), ``Conv`` → ``nn.Conv1d``/``nn.Conv2d``
    (``padding='same'`` for a same-size one), pooling → ``nn.AvgPool``/``nn.MaxPool``/
    ``nn.AdaptiveAvgPool`` (1-D or 2-D), ``Flatten`` → ``nn.Flatten``, ``ReLU`` →
    ``nn.ReLU``, an ``Elementwise`` layer made by :func:`from_torch` → its module,
    ``Dropout`` of :class:`~regtheory.masks.Bernoulli` → ``nn.Dropout``, of
    :class:`~regtheory.masks.Channel` → ``nn.Dropout1d``/``nn.Dropout2d`` before a conv
    (``nn.Dropout`` on vectors, where channel masks are elementwise), of an ideal
    :class:`~regtheory.masks.DropBlock` → :class:`DropBlock2d`. Gaussian dropout,
    DropConnect, NumPy-function activations, ``Multiply``, ``Add`` and ``Concat`` have no
    module here and are refused by position. A channel mask on the input of a conv net
    is read from the conv after it.

    Parameters
    ----------
    layers : regtheory.layers.Graph or sequence of nodes
        A chain (each node reads the one before).
    dtype : {"float64", "float32"} or torch.dtype
        Of the parameters (float64 keeps the weights bit for bit); a name means the
        torch dtype of that name, as in the Monte Carlo functions' ``dtype``.

    Returns
    -------
    torch.nn.Sequential
        In training mode, as a fresh torch module is.

    Raises
    ------
    InvalidParameterError
        For a node with no torch module, named by its position, or a graph that is not
        a chain.

    Examples
    --------
    >>> import numpy as np
    >>> from regtheory.layers import Conv, Dropout, Linear
    >>> from regtheory.masks import Channel
    >>> to_torch([Conv(np.ones((2, 1, 3, 3))), Dropout(Channel(0.8)), Linear(np.ones((1, 50)))])
    Sequential(
      (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=same, bias=False)
      (1): Dropout2d(p=0.19999999999999996, inplace=False)
      (2): Flatten(start_dim=1, end_dim=-1)
      (3): Linear(in_features=50, out_features=1, bias=False)
    )
    """
    graph = as_graph(layers)
    if isinstance(dtype, str) and dtype in ("float64", "float32"):
        dtype = getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidParameterError(
            f"`dtype` must be 'float64', 'float32' or a floating torch.dtype, got {dtype!r}"
        )
    if not graph.is_chain:
        raise InvalidParameterError(
            "`layers` must be a chain (each node reading the one before) to be an "
            "nn.Sequential; this graph has joins (Add, Concat)"
        )
    modules: list[nn.Module] = []
    for i, (layer, rank) in enumerate(zip(graph, _ranks(graph))):
        modules += _torch_layer(layer, f"`layers[{i}]`", rank, dtype)
    return nn.Sequential(*modules)
